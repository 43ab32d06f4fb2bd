"""The decision for one GET or HEAD of a stored file: status, headers and bytes."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Callable, List, Mapping, NamedTuple, Optional, Tuple, Union

from depot.utils import http_date, utcnow_naive

from .conditional import NOT_MODIFIED, PROCEED, Outcome, evaluate_preconditions, if_range_holds
from .caching import BoundedCache, approximate_size
from .content import SANDBOX_CSP, InlinePolicy, header_filename, safe_content_type
from .ranges import UNSATISFIABLE, _Unsatisfiable, content_range, parse_range

__all__ = [
    "FileFacts", "Plan", "plan_response", "check_preconditions", "requested_range", "content_headers",
    "not_modified_headers", "unsatisfiable_headers", "OUTCOME_STATUS",
]

Headers = List[Tuple[str, str]]


class FileFacts(NamedTuple):
    """What the HTTP rules need to know about a stored file."""

    etag: str
    last_modified: Optional[datetime]
    content_length: Optional[int]
    content_type: Optional[str]
    filename: Optional[str]


@dataclass
class Plan:
    """The response to send.

    ``body`` is ``None`` when no content is sent (HEAD, 304, errors with no
    file content), else the byte range ``(start, stop)`` of the file to send,
    or ``(0, None)`` for the whole file of unknown size.
    """

    status: HTTPStatus
    headers: Headers
    body: Optional[Tuple[int, Optional[int]]]


#: The memo of :func:`_describe`.  Entries are small once names are capped
#: (:func:`~depot.serving.content.header_filename`), and the byte budget holds
#: whatever they cost.
DESCRIPTIONS = BoundedCache(max_bytes=4 * 1024 * 1024, max_entries=4096)

Description = Tuple[str, str, bool, Optional[str]]


def _describe(
    content_type: Optional[str], filename: Optional[str], last_modified: Optional[datetime], policy: InlinePolicy
) -> Description:
    """``(Content-Type, Content-Disposition, sandbox, Last-Modified)`` of a file.

    Pure and memoised on all its inputs: these are the costly headers
    (transliteration, percent-encoding, date formatting), and a popular file
    asks for the same ones on every request.  Only the capped name is kept
    (and used in the header), so a huge stored name costs nothing here.
    """
    if filename is not None:
        filename = header_filename(filename)
    served_type, media_type = safe_content_type(content_type)
    key = (served_type, filename, last_modified, policy)
    described = DESCRIPTIONS.get(key)
    if described is None:
        disposition, sandbox = policy.disposition(media_type, filename)
        described = served_type, disposition, sandbox, None if last_modified is None else http_date(last_modified)
        DESCRIPTIONS.put(key, described, approximate_size(served_type, filename, disposition, described[3]) + 400)
    return described


#: The status of each precondition outcome that stops the request.
OUTCOME_STATUS = {
    Outcome.NOT_MODIFIED: HTTPStatus.NOT_MODIFIED,
    Outcome.BAD_REQUEST: HTTPStatus.BAD_REQUEST,
    Outcome.PRECONDITION_FAILED: HTTPStatus.PRECONDITION_FAILED,
}

Span = Tuple[int, int]


def check_preconditions(
    environ: Mapping[str, str], facts: FileFacts, not_modified: Optional[bool] = None
) -> Outcome:
    """What the precondition headers of a GET or HEAD allow (``environ``: its WSGI header keys).

    ``not_modified``, when given, is the caller's verdict on
    ``If-None-Match``/``If-Modified-Since`` (a
    :meth:`~depot.middleware.FileServeApp.has_been_modified` override); only
    ``If-Match``/``If-Unmodified-Since`` are then evaluated here.
    """
    get = environ.get
    if not_modified is None:
        return evaluate_preconditions(
            facts.etag, facts.last_modified, get("HTTP_IF_MATCH"), get("HTTP_IF_UNMODIFIED_SINCE"),
            get("HTTP_IF_NONE_MATCH"), get("HTTP_IF_MODIFIED_SINCE"),
        )
    outcome = evaluate_preconditions(
        facts.etag, facts.last_modified, get("HTTP_IF_MATCH"), get("HTTP_IF_UNMODIFIED_SINCE")
    )
    if outcome is PROCEED and not_modified:
        return NOT_MODIFIED
    return outcome


def requested_range(
    environ: Mapping[str, str], facts: FileFacts, now: Optional[datetime] = None
) -> Union[None, Span, _Unsatisfiable]:
    """The byte range a GET asks for and may get: ``(start, stop)``, ``None`` (whole file) or UNSATISFIABLE.

    ``Range`` applies to GET only, and only while ``If-Range`` (if any) holds;
    ``now`` (naive UTC, the current time when ``None``) dates ``If-Range``.
    """
    get = environ.get
    value = get("HTTP_RANGE")
    if value is None or get("REQUEST_METHOD") != "GET":
        return None
    if_range = get("HTTP_IF_RANGE")
    if if_range is not None and not if_range_holds(
        if_range, facts.etag, facts.last_modified, utcnow_naive() if now is None else now
    ):
        return None
    return parse_range(value, facts.content_length)


def not_modified_headers(
    facts: FileFacts, cache_control: str, expires: str, policy: InlinePolicy,
    make_date: Optional[Callable[[datetime], str]] = None,
) -> Headers:
    """The headers of a 304: the validators and the cache headers."""
    headers = [("ETag", facts.etag), ("Cache-Control", cache_control), ("Expires", expires)]
    last_modified = _last_modified(facts, policy, make_date)
    if last_modified is not None:
        headers.append(("Last-Modified", last_modified))
    return headers


def _last_modified(
    facts: FileFacts, policy: InlinePolicy, make_date: Optional[Callable[[datetime], str]]
) -> Optional[str]:
    if facts.last_modified is None:
        return None
    if make_date is not None:
        return make_date(facts.last_modified)
    return _describe(facts.content_type, facts.filename, facts.last_modified, policy)[3]


def content_headers(
    facts: FileFacts,
    span: Optional[Span],
    cache_control: str,
    expires: str,
    policy: InlinePolicy,
    make_date: Optional[Callable[[datetime], str]] = None,
    ranges: bool = True,
) -> Headers:
    """The headers of a 200 (``span`` is ``None``) or of a 206 carrying bytes ``span``.

    They keep filedepot's order (``ETag``, ``Cache-Control``, ``Expires``,
    ``Content-Type``, ``Content-Length``, ``Last-Modified``,
    ``Content-Disposition``) and add ``Accept-Ranges`` (unless ``ranges`` is
    false: the front server applies them), ``X-Content-Type-Options:
    nosniff`` and, for active content, ``Content-Security-Policy: sandbox``.
    """
    content_type, disposition, sandbox, last_modified = _describe(
        facts.content_type, facts.filename, facts.last_modified, policy
    )
    if make_date is not None and facts.last_modified is not None:
        last_modified = make_date(facts.last_modified)
    size = facts.content_length
    headers = [
        ("ETag", facts.etag), ("Cache-Control", cache_control), ("Expires", expires), ("Content-Type", content_type),
    ]
    if span is not None:
        assert size is not None, "a range is only satisfiable in a file of known size"
        headers.append(("Content-Length", str(span[1] - span[0])))
        headers.append(("Content-Range", content_range(span[0], span[1], size)))
    elif size is not None:
        headers.append(("Content-Length", str(size)))
    if last_modified is not None:
        headers.append(("Last-Modified", last_modified))
    headers.append(("Content-Disposition", disposition))
    if ranges and size is not None:
        headers.append(("Accept-Ranges", "bytes"))
    headers.append(("X-Content-Type-Options", "nosniff"))
    if sandbox:
        headers.append(("Content-Security-Policy", SANDBOX_CSP))
    return headers


def unsatisfiable_headers(facts: FileFacts) -> Headers:
    """The headers of a 416: the size the range missed."""
    assert facts.content_length is not None, "a range is only unsatisfiable in a file of known size"
    return [("Content-Range", "bytes */%d" % facts.content_length)]


def plan_response(
    environ: Mapping[str, str],
    facts: FileFacts,
    cache_control: str,
    expires: str,
    policy: InlinePolicy,
    now: Optional[datetime] = None,
    ranges: bool = True,
    not_modified: Optional[bool] = None,
    make_date: Optional[Callable[[datetime], str]] = None,
) -> Plan:
    """Apply RFC 9110 to a GET or HEAD (``environ`` holds its WSGI header keys): the stages above, in order.

    A 304 carries the validators and cache headers; 400 and 412 carry none
    (their bodies are the caller's).  ``ranges=False`` ignores ``Range``
    (the front server will apply it).  See :func:`check_preconditions`,
    :func:`requested_range` and :func:`content_headers` for the rest.
    """
    outcome = check_preconditions(environ, facts, not_modified)
    if outcome is Outcome.NOT_MODIFIED:
        headers = not_modified_headers(facts, cache_control, expires, policy, make_date)
        return Plan(HTTPStatus.NOT_MODIFIED, headers, None)
    if outcome is not Outcome.PROCEED:
        return Plan(OUTCOME_STATUS[outcome], [], None)
    wanted = requested_range(environ, facts, now) if ranges else None
    if wanted is UNSATISFIABLE:
        return Plan(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, unsatisfiable_headers(facts), None)
    headers = content_headers(facts, wanted, cache_control, expires, policy, make_date, ranges)
    if environ.get("REQUEST_METHOD") == "HEAD":
        return Plan(HTTPStatus.OK, headers, None)
    if wanted is None:
        return Plan(HTTPStatus.OK, headers, (0, facts.content_length))
    return Plan(HTTPStatus.PARTIAL_CONTENT, headers, wanted)
