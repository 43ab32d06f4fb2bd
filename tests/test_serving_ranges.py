"""The Range header rules (depot.serving.ranges)."""
import pytest

from depot.serving.ranges import MAX_HEADER_LENGTH, UNSATISFIABLE, content_range, parse_range


@pytest.mark.parametrize(
    "value, expected",
    [
        ("bytes=0-9", (0, 10)),
        ("bytes=10-", (10, 100)),
        ("bytes=-5", (95, 100)),
        ("bytes=-500", (0, 100)),
        ("bytes=90-1000", (90, 100)),
        ("bytes=99-99", (99, 100)),
        ("BYTES = 1-2", (1, 3)),
        ("bytes=0-0,", (0, 1)),  # empty list elements are allowed by the grammar
        ("bytes= 5-6 ", (5, 7)),
    ],
)
def test_single_satisfiable_range(value, expected):
    assert parse_range(value, 100) == expected


@pytest.mark.parametrize("value", ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=5000-"])
def test_unsatisfiable(value):
    assert parse_range(value, 100) is UNSATISFIABLE


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=5-4",  # last < first: invalid, so ignored rather than 416
        "bytes=a-b",
        "bytes=+1-2",
        "bytes=1 -2",
        "items=0-1",
        "bytes=0-1,2-3",  # several ranges: whole file
        "bytes=0-1,-1",
        "bytes=0-1;x",
        "bytes=0x10-",
        "bytes=\u0661-\u0662",  # Unicode digits are not DIGIT
    ],
)
def test_ignored(value):
    assert parse_range(value, 100) is None


def test_unknown_or_empty_size_ignores_range():
    assert parse_range("bytes=0-1", None) is None
    assert parse_range("bytes=0-1", 0) is None
    assert parse_range("bytes=-1", 0) is None


def test_overlong_header_is_not_parsed():
    many = "bytes=" + ",".join("%d-%d" % (i, i) for i in range(5000))
    assert len(many) > MAX_HEADER_LENGTH
    assert parse_range(many, 10**9) is None
    padded = "bytes=0-1" + " " * MAX_HEADER_LENGTH
    assert parse_range(padded, 100) is None


def test_huge_positions():
    assert parse_range("bytes=0-%d" % (10**30), 100) == (0, 100)
    assert parse_range("bytes=%d-" % (10**30), 100) is UNSATISFIABLE


def test_content_range():
    assert content_range(0, 10, 100) == "bytes 0-9/100"
    assert content_range(99, 100, 100) == "bytes 99-99/100"
