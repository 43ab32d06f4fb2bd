"""``cp`` and ``migrate``: copying files between storages under the same ids.

Keeping the id is what keeps references valid: an ``UploadedFileField``
stores ``'<storage>/<id>'``, so once every file of storage ``old`` exists
under the same id in ``new``, pointing the name ``old`` at the new backend
(or aliasing it) moves the application without touching a database row.
"""
from __future__ import annotations

import argparse
import functools
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Sequence, Set

from depot.cli.context import Context, describe, missing_reason, split_target
from depot.cli.copying import CopyError, CopyOutcome, copy_file
from depot.cli.errors import CLIError, ExitCode
from depot.cli.formatting import human_duration, human_rate, human_size
from depot.cli.progress import Progress, plural
from depot.io.interfaces import FileStorage, StoredFile

__all__ = ["register", "Tally", "Job"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "cp", help="copy files to another storage, keeping their ids",
        description="Copy files to the storage DEST under the same ids (an existing copy is overwritten).",
    )
    p.add_argument("-s", "--storage", metavar="NAME", help="storage of bare IDs (default: the default storage)")
    p.add_argument("targets", nargs="+", metavar="ID", help="an ID of the -s storage, or STORAGE/ID")
    p.add_argument("dest", metavar="DEST", help="the storage to copy to")
    p.add_argument("--verify", action="store_true",
                   help="check each copy's content: its stored checksum when both storages keep one of "
                        "the same algorithm, else read it back")
    _jobs_option(p)
    p.set_defaults(run=cp)

    p = sub.add_parser(
        "migrate", help="copy every file of a storage to another, keeping ids (resumable)",
        description=(
            "Copy every file of SOURCE to TARGET under the same id. Files already in TARGET with the "
            "same length are skipped, so an interrupted migration is resumed by running it again. "
            "Failures are reported with their ids and make the exit status 1; nothing is deleted."
        ),
    )
    p.add_argument("source", metavar="SOURCE", help="storage to copy from")
    p.add_argument("target", metavar="TARGET", help="storage to copy to")
    p.add_argument("--verify", action="store_true",
                   help="compare content, not only length: each copy's stored checksum (or, without "
                        "one of the source's algorithm, the copy read back) is checked with filename and "
                        "content type, and files already in TARGET with a different content are copied again")
    p.add_argument("--dry-run", action="store_true", help="only report what would be copied")
    _jobs_option(p)
    p.set_defaults(run=migrate)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _jobs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-j", "--jobs", type=_positive, default=1, metavar="N",
                        help="copy N files at a time (default 1); worth it for network storages")


@dataclass
class Tally:
    """What a transfer did, for its summary line."""

    total: int = 0
    copied: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    verified: bool = False
    #: Direct uploads not attached yet, left out (see :func:`_run_transfer`).
    pending: int = 0

    def summary(self, label: str, elapsed: float) -> str:
        parts = ["%d copied (%s)" % (self.copied, human_size(self.bytes))]
        if self.skipped:
            parts.append("%d already there" % self.skipped)
        if self.pending:
            parts.append("%s not attached yet left out" % plural(self.pending, "direct upload"))
        parts.append("%d failed" % self.failed)
        text = "%s: %s: %s" % (label, plural(self.total, "file"), ", ".join(parts))
        if self.verified:
            text += "; content verified"
        return text + "; %s in %s" % (human_rate(self.bytes, elapsed), human_duration(elapsed))


class _Result(NamedTuple):
    """How one file went: an outcome and the bytes moved, or the storage and reason of a failure."""

    file_id: str
    outcome: Optional[CopyOutcome] = None
    moved: int = 0
    failed_in: str = ""
    reason: str = ""
    #: The failure is a source file that does not exist (or cannot): no retry will help.
    missing: bool = False


def _transfer_one(
    progress: Progress,
    source: "tuple[str, FileStorage]",
    target: "tuple[str, FileStorage]",
    file_id: str,
    *,
    skip_existing: bool,
    verify: bool,
) -> _Result:
    """Copy one file; never raises for a file's own problem (it is the result)."""
    (source_name, source_storage), (target_name, target_storage) = source, target
    moved = 0
    expected: Optional[int] = None

    def open_source() -> StoredFile:
        nonlocal expected
        f = source_storage.get(file_id)
        if expected is None:  # opened again by --verify: counted once
            expected = f.content_length or 0
            progress.start_file(f.content_length)
        return f

    def on_bytes(n: int) -> None:
        nonlocal moved
        moved += n
        progress.advance(n)

    try:
        outcome = copy_file(open_source, target_storage, file_id,
                            skip_existing=skip_existing, verify=verify, on_bytes=on_bytes)
    except CopyError as exc:
        return _Result(file_id, failed_in=target_name, reason=str(exc))
    except Exception as exc:
        missing = missing_reason(source_storage, file_id, exc) if expected is None else None
        if missing is not None:
            return _Result(file_id, failed_in=source_name, reason=missing, missing=True)
        # From the source (unreadable) or the target (id refused, unreachable).
        return _Result(file_id, failed_in=source_name, reason="not copied to %s: %s" % (target_name, describe(exc)))
    finally:
        progress.file_done(unmoved=max(0, (expected or 0) - moved))
    return _Result(file_id, outcome, moved)


