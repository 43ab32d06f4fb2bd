"""The depot document library as a FastAPI application on uvicorn, fully async.

    pip install -e '.[sqlalchemy,image,async]' fastapi uvicorn python-multipart aiosqlite greenlet
    python examples/fastapi_app.py --port 8080

A JSON API over the models of ``library.py`` (documents: any file; photos:
images stored with a thumbnail), kept with SQLAlchemy's ``AsyncSession`` on
SQLite (aiosqlite).  Nothing blocks the event loop:

- uploads go through ``await attach(...)``
  (:mod:`depot.fields.aio`), which streams the ``UploadFile`` (or the raw
  request body) to the storage in a worker thread, thumbnails included;
- large files are best sent as the request body itself
  (``PUT /documents/raw/<name>``): it is streamed to the storage as it
  arrives, whereas a multipart form (``POST /documents``) is first parsed
  by Starlette on the event loop into a temporary file;
- commits and rollbacks delete replaced or abandoned files in worker threads;
- files are served under ``/depot/<storage>/<id>`` by the ASGI
  ``depot.asgi.DepotMiddleware`` wrapped around the application: ranges,
  ETags, conditional requests, chunks read in worker threads (or zero-copy
  ``pathsend`` on servers that offer it).

``--lag-probe`` starts a task measuring how late a 10 ms ``asyncio.sleep``
wakes up (what every request waits when the loop is blocked); ``GET /lag``
reports the percentiles and ``POST /lag/reset`` starts a new measurement.
``--worker-niceness N`` runs depot's worker threads N levels nicer than the
event loop (Linux; see ``depot.io.aio.set_worker_niceness``).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from typing import Any, AsyncIterator, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for library.py, when run as a script

from fastapi import FastAPI, Form, HTTPException, Request, UploadFile  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: E402

import library  # noqa: E402
from depot.fields.aio import attach  # noqa: E402
from depot.io.aio import set_worker_niceness  # noqa: E402
from depot.io.utils import FileIntent  # noqa: E402
from depot.manager import DepotManager  # noqa: E402

MOUNTPOINT = "/depot"


def file_url(path: str) -> str:
    return "%s/%s" % (MOUNTPOINT, path)


def describe_document(doc: Any) -> Dict[str, Any]:
    c = doc.content
    return {"id": doc.id, "title": doc.title, "filename": c.filename, "content_type": c.content_type,
            "url": file_url(c.path)}


def describe_photo(photo: Any) -> Dict[str, Any]:
    i = photo.image
    return {"id": photo.id, "caption": photo.caption, "filename": i.filename, "url": file_url(i.path),
            "thumbnail_url": file_url(i.thumb_path)}


class LagProbe:
    """How late the event loop wakes a task that sleeps 10 ms: the delay every request suffers.

    Each sample also records how long the loop's thread waited for a CPU
    while it was ready to run (Linux's ``schedstat`` run delay): on a machine
    shared with other busy processes that part of the lateness is the
    machine's, the rest is the application's (a busy loop, or waiting for the
    GIL).
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self._schedstat: Optional[int] = None
        self.reset()

    def reset(self) -> None:
        self.samples: List[float] = []
        self.own: List[float] = []  # each sample less the time the thread waited for a CPU
        # The CPU time of the loop's own thread (the probe runs in it): how busy the loop itself was.
        self.started = (time.perf_counter(), time.thread_time(), self._run_delay())

    def _run_delay(self) -> Optional[float]:
        """Seconds the calling thread has waited for a CPU while runnable, if the system says."""
        try:
            if self._schedstat is None:
                self._schedstat = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            return int(os.pread(self._schedstat, 128, 0).split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return None

    async def run(self) -> None:
        self.reset()
        while True:
            before, delay_before = time.perf_counter(), self._run_delay()
            await asyncio.sleep(self.interval)
            late = time.perf_counter() - before - self.interval
            self.samples.append(late)
            delay_after = self._run_delay()
            if delay_before is not None and delay_after is not None:
                self.own.append(max(0.0, late - (delay_after - delay_before)))

    def report(self) -> Dict[str, Any]:
        def ms(samples: List[float], q: float) -> Optional[float]:
            ordered = sorted(samples)
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2) if ordered else None

        wall, cpu = time.perf_counter() - self.started[0], time.thread_time() - self.started[1]
        delay_before, delay = self.started[2], self._run_delay()
        waited = delay - delay_before if delay is not None and delay_before is not None else None
        return {"samples": len(self.samples), "p50_ms": ms(self.samples, 0.5), "p99_ms": ms(self.samples, 0.99),
                "max_ms": ms(self.samples, 1.0), "own_p99_ms": ms(self.own, 0.99),
                "loop_cpu_percent": round(100 * cpu / wall, 1) if wall > 0 else None,
                # How long the loop's thread was ready to run but had no CPU, in % of the time.
                "loop_wait_percent": round(100 * waited / wall, 1) if wall > 0 and waited is not None else None,
                "server": "%s loop, %s" % (type(asyncio.get_running_loop()).__module__.split(".")[0],
                                           "httptools" if "httptools" in sys.modules else "h11")}

    def add_routes(self, app: FastAPI) -> None:
        """``GET /lag``: the report; ``POST /lag/reset``: start a new measurement."""

        @app.get("/lag")
        async def lag() -> Dict[str, Any]:
            return self.report()

        @app.post("/lag/reset", status_code=204)
        async def lag_reset() -> None:
            self.reset()


def make_app(data_dir: str, lag_probe: bool = False) -> Any:
    library.configure_storages(data_dir)
    engine = create_async_engine("sqlite+aiosqlite:///" + os.path.join(data_dir, "library.sqlite"))
    # expire_on_commit=False: attributes stay loaded after a commit, no lazy (blocking) load.
    Session = async_sessionmaker(engine, expire_on_commit=False)
    probe = LagProbe()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.run_sync(library.Base.metadata.create_all)
        task = asyncio.create_task(probe.run()) if lag_probe else None
        yield
        if task is not None:
            task.cancel()
        await engine.dispose()

    app = FastAPI(title="depot demo (FastAPI)", lifespan=lifespan)

    @app.get("/documents")
    async def list_documents() -> List[Dict[str, Any]]:
        async with Session() as session:
            docs = await session.scalars(select(library.Document).order_by(library.Document.id.desc()))
            return [describe_document(d) for d in docs]

    @app.post("/documents", status_code=201)
    async def upload_document(file: UploadFile, title: str = Form("")) -> Dict[str, Any]:
        if not file.filename:
            raise HTTPException(400, "choose a file to upload")
        async with Session() as session:
            doc = library.Document(title=title.strip() or file.filename)
            await attach(doc, "content", file)  # streamed to the storage off the loop
            session.add(doc)
            await session.commit()  # a failing commit rolls back, and the stored file is removed
            return describe_document(doc)

    @app.put("/documents/raw/{filename}", status_code=201)
    async def upload_raw(filename: str, request: Request) -> Dict[str, Any]:
        """The request body itself is the file: streamed as it arrives, never spooled."""
        content_type = request.headers.get("content-type")
        async with Session() as session:
            doc = library.Document(title=filename)
            await attach(doc, "content", FileIntent(request.stream(), filename, content_type))
            session.add(doc)
            await session.commit()
            return describe_document(doc)

    @app.post("/documents/{doc_id}/replace")
    async def replace_document(doc_id: int, file: UploadFile) -> Dict[str, Any]:
        async with Session() as session:
            doc = await session.get(library.Document, doc_id)
            if doc is None:
                raise HTTPException(404)
            await attach(doc, "content", file)
            await session.commit()  # the old file is deleted once this has succeeded
            return describe_document(doc)

    @app.delete("/documents/{doc_id}", status_code=204)
    async def delete_document(doc_id: int) -> None:
        async with Session() as session:
            doc = await session.get(library.Document, doc_id)
            if doc is not None:
                await session.delete(doc)  # its file goes when the deletion is committed
                await session.commit()

    @app.get("/photos")
    async def list_photos() -> List[Dict[str, Any]]:
        async with Session() as session:
            photos = await session.scalars(select(library.Photo).order_by(library.Photo.id.desc()))
            return [describe_photo(p) for p in photos]

    @app.post("/photos", status_code=201)
    async def upload_photo(image: UploadFile, caption: str = Form("")) -> Dict[str, Any]:
        async with Session() as session:
            photo = library.Photo(caption=caption.strip() or image.filename or "photo")
            try:
                await attach(photo, "image", image)  # the thumbnail is made in the worker thread too
            except ValueError as exc:  # not an image, or too large to open safely
                raise HTTPException(400, str(exc)) from None
            session.add(photo)
            await session.commit()
            return describe_photo(photo)

    probe.add_routes(app)
    return DepotManager.make_asgi_middleware(app, mountpoint=MOUNTPOINT)


if __name__ == "__main__":
    lag_probe = "--lag-probe" in sys.argv
    if lag_probe:
        sys.argv.remove("--lag-probe")
    if "--worker-niceness" in sys.argv:  # depot's worker threads yield the CPU to the event loop (Linux)
        at = sys.argv.index("--worker-niceness")
        set_worker_niceness(int(sys.argv[at + 1]))
        del sys.argv[at:at + 2]
    library.main(lambda data: make_app(data, lag_probe), __doc__, library.serve_asgi)
