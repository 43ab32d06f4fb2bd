"""The reference point of bench_async_lag.py: the FastAPI example's transfers done with the blocking API.

What an async application does when it calls depot's blocking API from its
handlers: the upload is stored by assigning it to the column and the
download is read with ``stored.read()``, both on the event loop.  Same
routes, same probe and same server as ``examples/fastapi_app.py``; only the
storage calls differ.  Started by the benchmark, like the example::

    python benchmarks/lag_blocking_app.py --port 0 --data DIR --lag-probe
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import Any, AsyncIterator, Callable, Dict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))

from fastapi import FastAPI, Form, HTTPException, Request, UploadFile  # noqa: E402
from fastapi.responses import StreamingResponse  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: E402

import fastapi_app  # noqa: E402
import library  # noqa: E402
from depot.io.utils import FileIntent  # noqa: E402
from depot.manager import DepotManager  # noqa: E402

CHUNK = 256 * 1024


def make_app(data_dir: str) -> Any:
    library.configure_storages(data_dir)
    engine = create_async_engine("sqlite+aiosqlite:///" + os.path.join(data_dir, "library.sqlite"))
    Session = async_sessionmaker(engine, expire_on_commit=False)
    probe = fastapi_app.LagProbe()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.run_sync(library.Base.metadata.create_all)
        task = asyncio.create_task(probe.run())
        yield
        task.cancel()
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def add(doc: Any) -> Dict[str, Any]:
        async with Session() as session:
            session.add(doc)
            await session.commit()
            return fastapi_app.describe_document(doc)

    @app.post("/documents", status_code=201)
    async def upload_document(file: UploadFile, title: str = Form("")) -> Dict[str, Any]:
        return await add(library.Document(title=title or file.filename, content=file))  # stored on the loop

    @app.put("/documents/raw/{filename}", status_code=201)
    async def upload_raw(filename: str, request: Request) -> Dict[str, Any]:
        body = bytearray()
        async for chunk in request.stream():  # the blocking API needs a file: the whole body in memory
            body += chunk
        return await add(library.Document(title=filename, content=FileIntent(bytes(body), filename, None)))

    @app.get(fastapi_app.MOUNTPOINT + "/{storage}/{file_id}")
    async def serve_file(storage: str, file_id: str) -> StreamingResponse:
        try:
            stored = DepotManager.get(storage).get(file_id)
        except (IOError, ValueError, AttributeError):
            raise HTTPException(404) from None

        async def chunks() -> AsyncIterator[bytes]:
            with stored:
                while True:
                    chunk = stored.read(CHUNK)  # read on the loop
                    if not chunk:
                        return
                    yield chunk

        return StreamingResponse(chunks(), media_type=stored.content_type,
                                 headers={"Content-Length": str(stored.content_length)})

    probe.add_routes(app)
    return app


def main(make: Callable[[str], Any], doc: str) -> None:
    """The command line of the benchmark's reference apps: the example's, the probe always on."""
    if "--lag-probe" in sys.argv:
        sys.argv.remove("--lag-probe")
    library.main(make, doc, library.serve_asgi)


if __name__ == "__main__":
    main(make_app, __doc__)
