"""Content-Type and Content-Disposition choices (depot.serving.content)."""
import pytest

from depot.serving.content import InlinePolicy, safe_content_type


@pytest.mark.parametrize(
    "stored, served",
    [
        ("text/plain", ("text/plain", "text/plain")),
        ("Text/HTML; charset=utf-8", ("Text/HTML; charset=utf-8", "text/html")),
        ("image/png", ("image/png", "image/png")),
        (None, ("application/octet-stream", "application/octet-stream")),
        ("", ("application/octet-stream", "application/octet-stream")),
        ("text/html\r\nX-Injected: 1", ("application/octet-stream", "application/octet-stream")),
        ("text/plain; name=\u00e9", ("application/octet-stream", "application/octet-stream")),
        ("nonsense", ("application/octet-stream", "application/octet-stream")),
        ("text/plain\x00", ("application/octet-stream", "application/octet-stream")),
    ],
)
def test_safe_content_type(stored, served):
    assert safe_content_type(stored) == served


ACTIVE = [
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
    "application/rss+xml",
    "text/javascript",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "text/xsl",
    "application/x-shockwave-flash",
    "multipart/x-mixed-replace",
]
PASSIVE = ["text/plain", "image/png", "image/jpeg", "application/pdf", "video/mp4", "application/octet-stream",
           "application/json", "text/csv", "application/postscript"]


@pytest.mark.parametrize("media_type", ACTIVE)
def test_active_types_are_attachments_in_a_sandbox(media_type):
    value, sandbox = InlinePolicy().disposition(media_type, "x")
    assert value.startswith("attachment;") and sandbox


@pytest.mark.parametrize("media_type", PASSIVE)
def test_passive_types_stay_inline(media_type):
    value, sandbox = InlinePolicy().disposition(media_type, "x")
    assert value.startswith("inline;") and not sandbox


def test_allow_list():
    policy = InlinePolicy(["image/svg+xml", "Text/*"])
    assert policy.disposition("image/svg+xml", "a.svg") == (
        "inline;filename=\"a.svg\";filename*=utf-8''a.svg",
        False,
    )
    assert policy.allows_inline("text/html")
    assert not policy.allows_inline("application/xhtml+xml")


def test_filedepot_exact_form_for_ordinary_names():
    value, _ = InlinePolicy().disposition("text/plain", "Крупный")
    assert value == "inline;filename=\"Krupnyy\";filename*=utf-8''%D0%9A%D1%80%D1%83%D0%BF%D0%BD%D1%8B%D0%B9"


def test_hostile_names_give_one_well_formed_header():
    value, _ = InlinePolicy().disposition("text/plain", 'a"b\\c\r\nSet-Cookie: x=1\x00.txt')
    assert "\r" not in value and "\n" not in value and "\x00" not in value
    assert value.startswith('inline;filename="a\\"b\\\\cSet-Cookie: x=1.txt";filename*=utf-8\'\'')


def test_no_name():
    assert InlinePolicy().disposition("text/plain", None) == ("inline", False)
