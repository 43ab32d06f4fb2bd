"""The whole decision for one request (depot.serving.plan), without WSGI."""
from datetime import datetime
from http import HTTPStatus

from depot.serving.content import InlinePolicy
from depot.serving.plan import FileFacts, plan_response

WHEN = datetime(2026, 11, 26, 15, 33, 27)
LATER = datetime(2026, 11, 26, 16, 0, 0)
FACTS = FileFacts('"f-1"', WHEN, 100, "text/plain", "a.txt")
CC, EXP = "max-age=60, public", "Thu, 26 Nov 2026 15:34:27 GMT"


def plan(facts=FACTS, method="GET", ranges=True, **headers):
    environ = {"REQUEST_METHOD": method}
    environ.update(("HTTP_" + k.upper(), v) for k, v in headers.items())
    return plan_response(environ, facts, CC, EXP, InlinePolicy(), LATER, ranges=ranges)


def test_200_header_order_extends_filedepot():
    p = plan()
    assert p.status == HTTPStatus.OK
    assert p.headers == [
        ("ETag", '"f-1"'),
        ("Cache-Control", CC),
        ("Expires", EXP),
        ("Content-Type", "text/plain"),
        ("Content-Length", "100"),
        ("Last-Modified", "Thu, 26 Nov 2026 15:33:27 GMT"),
        ("Content-Disposition", "inline;filename=\"a.txt\";filename*=utf-8''a.txt"),
        ("Accept-Ranges", "bytes"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    assert p.body == (0, 100)


def test_head_has_the_get_headers_and_no_body():
    p = plan(method="HEAD")
    assert (p.status, p.headers, p.body) == (HTTPStatus.OK, plan().headers, None)


def test_head_ignores_range():
    assert plan(method="HEAD", range="bytes=0-1").status == HTTPStatus.OK


def test_206():
    p = plan(range="bytes=10-19")
    assert p.status == HTTPStatus.PARTIAL_CONTENT
    assert ("Content-Length", "10") in p.headers and ("Content-Range", "bytes 10-19/100") in p.headers
    assert p.body == (10, 20)


def test_416():
    p = plan(range="bytes=100-")
    assert (p.status, p.headers, p.body) == (HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, [("Content-Range", "bytes */100")], None)


def test_if_range():
    assert plan(range="bytes=0-1", if_range='"f-1"').status == HTTPStatus.PARTIAL_CONTENT
    assert plan(range="bytes=0-1", if_range='"f-0"').status == HTTPStatus.OK
    assert plan(range="bytes=0-1", if_range="Thu, 26 Nov 2026 15:33:27 GMT").status == HTTPStatus.PARTIAL_CONTENT
    assert plan(range="bytes=0-1", if_range="Thu, 26 Nov 2026 15:33:26 GMT").status == HTTPStatus.OK
    # If-Range does not turn an unsatisfiable range into 416 when it fails.
    assert plan(range="bytes=500-", if_range='"f-0"').status == HTTPStatus.OK


def test_304_carries_validators_and_cache_headers():
    p = plan(if_none_match='"f-1"')
    assert p.status == HTTPStatus.NOT_MODIFIED and p.body is None
    assert p.headers == [
        ("ETag", '"f-1"'),
        ("Cache-Control", CC),
        ("Expires", EXP),
        ("Last-Modified", "Thu, 26 Nov 2026 15:33:27 GMT"),
    ]


def test_304_wins_over_range():
    assert plan(if_none_match="*", range="bytes=0-1").status == HTTPStatus.NOT_MODIFIED


def test_400_and_412():
    assert plan(if_modified_since="yesterday").status == HTTPStatus.BAD_REQUEST
    assert plan(if_match='"nope"').status == HTTPStatus.PRECONDITION_FAILED


def test_without_ranges_the_front_server_handles_them():
    p = plan(range="bytes=0-1", ranges=False)
    assert p.status == HTTPStatus.OK and not any(h[0] == "Accept-Ranges" for h in p.headers)


def test_unknown_facts():
    p = plan(FileFacts('W/"f"', None, None, None, None), range="bytes=0-1")
    assert p.status == HTTPStatus.OK
    names = [h[0] for h in p.headers]
    assert "Content-Length" not in names and "Last-Modified" not in names and "Accept-Ranges" not in names
    assert ("Content-Type", "application/octet-stream") in p.headers
    assert ("Content-Disposition", "inline") in p.headers
    assert p.body == (0, None)


def test_active_content_is_sandboxed():
    p = plan(FileFacts('"f"', WHEN, 5, "image/svg+xml", "x.svg"))
    assert ("Content-Security-Policy", "sandbox") in p.headers
    assert dict(p.headers)["Content-Disposition"].startswith("attachment;")
