"""``depot fsck``: check the database's attachments against the storages.

A thin shell over :func:`depot.fsck.check`: it imports the models, finds an
engine, maps storage names to the settings file's storages (then to those
the models' modules configured in :class:`DepotManager`) and prints what
the check finds.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import sys
from types import ModuleType
from typing import Any, List, Optional

from depot.cli.context import Context, describe
from depot.cli.errors import CLIError, ExitCode
from depot.cli.formatting import human_duration
from depot.cli.progress import plural, progress_enabled
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager

__all__ = ["register"]

#: Module attributes that can provide the engine, in the order they are tried.
ENGINE_ATTRIBUTES = ("get_engine", "engine", "Session", "SessionLocal")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "fsck", help="find missing attachments and orphan files",
        description="Compare the attachments of SQLAlchemy models with the files of the storages they use: "
                    "report rows whose files are missing and files no row references (orphans); "
                    "--delete-orphans removes orphans older than the grace period.",
    )
    p.add_argument("--models", action="append", required=True, metavar="MODULE",
                   help="module defining the models (repeatable); every model of their declarative bases is read")
    p.add_argument("--ming", action="store_true",
                   help="the models are Ming mapped classes (their sessions give the database; no --db)")
    p.add_argument("--db", metavar="URL",
                   help="database URL (default: the module's get_engine(), engine, or Session/SessionLocal bind)")
    p.add_argument("--storage", action="append", default=[], metavar="NAME",
                   help="also look for orphans in this storage (repeatable)")
    p.add_argument("--delete-orphans", action="store_true",
                   help="delete orphans older than the grace period (never a referenced file)")
    p.add_argument("--grace", default="24h", metavar="DURATION",
                   help="orphans younger than this are kept: uploads in flight (default 24h; s, m, h, d, w; "
                        "at least 1h with --delete-orphans)")
    p.add_argument("--force", action="store_true",
                   help="let --delete-orphans use a --grace shorter than 1h (only where nothing else writes)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per problem, then a summary object (JSON lines)")
    p.add_argument("--tempdir", metavar="DIR", help="where the temporary index goes (default: the system's)")
    p.set_defaults(run=run)


class _Lookup:
    """Storage names: the settings file's first, then those registered in DepotManager."""

    def __init__(self, ctx: Context) -> None:
        self.storages = ctx.storages

    def resolve(self, name: Optional[str]) -> Optional[str]:
        configured = self.storages.settings.storages
        if name is None:
            if configured and (self.storages.settings.default or len(configured) == 1):
                return self.storages.name_of(None)
            try:
                return DepotManager.resolve_alias(DepotManager.get_default())
            except RuntimeError:
                raise CLIError("the models use the default storage, but none is configured: "
                               "set 'default' in the settings file") from None
        return self.storages.resolve(name) or DepotManager.resolve_alias(name)

    def get(self, name: str) -> Optional[FileStorage]:
        if name in self.storages.settings.storages:
            return self.storages.get(name)
        return DepotManager.get(name)


def _import(names: List[str]) -> List[ModuleType]:
    # The current directory first, as ``python -m`` has it: the ``depot``
    # script alone would not find ``myapp.models`` in the project's checkout.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            raise CLIError("cannot import the models: %s" % describe(exc)) from exc
    return modules


def _engine(url: Optional[str], modules: List[ModuleType]) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import Engine
    from sqlalchemy.exc import ArgumentError

    if url:
        try:
            return create_engine(url)
        except (ArgumentError, ImportError) as exc:
            raise CLIError("--db: %s" % describe(exc)) from exc
    for module in modules:
        for attr in ENGINE_ATTRIBUTES:
            value = getattr(module, attr, None)
            if value is None:
                continue
            if attr == "get_engine":
                value = value()
            bind = getattr(value, "kw", {}).get("bind") if attr.startswith("Session") else value
            if isinstance(bind, Engine):
                return bind
    names = " or ".join(m.__name__ for m in modules)
    raise CLIError("no database: pass --db URL, or give %s a module-level get_engine(), engine, "
                   "or a Session/SessionLocal sessionmaker bound to an engine" % names)


def _sqlalchemy_source(args: argparse.Namespace, modules: List[ModuleType]) -> Any:
    try:
        from depot.fsck import SQLAlchemySource
    except ImportError:
        raise CLIError("depot fsck needs SQLAlchemy: pip install 'depot[sqlalchemy]'") from None
    return SQLAlchemySource(_engine(args.db, modules), modules)