def _record(ctx: Context, tally: Tally, result: _Result) -> None:
    if result.outcome is None:
        tally.failed += 1
        ctx.fail(result.failed_in, result.file_id, result.reason, missing=result.missing)
    elif result.outcome is CopyOutcome.SKIPPED:
        tally.skipped += 1
    else:
        tally.copied += 1
        tally.bytes += result.moved


class Job(NamedTuple):
    """One file to copy; ``maybe_there`` asks to check the target first (and skip a good copy)."""

    source: str
    file_id: str
    target: str
    maybe_there: bool


def _unattached(ctx: Context, jobs: Sequence[Job], listed: bool = False) -> Set[Job]:
    """The jobs of ``jobs`` that are direct uploads not attached yet, to be held back.

    Copied without their markers they would be orphans in the target that
    ``depot gc --pending-older-than`` never collects; no row can reference
    them yet.  ``listed``: every pending upload of each source is asked
    about (migrate, many ids), else only the ids of ``jobs`` (cp).
    """
    from depot.uploads._api import unattached_in

    held: Set[Job] = set()
    for source in sorted({job.source for job in jobs}):
        of_source = [job for job in jobs if job.source == source]
        left_out = unattached_in(ctx.storage(source)[1], None if listed else [job.file_id for job in of_source])
        held.update(job for job in of_source if job.file_id in left_out)
    return held


def _warn_left_out(ctx: Context, held: Set[Job]) -> None:
    for job in sorted(held):
        ctx.warn("storage %s, file %s: a direct upload not attached yet, not copied" % (job.source, job.file_id))


def _run_transfer(ctx: Context, label: str, jobs: List[Job], *, verify: bool, workers: int = 1,
                  held: Sequence[Job] = ()) -> int:
    """Copy the files of ``jobs`` and print a summary.

    With ``workers`` > 1 files are copied by that many threads; results are
    recorded by the calling thread only, so the tally needs no lock.
    ``held``: direct uploads not attached yet when the transfer began
    (:func:`_unattached`), asked about again once the others are copied:
    those attached meanwhile are copied then (their rows may be committed),
    the others left out and named.
    """
    tally = Tally(total=len(jobs) + len(held), verified=verify)
    with ctx.progress(label, len(jobs)) as progress:
        interrupted = _copy_batch(ctx, tally, progress, jobs, verify, workers)
    elapsed = progress.elapsed
    if held and not interrupted:
        still = _unattached(ctx, held)
        tally.pending = len(still)
        _warn_left_out(ctx, still)
        late = [job for job in held if job not in still]
        if late:
            with ctx.progress(label, len(late)) as progress:
                interrupted = _copy_batch(ctx, tally, progress, late, verify, workers)
            elapsed += progress.elapsed
    ctx.print(tally.summary(label, elapsed))
    if interrupted:
        done = tally.copied + tally.skipped + tally.failed + tally.pending
        ctx.warn("interrupted after %d of %d files; run the same command again to resume" % (done, tally.total))
        return ExitCode.INTERRUPTED
    retryable = len(ctx.errors) - ctx.not_found
    if retryable:
        ctx.warn("%s failed, listed above; run the command again to retry %s"
                 % (plural(retryable, "file"), "it" if retryable == 1 else "them"))
    return ctx.exit_code()


def _copy_batch(ctx: Context, tally: Tally, progress: Progress, jobs: Sequence[Job], verify: bool,
                workers: int) -> bool:
    """Copy ``jobs``, recording each result in ``tally``; whether interrupted."""
    tasks = [
        functools.partial(_transfer_one, progress, ctx.storage(job.source), ctx.storage(job.target),
                          job.file_id, skip_existing=job.maybe_there, verify=verify)
        for job in jobs
    ]
    try:
        if workers <= 1:
            for task in tasks:
                _record(ctx, tally, task())
            return False
        return _run_in_threads(ctx, tally, tasks, workers)
    except KeyboardInterrupt:
        return True


