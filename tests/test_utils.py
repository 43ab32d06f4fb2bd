import datetime

import pytest

from depot import utils


def test_utcnow_naive():
    now = utils.utcnow_naive()
    assert now.tzinfo is None
    delta = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - now
    assert abs(delta.total_seconds()) < 5


def test_utcfromtimestamp_naive():
    assert utils.utcfromtimestamp_naive(0) == datetime.datetime(1970, 1, 1)
    assert utils.utcfromtimestamp_naive(86400.5).tzinfo is None


def test_content_disposition_ascii_is_exact():
    assert utils.make_content_disposition("inline", "file.txt") == (
        "inline;filename=\"file.txt\";filename*=utf-8''file.txt"
    )
    assert utils.make_content_disposition("attachment", "a b,c.txt") == (
        "attachment;filename=\"a b,c.txt\";filename*=utf-8''a%20b%2Cc.txt"
    )


def test_content_disposition_unicode():
    value = utils.make_content_disposition("inline", "Крупный")
    assert value == "inline;filename=\"Krupnyy\";filename*=utf-8''%D0%9A%D1%80%D1%83%D0%BF%D0%BD%D1%8B%D0%B9"
    assert utils.make_content_disposition("inline", "àèìòù").startswith('inline;filename="aeiou";')


@pytest.mark.parametrize("name", ['quo"te.txt', "back\\slash", "new\r\nline.txt", "tab\tx", "\x00nul"])
def test_content_disposition_is_always_one_well_formed_header(name):
    value = utils.make_content_disposition("attachment", name)
    assert "\r" not in value and "\n" not in value and "\x00" not in value and "\t" not in value
    quoted = value.split(";")[1]
    assert quoted.startswith('filename="') and quoted.endswith('"')
    inner = quoted[len('filename="'):-1]
    # every quote inside the quoted-string is escaped
    assert '"' not in inner.replace('\\"', "").replace("\\\\", "")


def test_asbool():
    assert utils.asbool("false") is False
    assert utils.asbool("Off") is False
    assert utils.asbool("") is False
    assert utils.asbool("yes") is True
    assert utils.asbool(1) is True
    with pytest.raises(ValueError):
        utils.asbool("maybe")


def test_asint():
    assert utils.asint("10") == 10
    with pytest.raises(ValueError, match="chunk must be an integer"):
        utils.asint("ten", "chunk")
    with pytest.raises(ValueError):
        utils.asint(True)


def test_http_date():
    assert utils.http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert utils.http_date(datetime.datetime(2020, 2, 29, 23, 59, 58)) == "Sat, 29 Feb 2020 23:59:58 GMT"
