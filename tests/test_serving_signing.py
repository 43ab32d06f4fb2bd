"""Signed, expiring links (depot.serving.signing)."""
from urllib.parse import parse_qs

import pytest

from depot.serving.signing import UPLOAD, LinkSigner

PATH = "default/d37138cf-2364-4128-8236-9cfaa8a6567c"
NOW = 1_800_000_000


@pytest.fixture
def signer():
    return LinkSigner("s3cret", 600)


def test_round_trip(signer):
    query = signer.sign(PATH, now=NOW)
    assert parse_qs(query)["expires"] == [str(NOW + 600)]
    assert signer.remaining(PATH.encode(), query, now=NOW) == 600
    assert signer.remaining(PATH.encode(), query, now=NOW + 599) == 1


def test_expired(signer):
    query = signer.sign(PATH, now=NOW)
    assert signer.remaining(PATH.encode(), query, now=NOW + 600) is None


def test_tampering(signer):
    query = signer.sign(PATH, now=NOW)
    assert signer.remaining(b"default/other", query, now=NOW) is None
    longer = query.replace("expires=%d" % (NOW + 600), "expires=%d" % (NOW + 6000))
    assert signer.remaining(PATH.encode(), longer, now=NOW) is None
    sig = parse_qs(query)["signature"][0]
    flipped = query.replace(sig, ("A" if sig[0] != "A" else "B") + sig[1:])
    assert signer.remaining(PATH.encode(), flipped, now=NOW) is None
    assert LinkSigner("other", 600).remaining(PATH.encode(), query, now=NOW) is None


@pytest.mark.parametrize(
    "query",
    ["", "expires=1", "signature=abc", "expires=x&signature=y", "expires=-1&signature=y",
     "expires=%s&signature=y" % ("9" * 40), "expires=\u0661&signature=y"],
)
def test_malformed(signer, query):
    assert signer.remaining(PATH.encode(), query, now=NOW) is None


def test_repeated_parameters_are_refused(signer):
    query = signer.sign(PATH, now=NOW)
    assert signer.remaining(PATH.encode(), query + "&" + query, now=NOW) is None


def test_other_parameters_are_ignored(signer):
    query = signer.sign(PATH, now=NOW)
    assert signer.remaining(PATH.encode(), "download=1&" + query, now=NOW) == 600


def test_non_ascii_path_signed_as_utf8(signer):
    query = signer.sign("dépôt/x", now=NOW)
    assert signer.remaining("dépôt/x".encode("utf-8"), query, now=NOW) == 600


def test_configuration_errors():
    with pytest.raises(ValueError):
        LinkSigner("", 10)
    with pytest.raises(ValueError):
        LinkSigner("k", 0)


def test_download_links_keep_their_format(signer):
    """Links handed out before purposes existed stay valid: the token is over the path alone."""
    import base64
    import hashlib
    import hmac

    digest = hmac.new(b"s3cret", b"%s\n%d" % (PATH.encode(), NOW + 600), hashlib.sha256).digest()
    token = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert signer.sign(PATH, now=NOW) == "expires=%d&signature=%s" % (NOW + 600, token)


def test_purposes_never_stand_for_each_other(signer):
    download = signer.sign(PATH, now=NOW)
    upload = signer.sign(PATH, now=NOW, purpose=UPLOAD)
    assert download != upload
    assert signer.remaining(PATH.encode(), upload, now=NOW, purpose=UPLOAD) == 600
    assert signer.remaining(PATH.encode(), upload, now=NOW) is None
    assert signer.remaining(PATH.encode(), download, now=NOW, purpose=UPLOAD) is None
    # A path crafted to look like a tagged message is never signed nor accepted.
    tagged = "\0upload\n" + PATH
    with pytest.raises(ValueError):
        signer.sign(tagged, now=NOW)
    assert signer.remaining(tagged.encode(), upload, now=NOW) is None


def test_explicit_expiry(signer):
    query = signer.sign(PATH, now=NOW, expires=NOW + 42.9, purpose=UPLOAD)
    assert parse_qs(query)["expires"] == [str(NOW + 42)]
    assert signer.remaining(PATH.encode(), query, now=NOW, purpose=UPLOAD) == 42
    assert signer.remaining(PATH.encode(), query, now=NOW + 42, purpose=UPLOAD) is None
