"""Cache headers, the byte-bounded memo, and the cap on names in headers (depot.serving.caching/content/plan)."""
from __future__ import annotations

import datetime
import random
import tracemalloc

import pytest

from depot.serving import plan
from depot.serving.caching import BoundedCache, cache_headers
from depot.serving.content import MAX_HEADER_FILENAME, InlinePolicy, header_filename
from depot.serving.plan import FileFacts, plan_response


def test_bounded_cache_keeps_its_byte_budget():
    cache = BoundedCache(max_bytes=10_000, max_entries=100)
    for i in range(50):
        cache.put(i, "v%d" % i, 1_000)
        assert cache.nbytes <= 10_000
    assert len(cache) == 10 and cache.nbytes == 10_000
    assert cache.get(49) == "v49" and cache.get(39) is None
    cache.put("huge", "x", 10_001)  # larger than the whole budget: never kept
    assert cache.get("huge") is None and cache.nbytes == 10_000


def test_bounded_cache_keeps_its_entry_count_and_recency():
    cache = BoundedCache(max_bytes=10**9, max_entries=3)
    for key in "abc":
        cache.put(key, key, 1)
    cache.get("a")  # used: "b" is now the oldest
    cache.put("d", "d", 1)
    assert [cache.get(k) for k in "abcd"] == ["a", None, "c", "d"]
    cache.put("a", "A", 5)  # replacing counts the new size only
    assert cache.nbytes == 7 and cache.get("a") == "A"


def test_cache_headers_without_max_age():
    cache_control, expires = cache_headers(None, now=0)
    assert (cache_control, expires) == ("no-cache", "Thu, 01 Jan 1970 00:00:00 GMT")
    assert cache_headers(60, now=0, make_date=lambda t: "@%d" % t) == ("max-age=60, public", "@60")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("report.pdf", "report.pdf"),
        ("a" * 1000 + ".pdf", "a" * (MAX_HEADER_FILENAME - 4) + ".pdf"),
        ("a" * 1000, "a" * MAX_HEADER_FILENAME),
        ("a" * 1000 + "." + "b" * 40, ("a" * 1000 + "." + "b" * 40)[:MAX_HEADER_FILENAME]),
        ("\u00e9" * 1000 + ".txt", "\u00e9" * ((MAX_HEADER_FILENAME - 4) // 2) + ".txt"),
        ("bad\ud800name", "bad?name"),
    ],
)
def test_header_filename_is_capped_keeping_the_extension(name, expected):
    capped = header_filename(name)
    assert capped == expected
    assert len(capped.encode("utf-8")) <= MAX_HEADER_FILENAME


def test_header_filename_never_splits_a_character():
    rng = random.Random(12)
    for _ in range(200):
        name = "".join(chr(rng.choice([0x41, 0xE9, 0x4E2D, 0x1F600])) for _ in range(rng.randint(1, 400)))
        capped = header_filename(name)
        assert len(capped.encode("utf-8")) <= MAX_HEADER_FILENAME and name.startswith(capped)


def test_huge_names_give_small_headers_and_a_bounded_cache():
    plan.DESCRIPTIONS.clear()
    policy = InlinePolicy()
    when = datetime.datetime(2024, 1, 1)
    tracemalloc.start()
    try:
        for i in range(60):
            name = "%d-" % i + "\u00e9" * 200_000 + ".txt"
            facts = FileFacts('"e%d"' % i, when, 10, "text/plain", name)
            result = plan_response({"REQUEST_METHOD": "GET"}, facts, "max-age=1, public", "x", policy)
            assert sum(len(k) + len(v) for k, v in result.headers) < 2048
            disposition = dict(result.headers)["Content-Disposition"]
            assert disposition.endswith(".txt")
        retained = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert plan.DESCRIPTIONS.nbytes <= plan.DESCRIPTIONS.max_bytes
    assert len(plan.DESCRIPTIONS) == 60
    assert retained < 1024 * 1024  # each entry is small: names are capped before being kept


def test_description_cache_is_bounded_by_bytes_whatever_the_entries():
    plan.DESCRIPTIONS.clear()
    policy = InlinePolicy()
    for i in range(plan.DESCRIPTIONS.max_entries * 2):
        name = "\u4e2d" * 500 + "%d.bin" % i
        plan_response({"REQUEST_METHOD": "HEAD"}, FileFacts('"x"', None, 1, "application/x-%d" % i, name),
                      "max-age=1, public", "x", policy)
        assert plan.DESCRIPTIONS.nbytes <= plan.DESCRIPTIONS.max_bytes
    assert len(plan.DESCRIPTIONS) <= plan.DESCRIPTIONS.max_entries


def test_huge_names_through_the_middleware(tmp_path):
    import webtest

    from depot.io import local
    from depot.manager import DepotManager
    from depot.middleware import DepotMiddleware

    storage = DepotManager.configure("default", {"depot.storage_path": str(tmp_path)})
    name = "\u00e9" * 200_000 + ".pdf"
    fid = storage.create(b"%PDF", name, "application/pdf")
    app = webtest.TestApp(DepotMiddleware(None))
    resp = app.get("/depot/default/%s" % fid)
    disposition = resp.headers["Content-Disposition"]
    assert len(disposition) < 1024 and disposition.endswith(".pdf")
    assert sum(len(k) + len(v) for k, v in resp.headerlist) < 2048
    assert storage.get(fid).filename == name  # the storage keeps the whole name
    # Local storage's metadata cache does not keep such a name either.
    assert all(len(facts[0] or "") < 2048 for _, facts in local._METADATA._entries.values())
