"""The async storage API used directly: chunks, async sources, uploads, errors, threads, memory."""
from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
import time
import tracemalloc

import pytest

anyio = pytest.importorskip("anyio")

from depot.io import _workers  # noqa: E402
from depot.io.aio import (  # noqa: E402
    DEFAULT_THREADS, AsyncStorage, AsyncStoredFile, set_worker_niceness, thread_limiter,
)
from depot.io.aio import worker_niceness as worker_niceness_value  # noqa: E402
from depot.io.local import LocalFileStorage  # noqa: E402
from depot.io.memory import MemoryFileStorage  # noqa: E402
from depot.io.utils import FileIntent  # noqa: E402
from depot.manager import DepotManager  # noqa: E402

pytestmark = pytest.mark.anyio

MB = 1024 * 1024
MISSING = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def local(tmp_path):
    return LocalFileStorage(str(tmp_path / "files"))


@pytest.fixture
def files(local):
    return AsyncStorage(local)


def pattern(size):
    return (b"0123456789abcdefghij" * (size // 20 + 1))[:size]


async def agen(*chunks):
    for chunk in chunks:
        await anyio.sleep(0)
        yield chunk


def starlette_upload(data, filename, content_type):
    from starlette.datastructures import Headers, UploadFile

    spool = tempfile.SpooledTemporaryFile(max_size=1024)
    spool.write(data)
    spool.seek(0)
    return UploadFile(spool, size=len(data), filename=filename, headers=Headers({"content-type": content_type}))


# -- reading -----------------------------------------------------------------------


async def test_async_for_yields_bounded_chunks(files):
    data = pattern(3 * MB + 17)
    file_id = await files.create(data, "big.bin")
    async with await files.get(file_id) as stored:
        assert isinstance(stored, AsyncStoredFile)
        assert (stored.file_id, stored.filename, stored.content_length) == (file_id, "big.bin", len(data))
        assert isinstance(stored.version, str)  # backend extras come through
        chunks = [chunk async for chunk in stored]
    assert stored.closed
    assert all(0 < len(c) <= stored.chunk_size for c in chunks) and len(chunks) > 1
    assert b"".join(chunks) == data
    with pytest.raises(ValueError):
        await stored.read()


async def test_async_for_continues_after_read(files):
    file_id = await files.create(b"HELLO WORLD")
    stored = await files.get(file_id)
    assert await stored.read(6) == b"HELLO "
    assert b"".join([c async for c in stored]) == b"WORLD"
    await stored.close()


async def test_iter_range_and_early_stop(files):
    data = pattern(MB)
    stored = await files.get(await files.create(data))
    got = [c async for c in stored.iter_range(1000, 300000, chunk_size=65536)]
    assert b"".join(got) == data[1000:300000] and max(map(len, got)) <= 65536
    chunks = stored.iter_range(0, None, chunk_size=1024)
    assert await chunks.__anext__() == data[:1024]
    await chunks.aclose()  # closes the backend's range reader off the loop
    real = await stored.real_file()
    with real:
        assert real.read(10) == data[:10]


# -- writing from async sources ---------------------------------------------------------


async def test_create_from_async_iterable(files, local):
    file_id = await files.create(agen(b"abc", bytearray(b"def"), memoryview(b"ghi"), b""), "letters.txt")
    stored = local.get(file_id)
    assert (stored.read(), stored.filename, stored.content_type) == (b"abcdefghi", "letters.txt", "text/plain")


async def test_small_pieces_are_gathered_into_chunks(local, monkeypatch):
    import anyio.from_thread

    trips = []
    real_run = anyio.from_thread.run

    def counting_run(func, *args):
        trips.append(func)
        return real_run(func, *args)

    monkeypatch.setattr(anyio.from_thread, "run", counting_run)
    files = AsyncStorage(local, chunk_size=64 * 1024)
    piece = pattern(1000)
    file_id = await files.create(agen(*[piece] * 1000))
    assert local.get(file_id).read() == piece * 1000
    assert len(trips) <= 1000 * 1000 // (64 * 1024) + 2  # 16 full chunks, the rest, the end


async def test_create_from_starlette_upload_file(files, local):
    upload = starlette_upload(pattern(300000), "photo.png", "image/x-custom")
    file_id = await files.create(upload)
    stored = local.get(file_id)
    assert (stored.filename, stored.content_type) == ("photo.png", "image/x-custom")
    assert stored.read() == pattern(300000)


class AsyncOnlyUpload:
    """An upload object offering only ``await read(n)`` (no blocking file): streamed through the pipe."""

    def __init__(self, data, filename, content_type):
        self._data = io.BytesIO(data)
        self.filename = filename
        self.content_type = content_type
        self.reads = 0

    async def read(self, n=-1):
        self.reads += 1
        await anyio.sleep(0)
        return self._data.read(n)


async def test_create_from_async_only_upload(local):
    files = AsyncStorage(local, chunk_size=65536)
    upload = AsyncOnlyUpload(pattern(300000), "scan.pdf", None)
    stored = local.get(await files.create(upload))
    assert (stored.filename, stored.content_type) == ("scan.pdf", "application/pdf")
    assert stored.read() == pattern(300000)
    assert upload.reads == 6  # 300000 bytes in 65536-byte reads, then the empty read


async def test_starlette_upload_is_read_in_the_worker_thread(files, local, monkeypatch):
    # Its content is complete in a blocking spooled file: no trip to the loop per chunk.
    upload = starlette_upload(pattern(300000), "photo.png", "image/png")

    async def no_async_read(n=-1):
        raise AssertionError("read through the event loop")

    monkeypatch.setattr(upload, "read", no_async_read)
    assert local.get(await files.create(upload)).read() == pattern(300000)


async def test_upload_names_follow_create_rules(files, local):
    # Explicit arguments win, a FileIntent is taken as given (no guessing: filedepot 0.12 stored
    # FileIntent(data, name, None) as application/octet-stream), as for blocking uploads.
    f1 = local.get(await files.create(starlette_upload(b"x", "a.png", "image/png"), "b.txt"))
    assert (f1.filename, f1.content_type) == ("b.txt", "image/png")
    f2 = local.get(await files.create(FileIntent(starlette_upload(b"x", "a.png", "image/png"), "c.csv", None)))
    assert (f2.filename, f2.content_type) == ("c.csv", "application/octet-stream")
    f3 = local.get(await files.create(agen(b"x")))
    assert (f3.filename, f3.content_type) == ("unnamed", "application/octet-stream")


async def test_replace_and_facts_from_async_sources(files, local):
    file_id = await files.create(b"old", "keep.txt")
    assert await files.replace(file_id, agen(b"new ", b"content")) == file_id
    stored = local.get(file_id)
    assert (stored.read(), stored.filename) == (b"new content", "keep.txt")
    facts = await files.create_with_facts(starlette_upload(b"data", "f.bin", "application/x-f"))
    assert (facts.filename, facts.content_type) == ("f.bin", "application/x-f")
    assert local.get(facts.file_id).read() == b"data"


async def test_copy_between_storages_with_one_thread(local):
    # Uploads take their threads from their own pool: a copy whose chunks are
    # read through a one-thread pool cannot wait for a thread the upload holds.
    one = anyio.CapacityLimiter(1)
    src = AsyncStorage(MemoryFileStorage(), limiter=one, chunk_size=4096)
    dst = AsyncStorage(local, limiter=one)
    source = await src.get(await src.create(pattern(100000), "copy.txt"))
    with anyio.fail_after(30):
        copied = await dst.create(source.iter_range(), "copy.txt")
        whole = await dst.create(await src.get(source.file_id))  # an AsyncStoredFile as content
    assert local.get(copied).read() == local.get(whole).read() == pattern(100000)
    assert local.get(whole).filename == "copy.txt"


# -- errors keep their types and leave nothing behind ----------------------------------


class SourceBroke(Exception):
    pass


async def test_errors_keep_their_types(files):
    with pytest.raises(IOError):
        await files.get("00000000-0000-4000-8000-000000000000")
    with pytest.raises(ValueError):
        await files.exists("not-an-id")
    with pytest.raises(IOError):
        await files.replace("00000000-0000-4000-8000-000000000000", agen(b"x"))
    with pytest.raises(TypeError):
        await files.create("text")


async def test_failing_source_stores_nothing(files, local):
    error = SourceBroke("client went away")

    async def broken():
        yield pattern(200000)
        raise error

    with pytest.raises(SourceBroke) as raised:
        await files.create(broken(), "broken.bin")
    assert raised.value is error
    assert local.list() == []


async def test_text_chunks_are_refused(files, local):
    with pytest.raises(TypeError):
        await files.create(agen(b"bytes", "text"))
    assert local.list() == []


async def test_failing_replace_keeps_original(files, local):
    file_id = await files.create(b"original", "keep.txt")

    async def broken():
        yield b"partial"
        raise SourceBroke()

    with pytest.raises(SourceBroke):
        await files.replace(file_id, broken())
    assert local.get(file_id).read() == b"original"


async def test_cancelled_upload_stores_nothing(files, local):
    started = anyio.Event()

    async def stalls():
        yield pattern(500000)
        started.set()
        await anyio.sleep_forever()
        yield b"never"

    async with anyio.create_task_group() as tg:
        tg.start_soon(files.create, stalls(), "stalled.bin")
        await started.wait()
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert local.list() == []
    assert await files.create(b"still works")


# -- the loop is free, the pool bounded -------------------------------------------------


class SlowStorage(MemoryFileStorage):
    """Blocks like a remote backend; counts the calls running at once."""

    def __init__(self, delay):
        super().__init__()
        self.delay = delay
        self.running = self.most = 0
        self._lock = threading.Lock()

    def exists(self, file_or_id):
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.delay)
            return super().exists(file_or_id)
        finally:
            with self._lock:
                self.running -= 1


async def test_blocking_backends_leave_the_loop_free():
    files = AsyncStorage(SlowStorage(0.5))
    lateness = []

    async def ticker():
        for _ in range(20):
            before = time.perf_counter()
            await anyio.sleep(0.01)
            lateness.append(time.perf_counter() - before - 0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        assert await files.exists("00000000-0000-4000-8000-000000000000") is False
    assert max(lateness) < 0.25  # blocking the loop would show the whole 0.5 s; the margin is for busy machines


async def test_threads_are_bounded():
    storage = SlowStorage(0.2)  # long enough for every thread to be busy at once, even on a loaded machine
    files = AsyncStorage(storage)
    results = []

    async def probe():
        results.append(await files.exists("00000000-0000-4000-8000-000000000000"))

    async with anyio.create_task_group() as tg:
        for _ in range(3 * DEFAULT_THREADS):
            tg.start_soon(probe)
    assert results == [False] * (3 * DEFAULT_THREADS)
    assert storage.most == DEFAULT_THREADS == thread_limiter().total_tokens


async def test_streamed_upload_memory_is_bounded(files, local):
    size = 64 * MB
    chunk = pattern(64 * 1024)

    async def body():
        for _ in range(size // len(chunk)):
            yield bytearray(chunk)  # a new buffer each time, as a request body gives

    tracemalloc.start()
    try:
        file_id = await files.create(body(), "big.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert local.get(file_id).content_length == size
    assert peak < 4 * MB, peak


async def test_streamed_download_memory_is_bounded(files, local):
    size = 64 * MB
    file_id = local.create(io.BytesIO(b"\0" * size))
    stored = await files.get(file_id)
    total = 0
    tracemalloc.start()
    try:
        async for chunk in stored:
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert peak < 4 * MB, peak


# -- the worker threads' priority -------------------------------------------------------


def thread_niceness():
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


class NicenessRecorder(MemoryFileStorage):
    """Records the niceness of the threads its calls run in."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def exists(self, file_or_id):
        self.seen.append(thread_niceness())
        return super().exists(file_or_id)

    def create(self, content, filename=None, content_type=None):
        self.seen.append(thread_niceness())
        return super().create(content, filename, content_type)


@pytest.fixture
def worker_niceness():
    yield set_worker_niceness
    set_worker_niceness(0)
    _workers._configured = False  # the next tests take anyio's own path again


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
async def test_worker_niceness_lowers_depots_threads_only(worker_niceness):
    storage = NicenessRecorder()
    files = AsyncStorage(storage)
    loop_niceness = thread_niceness()
    await files.exists(MISSING)  # by default the threads keep the loop's niceness
    worker_niceness(5)
    assert worker_niceness_value() == 5
    await files.exists(MISSING)
    await files.create(agen(b"streamed ", b"upload"), "a.txt")  # an upload fed from the loop
    assert storage.seen == [loop_niceness] + [min(19, loop_niceness + 5)] * 2
    assert thread_niceness() == loop_niceness  # the event loop's thread is left alone
    # The same pool's threads run the application's work too: at the niceness depot left them.
    assert await anyio.to_thread.run_sync(thread_niceness) in (loop_niceness, min(19, loop_niceness + 5))


@pytest.mark.parametrize("bad", [-1, 20, True, 2.0, "5"])
def test_worker_niceness_is_checked(bad, worker_niceness):
    with pytest.raises(ValueError):
        worker_niceness(bad)
    assert worker_niceness_value() == 0


# -- the registry ----------------------------------------------------------------------


async def test_manager_get_async(memory_depots):
    files = DepotManager.get_async()
    assert isinstance(files, AsyncStorage) and files.storage is DepotManager.get()
    file_id = await files.create(b"registered")
    assert DepotManager.get().get(file_id).read() == b"registered"
    assert DepotManager.get_async("nope") is None
    assert AsyncStorage(files).storage is files.storage


def test_missing_anyio_names_the_extra():
    import subprocess
    import sys

    code = ("import sys; sys.modules['anyio'] = None\n"
            "try:\n    import depot.io.aio\nexcept ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'depot[async]'" in out


def test_a_sync_file_collected_unclosed_closes_without_the_portal():
    """Its finalizer may run on a worker thread that a stopping portal waits for (a deadlock seen in CI)."""
    import gc

    from depot.io.aio_sync import SyncStoredFile

    class StoppingPortal:
        calls = 0

        def call(self, *args):
            StoppingPortal.calls += 1
            raise AssertionError("a finalizer waited for the portal")

    backend = MemoryFileStorage()
    stored = backend.get(backend.create(b"data"))
    SyncStoredFile(AsyncStoredFile(stored), StoppingPortal())
    gc.collect()
    assert stored.closed and StoppingPortal.calls == 0
