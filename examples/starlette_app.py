"""The depot document library as a native Starlette (ASGI) application on uvicorn.

    pip install -e '.[sqlalchemy,image,asgi]' starlette python-multipart uvicorn
    python examples/starlette_app.py --port 8080

``DepotManager.make_asgi_middleware`` wraps the Starlette application in the
ASGI ``depot.asgi.DepotMiddleware``: file URLs are answered directly (reads
in worker threads, or zero-copy ``pathsend`` where the server offers it),
everything else goes to Starlette.  Starlette's ``UploadFile`` has
``filename``, ``file`` and ``content_type``, so depot stores it as it comes;
storage and database calls run in Starlette's thread pool.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for library.py, when run as a script

from starlette.applications import Starlette  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import HTMLResponse, RedirectResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

import library  # noqa: E402
from depot.manager import DepotManager  # noqa: E402


def make_asgi_app(data_dir: str) -> Starlette:
    Session = library.setup(data_dir)

    def page(error=None) -> HTMLResponse:
        with Session() as session:
            documents, photos = library.listing(session)
            body = library.render_index(documents, photos, "Starlette (ASGI)", error)
        return HTMLResponse(body)

    async def change(action, *args) -> HTMLResponse:
        # Storage and database calls block: keep them off the event loop.
        def run():
            with Session() as session:
                action(session, *args)

        try:
            await run_in_threadpool(run)
        except library.UploadRefused as exc:
            # Back to the list with the reason: a reload of that page does not post again.
            return RedirectResponse(library.error_location(str(exc)), status_code=303)
        except LookupError:
            raise HTTPException(404) from None
        return RedirectResponse("/", status_code=303)

    async def home(request: Request):
        return await run_in_threadpool(page, library.pop_error(request.query_params.get("error")))

    async def upload_document(request: Request):
        form = await request.form()
        return await change(library.add_document, form.get("title", ""), form.get("file"))

    async def replace_document(request: Request):
        form = await request.form()
        return await change(library.replace_document, request.path_params["doc_id"], form.get("file"))

    async def delete_document(request: Request):
        return await change(library.delete_document, request.path_params["doc_id"])

    async def upload_photo(request: Request):
        form = await request.form()
        return await change(library.add_photo, form.get("caption", ""), form.get("image"))

    return Starlette(routes=[
        Route("/", home),
        Route("/documents", upload_document, methods=["POST"]),
        Route("/documents/{doc_id:int}/replace", replace_document, methods=["POST"]),
        Route("/documents/{doc_id:int}/delete", delete_document, methods=["POST"]),
        Route("/photos", upload_photo, methods=["POST"]),
    ])


def make_app(data_dir: str):
    """The ASGI application: depot's ASGI DepotMiddleware around the Starlette app."""
    return DepotManager.make_asgi_middleware(make_asgi_app(data_dir))


if __name__ == "__main__":
    library.main(make_app, __doc__, library.serve_asgi)
