"""``gc``: remove what interrupted writers left in storages, and direct uploads never attached."""
from __future__ import annotations

import argparse
import inspect
import json
from typing import Any, Dict, Optional

from depot.cli.context import Context, describe
from depot.cli.errors import CLIError, ExitCode
from depot.cli.formatting import human_duration
from depot.cli.progress import plural

__all__ = ["register"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "gc", help="remove leftovers of interrupted writes and direct uploads never attached",
        description=(
            "Remove what writers killed mid-write left in STORAGE (every configured storage "
            "without one): temporary folders of the local storage, orphan chunks of GridFS. "
            "Stored files are never touched, nor leftovers younger than --older-than or still "
            "held by a running writer. With --pending-older-than, also remove the direct uploads "
            "(depot.uploads) whose intent is older than DURATION and that no field attached."
        ),
    )
    p.add_argument("storages", nargs="*", metavar="STORAGE", help="storage to clean (default: all)")
    p.add_argument("--older-than", type=float, default=3600.0, metavar="SECONDS",
                   help="only remove leftovers untouched for this long (default: 3600)")
    p.add_argument("--deep", action="store_true",
                   help="also look inside every file's folder of a local storage, for the temporary "
                        "files earlier versions left there (reads the whole tree)")
    p.add_argument("--pending-older-than", metavar="DURATION",
                   help="also remove direct uploads never attached whose intent was created longer ago "
                        "than DURATION (90s, 30m, 2h, 1d, 1w); pick it well beyond the intents' lifetime")
    p.add_argument("--json", action="store_true", help="one JSON object per storage")
    p.set_defaults(run=gc)


def gc(args: argparse.Namespace, ctx: Context) -> int:
    if args.older_than < 0:
        raise CLIError("--older-than must not be negative")
    pending_age = None
    if args.pending_older_than is not None:
        from depot.fsck import parse_duration

        try:
            pending_age = parse_duration(args.pending_older_than).total_seconds()
        except ValueError as exc:
            raise CLIError("--pending-older-than: %s" % exc) from None
    for name in args.storages or ctx.storages.names:
        storage = ctx.storages.get(name)
        shown = ctx.storages.name_of(name)
        result: Dict[str, Any] = {"storage": shown, "backend": type(storage).__name__, "leftovers_removed": None}
        collect = getattr(storage, "collect_garbage", None)
        if collect is not None:
            # Only the local storage has a tree to look into.
            options = {"deep": True} if args.deep and "deep" in inspect.signature(collect).parameters else {}
            try:
                result["leftovers_removed"] = collect(older_than=args.older_than, **options)
            except Exception as exc:
                raise CLIError("storage %r: %s" % (name, describe(exc)), ExitCode.STORAGE) from exc
        if pending_age is not None:
            result["pending_removed"] = _collect_pending(ctx, name, storage, pending_age)
        if args.json:
            ctx.print(json.dumps(result))
        else:
            ctx.print(_summary(result))
    return int(ExitCode.OK)


def _collect_pending(ctx: Context, name: str, storage: Any, older_than: float) -> Optional[Dict[str, Any]]:
    """The ids of the uploads removed, ``None`` when the storage has no direct uploads."""
    from depot.uploads._api import collect_pending_in

    label = "gc pending uploads %s" % ctx.storages.name_of(name)
    with ctx.progress(label) as progress:
        def counted(total: int) -> None:
            progress.total_files = total

        def removed(file_id: str) -> None:
            progress.start_file(None)
            progress.file_done()

        try:
            ids = collect_pending_in(storage, name, older_than, on_candidates=counted, on_removed=removed)
        except NotImplementedError:
            return None
        except Exception as exc:
            raise CLIError("storage %r: %s" % (name, describe(exc)), ExitCode.STORAGE) from exc
        elapsed = progress.elapsed
    return {"ids": ids, "seconds": round(elapsed, 3)}


def _summary(result: Dict[str, Any]) -> str:
    parts = []
    leftovers = result["leftovers_removed"]
    parts.append("nothing to collect (%s)" % result["backend"] if leftovers is None else "%d removed" % leftovers)
    if "pending_removed" in result:
        pending = result["pending_removed"]
        if pending is None:
            parts.append("no direct uploads")
        else:
            parts.append("%s never attached removed in %s" % (
                plural(len(pending["ids"]), "pending upload"), human_duration(pending["seconds"])))
    return "%s: %s" % (result["storage"], ", ".join(parts))