def _ming_source(args: argparse.Namespace, modules: List[ModuleType]) -> Any:
    if args.db:
        raise CLIError("--db does not apply to --ming: the mapped classes' sessions give the database")
    try:
        from ming.odm import mapper

        from depot.fsck import MingSource
    except ImportError:
        raise CLIError("depot fsck --ming needs Ming: pip install 'depot[ming]'") from None
    classes = []
    for module in modules:
        for value in list(vars(module).values()):
            try:
                if isinstance(value, type) and mapper(value) is not None and value not in classes:
                    classes.append(value)
            except Exception:  # not a mapped class
                continue
    return MingSource(classes)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from depot.fsck import MIN_GRACE, FsckError, Problem, check, parse_duration

    try:
        grace = parse_duration(args.grace)
    except ValueError as exc:
        raise CLIError("--grace: %s" % exc) from None
    if args.delete_orphans and grace < MIN_GRACE and not args.force:
        # Checked here too so that nothing is imported or scanned first.
        raise CLIError("--grace %s is too short for --delete-orphans (at least %s): an upload whose transaction "
                       "is still open, or whose writer's clock is behind, would be deleted; pass --force to "
                       "allow it" % (args.grace, "%gh" % (MIN_GRACE.total_seconds() / 3600)))
    modules = _import(args.models)
    source = _ming_source(args, modules) if args.ming else _sqlalchemy_source(args, modules)
    if not args.json:
        ctx.warn("checking %s" % (source.describe() or "no attachment column"))

    def show(problem: Problem) -> None:
        ctx.print(json.dumps(problem.to_json()) if args.json else _line(problem))

    # The phases of a long check, where the progress line would go.
    say = ctx.warn if progress_enabled(ctx.progress_choice, ctx.stderr) else None
    started = datetime.datetime.now()
    try:
        report = check([source], _Lookup(ctx), storages=args.storage, delete_orphans=args.delete_orphans,
                       grace=grace, allow_short_grace=args.force, on_problem=show, on_progress=say,
                       tempdir=args.tempdir)
    except FsckError as exc:
        raise CLIError(str(exc)) from exc
    except CLIError:
        raise
    except Exception as exc:
        raise CLIError("fsck stopped: %s" % describe(exc), ExitCode.STORAGE) from exc
    elapsed = (datetime.datetime.now() - started).total_seconds()
    if args.json:
        summary = dict(report.to_json(), kind="summary", seconds=round(elapsed, 3))
        ctx.print(json.dumps(summary))
    else:
        ctx.print(_summary(report, args.grace, elapsed))
    return ExitCode.OK if report.clean else ExitCode.FAILURES


def _where(locations: Any) -> str:
    shown = ["%s %s %s" % (table, "(%s)" % ", ".join(map(str, key)), column) for table, key, column in locations[:3]]
    more = len(locations) - len(shown)
    return "; ".join(shown) + (" and %d more" % more if more > 0 else "")


_ORPHAN_NOTES = {
    "reported": "orphan",
    "deleted": "orphan deleted",
    "kept_young": "orphan kept: younger than the grace period",
    "kept_referenced": "kept: referenced when checked again",
    "kept_unknown_age": "orphan kept: its age is unknown",
    "delete_failed": "orphan NOT deleted",
}


def _line(problem: Any) -> str:
    if problem.kind == "missing":
        return "missing  %s  referenced by %s: %s" % (problem.path, _where(problem.locations), problem.detail)
    if problem.kind == "unreadable":
        return "unreadable  %s: %s" % (_where(problem.locations), problem.detail)
    age = "" if problem.age_seconds is None else " (%s old)" % human_duration(problem.age_seconds)
    detail = ": %s" % problem.detail if problem.detail else ""
    return "%s  %s%s%s" % (_ORPHAN_NOTES.get(problem.action, "orphan"), problem.path, age, detail)


def _summary(report: Any, grace: str, elapsed: float) -> str:
    parts = [
        "%d missing" % report.missing,
        plural(report.orphans - report.young_orphans - report.rescued, "orphan"),
        "%d kept (younger than %s)" % (report.young_orphans, grace),
    ]
    if report.deleted or report.delete_failed:
        parts.append("%d deleted, %d failed to delete" % (report.deleted, report.delete_failed))
    if report.unreadable:
        parts.append(plural(report.unreadable, "unreadable value"))
    if report.pending_uploads:
        parts.append("%s not attached yet (see gc --pending-older-than)"
                     % plural(report.pending_uploads, "direct upload"))
    text = "fsck %s: %s, %s, %s: %s; %s in %s" % (
        ", ".join(report.storages), plural(report.values, "value"), plural(report.references, "reference"),
        plural(report.stored, "stored file"), ", ".join(parts),
        "clean" if report.clean else "%d to fix" % report.remaining, human_duration(elapsed))
    if report.deletion_refused:
        text += "\nnothing deleted: %s" % report.deletion_refused
    return text
