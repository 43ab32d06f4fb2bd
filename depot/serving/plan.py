"""The decision for one GET or HEAD of a stored file: status, headers and bytes."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, List, Mapping, NamedTuple, Optional, Tuple

from depot.utils import http_date, utcnow_naive

from .conditional import Outcome, evaluate_preconditions, if_range_holds
from .caching import BoundedCache, approximate_size
from .content import SANDBOX_CSP, InlinePolicy, header_filename, safe_content_type
from .ranges import _Unsatisfiable, content_range, parse_range

__all__ = ["FileFacts", "Plan", "plan_response"]

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

    status: str
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


_STATUS = {
    Outcome.NOT_MODIFIED: "304 Not Modified",
    Outcome.BAD_REQUEST: "400 Bad Request",
    Outcome.PRECONDITION_FAILED: "412 Precondition Failed",
}


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
    """Apply RFC 9110 to a GET or HEAD (``environ`` holds its WSGI header keys).

    200 headers keep filedepot's order (``ETag``, ``Cache-Control``,
    ``Expires``, ``Content-Type``, ``Content-Length``, ``Last-Modified``,
    ``Content-Disposition``) and add ``Accept-Ranges``,
    ``X-Content-Type-Options: nosniff`` and, for active content,
    ``Content-Security-Policy: sandbox``.  A 304 carries the validators and
    cache headers; 400 and 412 carry none (their bodies are the caller's).
    ``ranges=False`` ignores ``Range`` (the front server will apply it).
    ``now`` is a naive UTC time, used by ``If-Range`` dates (the current
    time when ``None``).  ``not_modified``, when given, is the caller's
    verdict on ``If-None-Match``/``If-Modified-Since`` (a
    :meth:`~depot.middleware.FileServeApp.has_been_modified` override), and
    ``make_date`` its own ``Last-Modified`` formatting.
    """
    get = environ.get
    if not_modified is None:
        outcome = evaluate_preconditions(
            facts.etag,
            facts.last_modified,
            get("HTTP_IF_MATCH"),
            get("HTTP_IF_UNMODIFIED_SINCE"),
            get("HTTP_IF_NONE_MATCH"),
            get("HTTP_IF_MODIFIED_SINCE"),
        )
    else:
        outcome = evaluate_preconditions(
            facts.etag, facts.last_modified, get("HTTP_IF_MATCH"), get("HTTP_IF_UNMODIFIED_SINCE")
        )
        if outcome is Outcome.PROCEED and not_modified:
            outcome = Outcome.NOT_MODIFIED
    content_type, disposition, sandbox, last_modified = _describe(
        facts.content_type, facts.filename, facts.last_modified, policy
    )
    if make_date is not None and facts.last_modified is not None:
        last_modified = make_date(facts.last_modified)
    if outcome is Outcome.NOT_MODIFIED:
        headers = [("ETag", facts.etag), ("Cache-Control", cache_control), ("Expires", expires)]
        if last_modified is not None:
            headers.append(("Last-Modified", last_modified))
        return Plan(_STATUS[outcome], headers, None)
    if outcome is not Outcome.PROCEED:
        return Plan(_STATUS[outcome], [], None)

    size = facts.content_length
    # The bytes [start, stop) to send; stop is None only for a file of unknown size.
    status, start, stop = "200 OK", 0, size
    content_range_value = None
    range_value = get("HTTP_RANGE") if ranges and get("REQUEST_METHOD") == "GET" else None
    if range_value is not None and size is not None:  # no range applies to an unknown size
        if_range = get("HTTP_IF_RANGE")
        if if_range is None or if_range_holds(
            if_range, facts.etag, facts.last_modified, utcnow_naive() if now is None else now
        ):
            wanted = parse_range(range_value, size)
            if isinstance(wanted, _Unsatisfiable):
                return Plan(
                    "416 Range Not Satisfiable",
                    [("Content-Range", "bytes */%d" % size)],
                    None,
                )
            if wanted is not None:
                status, (start, stop) = "206 Partial Content", wanted
                content_range_value = content_range(start, stop, size)

    headers = [
        ("ETag", facts.etag),
        ("Cache-Control", cache_control),
        ("Expires", expires),
        ("Content-Type", content_type),
    ]
    if stop is not None:
        headers.append(("Content-Length", str(stop - start)))
    if content_range_value is not None:
        headers.append(("Content-Range", content_range_value))
    if last_modified is not None:
        headers.append(("Last-Modified", last_modified))
    headers.append(("Content-Disposition", disposition))
    if ranges and size is not None:
        headers.append(("Accept-Ranges", "bytes"))
    headers.append(("X-Content-Type-Options", "nosniff"))
    if sandbox:
        headers.append(("Content-Security-Policy", SANDBOX_CSP))
    return Plan(status, headers, None if get("REQUEST_METHOD") == "HEAD" else (start, stop))
