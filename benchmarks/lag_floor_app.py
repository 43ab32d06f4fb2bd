"""The floor of bench_async_lag.py: the same transfers with the least work an ASGI app can do.

No depot, no database: downloads are Starlette's ``FileResponse`` (read in
1 MiB chunks in a worker thread, depot's chunk size, instead of its default
64 KiB: fewer trips through the loop), raw uploads (``PUT
/documents/raw/<name>``) are the request body's pieces gathered up to 1 MiB
on the loop and written to a new file by a worker thread (``writelines``:
no join; opened and closed there too), multipart uploads are parsed by Starlette and copied by a worker
thread.  Same server (uvicorn through ``library.serve_asgi``), same lag
probe and same URLs as ``examples/fastapi_app.py``: the lateness measured
here is what the machine, the server and the transfers cost by themselves,
the figure the example is compared with.  Started by the benchmark::

    python benchmarks/lag_floor_app.py --port 0 --data DIR --lag-probe
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import sys
from typing import Any, AsyncIterator, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))

import anyio.to_thread  # noqa: E402
from fastapi import FastAPI, HTTPException, Request, UploadFile  # noqa: E402
from fastapi.responses import FileResponse  # noqa: E402

import fastapi_app  # noqa: E402

CHUNK = 1024 * 1024


class LargeChunkFileResponse(FileResponse):
    chunk_size = CHUNK


def make_app(data_dir: str) -> Any:
    files = os.path.join(data_dir, "files")
    os.makedirs(files, exist_ok=True)
    probe = fastapi_app.LagProbe()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(probe.run())
        yield
        task.cancel()

    app = FastAPI(lifespan=lifespan)

    def stored(name: str) -> Dict[str, Any]:
        return {"title": name, "url": fastapi_app.file_url("files/" + name)}

    def new_path(filename: str) -> str:
        # A new file each time, as depot stores each upload under a new id:
        # truncating a large file (freeing its cached pages) is work of its own.
        return os.path.join(files, "%d-%s" % (next(numbers), os.path.basename(filename)))

    numbers = itertools.count()

    @app.put("/documents/raw/{filename}", status_code=201)
    async def upload_raw(filename: str, request: Request) -> Dict[str, Any]:
        path = new_path(filename)
        f = await anyio.to_thread.run_sync(open, path, "wb")  # opened and closed off the loop, like the writes
        try:
            pieces: List[bytes] = []
            size = 0
            async for piece in request.stream():
                pieces.append(piece)
                size += len(piece)
                if size >= CHUNK:
                    await anyio.to_thread.run_sync(f.writelines, pieces)
                    pieces, size = [], 0
            await anyio.to_thread.run_sync(f.writelines, pieces)
        finally:
            await anyio.to_thread.run_sync(f.close)
        return stored(os.path.basename(path))

    @app.post("/documents", status_code=201)
    async def upload_document(file: UploadFile) -> Dict[str, Any]:
        path = new_path(file.filename or "upload.bin")

        def copy() -> None:
            with open(path, "wb") as f:
                shutil.copyfileobj(file.file, f, CHUNK)

        await anyio.to_thread.run_sync(copy)
        return stored(os.path.basename(path))

    @app.get(fastapi_app.MOUNTPOINT + "/files/{name}")
    async def serve_file(name: str) -> FileResponse:
        path = os.path.join(files, os.path.basename(name))
        if not os.path.isfile(path):
            raise HTTPException(404)
        return LargeChunkFileResponse(path, media_type="application/octet-stream")

    probe.add_routes(app)
    return app


if __name__ == "__main__":
    import lag_blocking_app  # beside this file

    lag_blocking_app.main(make_app, __doc__)
