"""The ``depot`` command: files in configured storages from the shell.

``depot [options] COMMAND ...``; ``depot COMMAND --help`` for each command.
Storages come from a settings file (see :mod:`depot.cli.config`) and/or the
command line.  Exit statuses are listed in :class:`depot.cli.errors.ExitCode`.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Optional, Sequence

from depot import __version__
from depot.cli import files, integrity, maintenance, serve, transfer
from depot.cli import fsck as fsck_command
from depot.cli.config import Settings, Storages, apply_options, find_settings_file, load_settings
from depot.cli.context import Context
from depot.cli.errors import CLIError, ExitCode

__all__ = ["main", "build_parser", "ExitCode"]

_EPILOG = """\
storages:
  A settings file (--config, $DEPOT_CONFIG, or ./depot.toml / ./depot.ini) has one
  [depot.storages.NAME] section per storage holding the depot.* keys of
  DepotManager.configure; [depot] may set 'default', [depot.aliases] maps alias = storage.
  --local, --backend and --option define storages or override the file's keys:
    depot --local files=./files put photo.jpg
    depot --backend s3=s3 -o s3.bucket=media -o s3.endpoint_url=http://127.0.0.1:8333 ls -s s3

exit status:
  0 success; 1 some files failed (each reported on stderr); 2 usage or configuration
  error; 3 a named file or storage does not exist; 4 a storage could not be reached;
  130 interrupted.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depot",
        description="Store, read, copy and migrate files in depot storages, or serve them over HTTP.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    parser.add_argument("-c", "--config", metavar="FILE", help="settings file (INI, or TOML if it ends in .toml)")
    parser.add_argument("--local", action="append", default=[], metavar="NAME=PATH",
                        help="define a local-disk storage NAME at PATH")
    parser.add_argument("--backend", action="append", default=[], metavar="NAME=BACKEND",
                        help="define storage NAME with BACKEND (short name such as s3, gridfs, gcs, or a class path)")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="NAME.KEY=VALUE",
                        help="set option KEY of storage NAME (e.g. files.storage_path=/srv/files)")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="draw the progress line on stderr even when it is not a terminal")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="never draw the progress line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (files, transfer, integrity, serve, maintenance):
        module.register(sub)
    fsck_command.register(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    path = find_settings_file(args.config)
    settings = load_settings(path) if path else Settings()
    return apply_options(settings, args.backend, args.option, args.local)


def _interrupt_on_sigterm() -> Optional[object]:
    # SIGTERM ends a migration like Ctrl-C: stop after the current file,
    # print what was done and exit 130, instead of dying mid-sentence.
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = _interrupt_on_sigterm()
    ctx: Optional[Context] = None
    try:
        ctx = Context(Storages(_settings(args)), progress_choice=args.progress)
        return int(args.run(args, ctx))
    except CLIError as exc:
        sys.stderr.write("depot: error: %s\n" % exc)
        return int(exc.code)
    except KeyboardInterrupt:
        sys.stderr.write("depot: interrupted\n")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (depot get ... | head): not an error of ours.
        _silence_stdout()
        return int(ExitCode.OK)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run() -> None:
    """Entry point for ``python -m depot``."""
    sys.exit(main())


