"""``verify``: re-read stored files and compare them with the checksum stored when they were written.

This is the deep check (bit rot, a file changed behind depot's back): every
byte is read again.  ``cp/migrate --verify`` only compare stored checksums.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional

from depot.cli.context import Context, describe, missing_reason
from depot.cli.formatting import human_duration, human_rate, human_size
from depot.cli.progress import Progress, plural
from depot.io import checksums
from depot.io.interfaces import FileStorage
from depot.io.utils import iter_file

__all__ = ["register", "VerifyTally"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "verify", help="re-read files and compare them with their stored checksums",
        description=(
            "Read every file of STORAGE (the default storage without one), or only the IDS given, "
            "and compare its bytes with the checksum stored when it was written. Mismatches and "
            "unreadable files are reported on stderr with their ids (exit status 1); files written "
            "without a checksum (by filedepot 0.12, or with checksum=None) are counted, not failed. "
            "Exit status 3 when the only problems are ids that do not exist."
        ),
    )
    p.add_argument("storage", nargs="?", metavar="STORAGE", help="storage to check (default: the default storage)")
    p.add_argument("ids", nargs="*", metavar="ID", help="files to check (default: every file of STORAGE)")
    p.set_defaults(run=verify)


@dataclass
class VerifyTally:
    """What a verification found, for its summary line."""

    total: int = 0
    ok: int = 0
    mismatched: int = 0
    unchecked: int = 0
    failed: int = 0
    bytes: int = 0

    def summary(self, label: str, elapsed: float) -> str:
        parts = ["%d ok" % self.ok, "%d mismatched" % self.mismatched]
        if self.unchecked:
            parts.append("%d without checksum" % self.unchecked)
        parts.append("%d failed" % self.failed)
        return "%s: %s: %s; %s read at %s in %s" % (
            label, plural(self.total, "file"), ", ".join(parts),
            human_size(self.bytes), human_rate(self.bytes, elapsed), human_duration(elapsed),
        )


def verify(args: argparse.Namespace, ctx: Context) -> int:
    name, storage = ctx.storage(args.storage)
    ids = list(args.ids) if args.ids else sorted(storage.list())
    label = "verify %s" % name
    tally = VerifyTally(total=len(ids))
    with ctx.progress(label, len(ids)) as progress:
        for file_id in ids:
            _verify_one(ctx, progress, tally, name, storage, file_id)
    ctx.print(tally.summary(label, progress.elapsed))
    if tally.mismatched:
        ctx.warn("%s do not match the checksum stored when written, listed above"
                 % plural(tally.mismatched, "file"))
    return int(ctx.exit_code())


def _verify_one(
    ctx: Context, progress: Progress, tally: VerifyTally, name: str, storage: FileStorage, file_id: str
) -> None:
    """Check one file, recording the outcome in ``tally`` (and failures in ``ctx``)."""
    f = ctx.open_file(name, storage, file_id)
    if f is None:
        tally.failed += 1
        return
    read = 0
    progress.start_file(f.content_length)
    try:
        with f:
            expected: Optional[str] = f.checksum
            parsed = checksums.parse(expected)
            if parsed is None:
                tally.unchecked += 1
                return
            hasher = checksums.Hasher(parsed[0])
            for chunk in iter_file(f):
                hasher.update(chunk)
                read += len(chunk)
                progress.advance(len(chunk))
    except Exception as exc:
        tally.failed += 1
        missing = missing_reason(storage, file_id, exc)
        ctx.fail(name, file_id, missing or describe(exc), missing=missing is not None)
        return
    finally:
        tally.bytes += read
        progress.file_done(unmoved=max(0, (f.content_length or 0) - read))
    actual = hasher.result()
    if actual != expected or (f.content_length is not None and read != f.content_length):
        tally.mismatched += 1
        ctx.fail(name, file_id, "checksum mismatch: stored %s, content %s (%d of %s bytes)"
                 % (expected, actual, read, f.content_length))
    else:
        tally.ok += 1

