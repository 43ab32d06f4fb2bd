"""Conditional requests (depot.serving.conditional) and HTTP dates (depot.serving.dates)."""
from datetime import datetime

import pytest

from depot.serving.conditional import Outcome, evaluate_preconditions, if_range_holds
from depot.serving.dates import parse_http_date

TAG = '"file-1"'
WHEN = datetime(1994, 11, 6, 8, 49, 37)
WHEN_HTTP = "Sun, 06 Nov 1994 08:49:37 GMT"
EARLIER_HTTP = "Sun, 06 Nov 1994 08:49:36 GMT"
LATER = datetime(2030, 1, 1)


@pytest.mark.parametrize(
    "value",
    [WHEN_HTTP, "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Sun, 06 Nov 1994 10:49:37 +0200"],
)
def test_the_three_date_forms(value):
    assert parse_http_date(value) == WHEN


@pytest.mark.parametrize("value", ["", "garbage", "Sun, 06 Nov 99999 08:49:37 GMT", WHEN_HTTP + " " * 100])
def test_bad_dates(value):
    with pytest.raises(ValueError):
        parse_http_date(value)


def outcome(**headers):
    return evaluate_preconditions(TAG, WHEN, **headers)


def test_no_condition_proceeds():
    assert outcome() is Outcome.PROCEED


@pytest.mark.parametrize("value", [TAG, '"other", ' + TAG, 'W/"file-1"', "*", '"a",W/"file-1" , "b"'])
def test_if_none_match_hits(value):
    assert outcome(if_none_match=value) is Outcome.NOT_MODIFIED


@pytest.mark.parametrize("value", ['"other"', "", "file-1", '"file-11"'])
def test_if_none_match_misses(value):
    assert outcome(if_none_match=value) is Outcome.PROCEED


def test_if_modified_since():
    assert outcome(if_modified_since=WHEN_HTTP) is Outcome.NOT_MODIFIED
    assert outcome(if_modified_since="Mon, 07 Nov 1994 00:00:00 GMT") is Outcome.NOT_MODIFIED
    assert outcome(if_modified_since=EARLIER_HTTP) is Outcome.PROCEED


def test_malformed_if_modified_since_is_400_as_in_filedepot():
    assert outcome(if_modified_since="not a date") is Outcome.BAD_REQUEST


def test_if_none_match_overrides_if_modified_since():
    # RFC 9110 13.1.3: If-Modified-Since is ignored when If-None-Match is present,
    # even when it is malformed (filedepot answered 400 here).
    assert outcome(if_none_match='"other"', if_modified_since=WHEN_HTTP) is Outcome.PROCEED
    assert outcome(if_none_match=TAG, if_modified_since="not a date") is Outcome.NOT_MODIFIED
    assert outcome(if_none_match='"other"', if_modified_since="not a date") is Outcome.PROCEED


def test_unknown_modification_time_is_never_unmodified_by_date():
    assert evaluate_preconditions(TAG, None, if_modified_since=WHEN_HTTP) is Outcome.PROCEED


def test_if_match():
    assert outcome(if_match=TAG) is Outcome.PROCEED
    assert outcome(if_match="*") is Outcome.PROCEED
    assert outcome(if_match='"other"') is Outcome.PRECONDITION_FAILED
    assert outcome(if_match='W/"file-1"') is Outcome.PRECONDITION_FAILED  # strong comparison


def test_if_unmodified_since():
    assert outcome(if_unmodified_since=WHEN_HTTP) is Outcome.PROCEED
    assert outcome(if_unmodified_since=EARLIER_HTTP) is Outcome.PRECONDITION_FAILED
    assert outcome(if_unmodified_since="garbage") is Outcome.PROCEED
    # If-Match present: If-Unmodified-Since is not evaluated.
    assert outcome(if_match=TAG, if_unmodified_since=EARLIER_HTTP) is Outcome.PROCEED


def test_precondition_order():
    # A failed If-Match wins over a matching If-None-Match.
    assert outcome(if_match='"x"', if_none_match=TAG) is Outcome.PRECONDITION_FAILED


def test_if_range_with_etag():
    assert if_range_holds(TAG, TAG, WHEN, LATER)
    assert not if_range_holds('"other"', TAG, WHEN, LATER)
    assert not if_range_holds('W/"file-1"', TAG, WHEN, LATER)
    assert not if_range_holds('W/"file-1"', 'W/"file-1"', WHEN, LATER)


def test_if_range_with_date():
    assert if_range_holds(WHEN_HTTP, TAG, WHEN, LATER)
    assert not if_range_holds(EARLIER_HTTP, TAG, WHEN, LATER)
    assert not if_range_holds("Mon, 07 Nov 1994 00:00:00 GMT", TAG, WHEN, LATER)  # must be exact
    assert not if_range_holds("garbage", TAG, WHEN, LATER)
    assert not if_range_holds(WHEN_HTTP, TAG, None, LATER)


def test_if_range_date_of_this_very_second_is_weak():
    # Another write within the same second would carry the same date.
    assert not if_range_holds(WHEN_HTTP, TAG, WHEN, WHEN)
