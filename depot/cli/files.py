"""``put``, ``get``, ``ls``, ``info`` and ``rm``: working with the files of one storage."""
from __future__ import annotations

import argparse
import json
import os
import secrets
import stat
import sys
from typing import Any, BinaryIO, Dict, Optional, cast

from depot.cli.context import INVALID_ID, NO_SUCH_FILE, Context, describe, missing_reason, split_target
from depot.cli.errors import CLIError, ExitCode
from depot.cli.progress import Progress, is_terminal
from depot.io.interfaces import FileStorage, StoredFile
from depot.io.utils import copy_stream

__all__ = ["register"]

TIMESTAMP = "%Y-%m-%d %H:%M:%S"


def _storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--storage", metavar="NAME",
                        help="storage to use (default: the settings' default, or the only storage)")


def _target_help(what: str) -> str:
    return "%s: an ID of the storage chosen with -s, or STORAGE/ID" % what


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("put", help="store files (or stdin) and print their ids",
                       description="Store each FILE ('-' reads stdin) and print one id per line, in order.")
    _storage_option(p)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--name", help="filename to store (default: the file's own name; 'unnamed' for stdin)")
    p.add_argument("--content-type", help="content type to store (default: guessed from the filename)")
    p.add_argument("--path", action="store_true", help="print STORAGE/ID paths instead of bare ids")
    p.set_defaults(run=put)

    p = sub.add_parser("get", help="write a file's content to stdout or a file",
                       description="Write the content of a stored file to stdout, or to -o PATH.")
    _storage_option(p)
    p.add_argument("target", metavar="ID", help=_target_help("the file"))
    p.add_argument("-o", "--output", metavar="PATH",
                   help="file to write ('-' is stdout); an existing directory receives the stored filename")
    p.set_defaults(run=get)

    p = sub.add_parser("ls", help="list the ids of a storage",
                       description="List the file ids of a storage, sorted; -l adds the files' facts.")
    _storage_option(p)
    p.add_argument("-l", "--long", action="store_true", help="show size, date, type and filename")
    p.add_argument("--json", action="store_true", help="one JSON object per file (implies -l)")
    p.set_defaults(run=ls)

    p = sub.add_parser("info", help="show files' metadata",
                       description="Show the metadata of stored files, as text or JSON (one object per line).")
    _storage_option(p)
    p.add_argument("targets", nargs="+", metavar="ID", help=_target_help("each file"))
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(run=info)

    p = sub.add_parser("rm", help="delete files",
                       description="Delete stored files. A missing file is an error unless -f is given.")
    _storage_option(p)
    p.add_argument("targets", nargs="+", metavar="ID", help=_target_help("each file"))
    p.add_argument("-f", "--force", action="store_true", help="ignore files that do not exist")
    p.set_defaults(run=rm)


def put(args: argparse.Namespace, ctx: Context) -> int:
    if args.name is not None and len(args.files) > 1:
        raise CLIError("--name applies to a single file")
    name, storage = ctx.storage(args.storage)
    sizes = [_input_size(path) for path in args.files]
    total = None if None in sizes else sum(size for size in sizes if size is not None)
    with ctx.progress("put", len(args.files), total) as progress:
        # One line per stored input, in input order; a failed input prints
        # nothing here (its error goes to stderr), so a script can pair ids
        # with the inputs that succeeded.
        for path in args.files:
            file_id = _put_one(ctx, storage, name, path, args, progress)
            if file_id is not None:
                ctx.print("%s/%s" % (name, file_id) if args.path else file_id)
            progress.file_done()
    return ctx.exit_code()


def _input_size(path: str) -> Optional[int]:
    """The size of a regular file (stdin redirected from one included); ``None`` for a pipe."""
    try:
        info = os.fstat(_stdin().fileno()) if path == "-" else os.stat(path)
    except (OSError, AttributeError, ValueError):  # missing (reported later), or no real stdin
        return 0 if path != "-" else None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _stdin() -> BinaryIO:
    return cast(BinaryIO, getattr(sys.stdin, "buffer", sys.stdin))


class _Counted:
    """A binary file object whose reads advance the progress line."""

    def __init__(self, raw: BinaryIO, progress: Progress) -> None:
        self._raw = raw
        self._progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._progress.advance(len(data))
        return data


def _put_one(
    ctx: Context, storage: FileStorage, name: str, path: str, args: argparse.Namespace, progress: Progress
) -> Optional[str]:
    # Counted only while a progress line is drawn: a plain file object keeps
    # the storages' fast paths (a kernel copy to local disk, a known size for S3).
    counted = _Counted if progress.drawn else (lambda raw, progress: raw)
    if path == "-":
        source = None
        content: Any = counted(_stdin(), progress)
        # The given name, never stdin's '<stdin>'; the type is guessed from it.
        filename = args.name or "unnamed"
    else:
        try:
            source = open(path, "rb")
        except OSError as exc:
            ctx.fail("", path, "cannot read: %s" % (exc.strerror or exc))
            return None
        filename = args.name or os.path.basename(path)
        content = counted(source, progress)
    try:
        return storage.create(content, filename, args.content_type)
    except Exception as exc:
        ctx.fail(name, path, "storing failed: %s" % describe(exc))
        return None
    finally:
        if source is not None:
            source.close()


def _open_target(ctx: Context, target: str, storage_opt: Optional[str]):
    storage_name, file_id = split_target(target, storage_opt)
    name, storage = ctx.storage(storage_name)
    return name, file_id, ctx.open_file(name, storage, file_id)


def get(args: argparse.Namespace, ctx: Context) -> int:
    if args.output is None and is_terminal(ctx.stdout):
        # Binary content would garble the terminal; '-o -' says it is meant.
        raise CLIError("not writing file content to a terminal: use -o PATH, a pipe, or -o - to insist")
    name, file_id, f = _open_target(ctx, args.target, args.storage)
    if f is None:
        return ctx.exit_code()
    with f:
        if args.output in (None, "-"):
            out = ctx.binary_stdout
            copy_stream(f, out)
            out.flush()
        else:
            _write_file(ctx, f, args.output, name)
    return ctx.exit_code()


def _safe_basename(filename: Optional[str], fallback: str) -> str:
    # The stored name comes from whoever uploaded the file: never let it
    # climb out of the directory or hide as a dot-file.
    base = os.path.basename((filename or "").replace("\\", "/")).lstrip(".")
    try:
        os.fsencode(base)
    except UnicodeEncodeError:  # a lone surrogate the file system cannot take: keep it visible, escaped
        base = base.encode("utf-8", "backslashreplace").decode("utf-8")
    return base or fallback


def _destination(output: str, f: StoredFile) -> str:
    """Where ``-o output`` writes ``f``: into a directory under its stored name, through a symlink."""
    if os.path.isdir(output):
        return os.path.join(output, _safe_basename(f.filename, f.file_id))
    if os.path.islink(output):
        # Written through, as cp does: the link stays, its target gets the bytes.
        return os.path.realpath(output)
    return output


def _create_beside(path: str) -> "tuple[int, str]":
    """A new temporary file in ``path``'s folder, with the mode the umask gives new files."""
    directory = os.path.dirname(os.path.abspath(path))
    for _ in range(100):
        tmp = os.path.join(directory, ".depot-%s.part" % secrets.token_hex(8))
        try:
            # 0o666 before the umask, like any file a shell command creates
            # (mkstemp would give 0600 whatever the umask).
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError("no free temporary name in %s" % directory)


def _write_file(ctx: Context, f: StoredFile, output: str, storage_name: str) -> None:
    path = _destination(output, f)
    # Written beside the destination and renamed, so a failed download never
    # leaves a truncated file under the final name.
    try:
        fd, tmp = _create_beside(path)
    except OSError as exc:
        ctx.fail("", output, "cannot write: %s" % (exc.strerror or exc))
        return
    try:
        with os.fdopen(fd, "wb") as out:
            copy_stream(f, out)
        os.replace(tmp, path)
    except BaseException as exc:
        os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is not None:
            ctx.fail("", output, "cannot write: %s" % (exc.strerror or exc))
            return
        raise
    ctx.warn("wrote %s/%s to %s" % (storage_name, f.file_id, path))


def facts(storage_name: str, f: StoredFile) -> Dict[str, Any]:
    """The metadata of ``f`` as a JSON-ready dict."""
    modified = f.last_modified.strftime(TIMESTAMP) if f.last_modified is not None else None
    return {
        "storage": storage_name,
        "id": f.file_id,
        "path": "%s/%s" % (storage_name, f.file_id),
        "filename": f.filename,
        "content_type": f.content_type,
        "content_length": f.content_length,
        "last_modified": modified,
        "public_url": f.public_url,
        "checksum": getattr(f, "checksum", None),
    }


def _long_line(item: Dict[str, Any]) -> str:
    size = item["content_length"]
    return "%s  %12s  %-19s  %-24s  %s" % (
        item["id"], "-" if size is None else size, item["last_modified"] or "-",
        item["content_type"] or "-", item["filename"] or "-",
    )


def ls(args: argparse.Namespace, ctx: Context) -> int:
    name, storage = ctx.storage(args.storage)
    try:
        ids = sorted(storage.list())
    except Exception as exc:
        raise CLIError("cannot list storage %r: %s" % (name, describe(exc)), ExitCode.STORAGE) from exc
    if not (args.long or args.json):
        for file_id in ids:
            ctx.print(file_id)
        return ExitCode.OK
    for file_id in ids:
        try:
            f = storage.get(file_id)
        except Exception as exc:
            # Deleted since the listing: not an error of this listing.
            if missing_reason(storage, file_id, exc) is None:
                ctx.fail(name, file_id, describe(exc))
            continue
        with f:
            item = facts(name, f)
        ctx.print(json.dumps(item) if args.json else _long_line(item))
    return ctx.exit_code()


_INFO_FIELDS = ("path", "filename", "content_type", "content_length", "last_modified", "public_url", "checksum")


def info(args: argparse.Namespace, ctx: Context) -> int:
    first = True
    for target in args.targets:
        name, file_id, f = _open_target(ctx, target, args.storage)
        if f is None:
            continue
        with f:
            item = facts(name, f)
        if args.json:
            ctx.print(json.dumps(item))
            continue
        if not first:
            ctx.print()
        first = False
        for key in _INFO_FIELDS:
            value = item[key]
            ctx.print("%-15s %s" % (key + ":", "-" if value is None else value))
    return ctx.exit_code()


def rm(args: argparse.Namespace, ctx: Context) -> int:
    for target in args.targets:
        storage_name, file_id = split_target(target, args.storage)
        name, storage = ctx.storage(storage_name)
        try:
            if not storage.exists(file_id):
                if not args.force:
                    ctx.fail(name, file_id, NO_SUCH_FILE, missing=True)
                continue
            storage.delete(file_id)
        except Exception as exc:
            missing = missing_reason(storage, file_id, exc)
            if missing is None:
                ctx.fail(name, file_id, "delete failed: %s" % describe(exc))
            elif missing == INVALID_ID or not args.force:  # -f forgives absence, not a typo
                ctx.fail(name, file_id, missing, missing=True)
    return ctx.exit_code()
