"""``serve``: the configured storages behind DepotMiddleware on a local development server."""
from __future__ import annotations

import argparse
import errno
import html
import socketserver
from typing import Any, Callable, Iterable, List, Mapping, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from depot.cli.context import Context, describe
from depot.cli.errors import CLIError, ExitCode
from depot.cli.progress import plural
from depot.manager import DepotManager

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]

__all__ = ["register", "index_app", "unavailable_app", "no_body_on_head", "run_server", "listen_error"]

#: Files listed per storage on the index page.
INDEX_LIMIT = 200


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "serve", help="serve the storages over HTTP for development",
        description=(
            "Serve every configured storage through DepotMiddleware on a local WSGI server "
            "(single process, for development; deploy the middleware in your application instead). "
            "The index page at / lists the files."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    p.add_argument("--mountpoint", default="/depot", help="URL prefix of the files (default: /depot)")
    p.add_argument("--cache-max-age", type=int, default=3600, help="Cache-Control max-age in seconds")
    p.add_argument("--secret", help="serve files only through signed links (see DepotMiddleware)")
    p.add_argument("--quiet", action="store_true", help="do not log requests")
    p.set_defaults(run=serve)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    # A browser opens several connections: one slow download must not stall the rest.
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _answer(start_response: Callable[..., Any], status: str, body: str, content_type: str = "text/html") -> List[bytes]:
    data = body.encode("utf-8")
    start_response(status, [("Content-Type", content_type + "; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


def index_app(names: List[str], broken: Optional[Mapping[str, str]] = None) -> WSGIApp:
    """A WSGI app answering ``/`` with a page linking to every file of the storages ``names``.

    ``broken`` maps the storages that could not be built to the reason, shown instead of their files.
    """
    broken = broken or {}

    def app(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") != "/":
            return _answer(start_response, "404 Not Found", "<h1>Not Found</h1>")
        parts = ["<!doctype html><meta charset='utf-8'><title>depot</title><h1>depot storages</h1>"]
        for name in names:
            if name in broken:
                parts.append("<h2>%s</h2><p>unavailable: %s</p>" % (html.escape(name), html.escape(broken[name])))
            else:
                parts.append(_storage_section(name))
        return _answer(start_response, "200 OK", "\n".join(parts))

    return app


def unavailable_app(app: WSGIApp, mountpoint: str, broken: Mapping[str, str]) -> WSGIApp:
    """``app``, except that the file URLs of the storages in ``broken`` answer 503 with the reason."""
    prefix = mountpoint.rstrip("/") + "/"

    def wrapper(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(prefix):
            name = path[len(prefix):].split("/", 1)[0]
            if name in broken:
                return _answer(start_response, "503 Service Unavailable",
                               "storage %s is unavailable: %s\n" % (name, broken[name]), "text/plain")
        return app(environ, start_response)

    return wrapper


def no_body_on_head(app: WSGIApp) -> WSGIApp:
    """``app`` with the body of every ``HEAD`` response dropped (error pages included)."""

    def wrapper(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        result = app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "HEAD":
            return result
        close = getattr(result, "close", None)
        if close is not None:
            close()
        return []

    return wrapper


def _storage_section(name: str) -> str:
    storage = DepotManager.get(name)
    if storage is None:  # the names listed are configured ones; kept as a guard for the types
        return "<h2>%s</h2><p>cannot list: not configured</p>" % html.escape(name)
    try:
        ids = sorted(storage.list())
    except Exception as exc:
        return "<h2>%s</h2><p>cannot list: %s</p>" % (html.escape(name), html.escape(describe(exc)))
    items = []
    for file_id in ids[:INDEX_LIMIT]:
        url = DepotManager.url_for("%s/%s" % (name, file_id))
        try:
            with storage.get(file_id) as f:
                label = "%s (%s, %s bytes)" % (f.filename, f.content_type, f.content_length)
        except Exception as exc:
            label = "unreadable: %s" % describe(exc)
        items.append("<li><a href='%s'>%s</a> %s</li>" % (html.escape(url), html.escape(file_id), html.escape(label)))
    more = "<p>... and %d more</p>" % (len(ids) - INDEX_LIMIT) if len(ids) > INDEX_LIMIT else ""
    return "<h2>%s</h2><p>%s</p><ul>%s</ul>%s" % (html.escape(name), plural(len(ids), "file"), "".join(items), more)


def serve(args: argparse.Namespace, ctx: Context) -> int:
    names = ctx.storages.names
    broken = ctx.storages.register_all()
    for name in names:
        if name in broken:
            ctx.warn("warning: not serving storage %s (its URLs answer 503): %s" % (name, broken[name]))
    working = [name for name in names if name not in broken]
    if not working:
        raise CLIError("no storage could be started, nothing to serve")
    options: dict = {"mountpoint": args.mountpoint, "cache_max_age": args.cache_max_age}
    if args.secret:
        options["secret"] = args.secret
    try:
        app = DepotManager.make_middleware(index_app(names, broken), **options)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    app = no_body_on_head(unavailable_app(app, args.mountpoint, broken))

    def announce(host: str, port: int) -> None:
        shown = "[%s]" % host if ":" in host else host
        ctx.print("Serving %s at http://%s:%d%s/<storage>/<id> (index: http://%s:%d/); Ctrl-C to stop"
                  % (", ".join(working), shown, port, args.mountpoint.rstrip("/"), shown, port), flush=True)

    try:
        run_server(app, args.host, args.port, announce, quiet=args.quiet)
    except OSError as exc:
        raise CLIError(listen_error(args.host, args.port, exc)) from None
    return ExitCode.OK


def listen_error(host: str, port: int, exc: OSError) -> str:
    """What to tell the user when the server cannot listen on ``host:port``."""
    if exc.errno == errno.EADDRINUSE:
        return "port %d is in use on %s: choose another with --port, or --port 0 for a free one" % (port, host)
    return "cannot listen on %s:%d: %s" % (host, port, exc.strerror or exc)


def run_server(
    app: Callable[..., Any],
    host: str,
    port: int,
    on_ready: Callable[[str, int], None],
    quiet: bool = False,
) -> None:
    """Serve the WSGI ``app`` on ``host:port`` with threads until Ctrl-C or SIGTERM.

    ``on_ready(host, port)`` is called once listening (``port`` 0 picks a
    free one, reported there).  For development: the standard library's
    server, no process management, no TLS.
    """
    handler = _QuietHandler if quiet else WSGIRequestHandler
    server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=handler)
    on_ready(*server.server_address[:2])  # type: ignore[arg-type]  # AF_INET: (str host, int port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