def _run_in_threads(ctx: Context, tally: Tally, tasks: Sequence[Callable[[], _Result]], workers: int) -> bool:
    """Run ``tasks`` on ``workers`` threads; True if interrupted (the copies under way finish first)."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="depot-copy")
    futures = [pool.submit(task) for task in tasks]
    recorded: Set[int] = set()
    try:
        for future in as_completed(futures):
            _record(ctx, tally, future.result())
            recorded.add(id(future))
        return False
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)
        for future in futures:
            # Finished copies are counted; the one interrupted raised instead of finishing.
            if id(future) not in recorded and not future.cancelled() and future.exception() is None:
                _record(ctx, tally, future.result())
        return True
    finally:
        pool.shutdown(wait=True)


def cp(args: argparse.Namespace, ctx: Context) -> int:
    dest = ctx.storages.name_of(args.dest)
    ctx.storage(dest)  # fail early on an unknown or unreachable destination
    jobs = []
    for target in args.targets:
        storage_name, file_id = split_target(target, args.storage)
        source = ctx.storages.name_of(storage_name)
        if source == dest:
            raise CLIError("%s is already in storage %r" % (target, dest))
        jobs.append(Job(source, file_id, dest, maybe_there=False))
    held = _unattached(ctx, jobs)
    return _run_transfer(ctx, "cp -> %s" % dest, [job for job in jobs if job not in held], verify=args.verify,
                         workers=args.jobs, held=[job for job in jobs if job in held])


#: Ids that differ only in their (lowercase, as storages give out) hex digits
#: are equally valid or invalid.
_HEX_TO_ZERO = str.maketrans(dict.fromkeys("123456789abcdef", "0"))
#: Beyond this many shapes of ids, the rest are left to fail one by one.
_SHAPES_CHECKED = 16


def _check_ids_fit(target_name: str, target: FileStorage, ids: List[str], source_name: str) -> None:
    # One id of each shape stands for the others: a GridFS source may hold
    # ObjectIds and UUIDs side by side, and checking every id would cost a
    # request each on a network storage.
    shapes: Set[str] = set()
    for file_id in ids:
        shape = file_id.translate(_HEX_TO_ZERO)
        if shape in shapes:
            continue
        if len(shapes) == _SHAPES_CHECKED:
            return
        shapes.add(shape)
        try:
            target.exists(file_id)
        except ValueError as exc:
            raise CLIError(
                "storage %r cannot hold the ids of %r (%s): ids are kept, so the target must accept the "
                "source's ids (local, memory, S3 and GCS take UUIDs; GridFS takes ObjectIds and UUIDs)"
                % (target_name, source_name, exc)
            ) from None


def migrate(args: argparse.Namespace, ctx: Context) -> int:
    source_name, source = ctx.storage(args.source)
    target_name, target = ctx.storage(args.target)
    if source_name == target_name:
        raise CLIError("source and target are the same storage %r" % source_name)
    try:
        ids = sorted(source.list())
    except Exception as exc:
        raise CLIError("cannot list storage %r: %s" % (source_name, describe(exc)), ExitCode.STORAGE) from exc
    if ids:
        _check_ids_fit(target_name, target, ids, source_name)
    try:
        # One listing instead of a request per file: on a network storage the
        # existence checks would otherwise cost as much as the copies.
        present = set(target.list())
    except Exception as exc:
        raise CLIError("cannot list storage %r: %s" % (target_name, describe(exc)), ExitCode.STORAGE) from exc
    listed = [Job(source_name, file_id, target_name, maybe_there=file_id in present) for file_id in ids]
    held = _unattached(ctx, listed, listed=True)
    jobs = [job for job in listed if job not in held]
    if args.dry_run:
        _warn_left_out(ctx, held)
        return _dry_run(ctx, source_name, target_name, jobs, len(held))
    label = "migrate %s -> %s" % (source_name, target_name)
    return _run_transfer(ctx, label, jobs, verify=args.verify, workers=args.jobs,
                         held=[job for job in listed if job in held])


def _dry_run(ctx: Context, source_name: str, target_name: str, jobs: List[Job], pending: int) -> int:
    missing = [job.file_id for job in jobs if not job.maybe_there]
    for file_id in missing:
        ctx.print("would copy %s/%s" % (source_name, file_id))
    left_out = ", %s not attached yet left out" % plural(pending, "direct upload") if pending else ""
    ctx.print("migrate %s -> %s (dry run): %s, %d to copy, %d already there%s (lengths not compared)"
              % (source_name, target_name, plural(len(jobs) + pending, "file"), len(missing),
                 len(jobs) - len(missing), left_out))
    return ctx.exit_code()
