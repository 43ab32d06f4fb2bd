"""``gc``: remove what interrupted writers left in storages."""
from __future__ import annotations

import argparse
import inspect

from depot.cli.context import Context, describe
from depot.cli.errors import CLIError, ExitCode

__all__ = ["register"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "gc", help="remove leftovers of interrupted writes",
        description=(
            "Remove what writers killed mid-write left in STORAGE (every configured storage "
            "without one): temporary folders of the local storage, orphan chunks of GridFS. "
            "Stored files are never touched, nor leftovers younger than --older-than or still "
            "held by a running writer."
        ),
    )
    p.add_argument("storages", nargs="*", metavar="STORAGE", help="storage to clean (default: all)")
    p.add_argument("--older-than", type=float, default=3600.0, metavar="SECONDS",
                   help="only remove leftovers untouched for this long (default: 3600)")
    p.add_argument("--deep", action="store_true",
                   help="also look inside every file's folder of a local storage, for the temporary "
                        "files earlier versions left there (reads the whole tree)")
    p.set_defaults(run=gc)


def gc(args: argparse.Namespace, ctx: Context) -> int:
    if args.older_than < 0:
        raise CLIError("--older-than must not be negative")
    for name in args.storages or ctx.storages.names:
        storage = ctx.storages.get(name)
        collect = getattr(storage, "collect_garbage", None)
        if collect is None:
            ctx.print("%s: nothing to collect (%s)" % (ctx.storages.name_of(name), type(storage).__name__))
            continue
        # Only the local storage has a tree to look into.
        options = {"deep": True} if args.deep and "deep" in inspect.signature(collect).parameters else {}
        try:
            removed = collect(older_than=args.older_than, **options)
        except Exception as exc:
            raise CLIError("storage %r: %s" % (name, describe(exc)), ExitCode.STORAGE) from exc
        ctx.print("%s: %d removed" % (ctx.storages.name_of(name), removed))
    return int(ExitCode.OK)
