"""Run throwaway server processes for tests.

Each server gets its own temporary folder (data and log file), free loopback
ports and a process group of its own, and is stopped by its process: SIGTERM,
then SIGKILL after a grace period.  Whatever is still running when the
interpreter exits is stopped by an :mod:`atexit` hook; SIGTERM is turned into
KeyboardInterrupt so that both run; and on Linux the children also receive
SIGTERM if the test process dies without running them (e.g. SIGKILL).
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Callable, TypeVar

__all__ = [
    "LOOPBACK",
    "ServerExited",
    "ServerProcess",
    "ServerStartError",
    "free_ports",
    "http_status",
    "port_accepts",
    "start_server",
]

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
FOLDER_PREFIX = "depot-server-"
MARKER = "depot-server.json"

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


class ServerStartError(RuntimeError):
    """An installed server could not be brought up."""


class ServerExited(ServerStartError):
    """The server process ended before it answered.

    Usually another process took one of its ports between the moment the port
    was chosen and the moment the server bound it, so starting again with new
    ports is worth a try.
    """


def free_ports(count: int) -> list[int]:
    """Return *count* distinct TCP ports that are free on the loopback interface.

    All probe sockets stay bound until every port is chosen, so the kernel
    cannot hand out the same port twice.  A port can still be taken by someone
    else before the server binds it: :func:`start_server` retries for that.
    """
    probes: list[socket.socket] = []
    try:
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probes.append(probe)
            probe.bind((LOOPBACK, 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Tell whether a TCP connection to *host*:*port* succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """Return the HTTP status *url* answers with, or ``None`` if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, ValueError):
        return None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the test process is killed
    # without a chance to run its atexit hook, the kernel terminates the server.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ServerProcess:
    """One server process, its temporary folder and its log file.

    :param name: short label used in the folder name and in error messages.
    :param grace: seconds to wait after SIGTERM before SIGKILL.
    """

    def __init__(self, name: str, grace: float = 5.0) -> None:
        self.name = name
        self.grace = grace
        _sweep_abandoned_folders()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{name}-"))
        self.log_path = self.workdir / "server.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self._outside_sockets: list[Path] = []
        _LIVE.append(self)
        _interrupt_on_sigterm()
        self._write_marker()

    def _write_marker(self) -> None:
        # Lets a later run recognise the folder, and its leftovers, once both
        # this test process and the server are gone (see _sweep_abandoned_folders).
        marker = {
            "owner": os.getpid(),
            "server": self.popen.pid if self.popen is not None else None,
            "sockets": [str(path) for path in self._outside_sockets],
        }
        (self.workdir / MARKER).write_text(json.dumps(marker))

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start *argv* in the temporary folder, output going to the log file."""
        full_env = dict(os.environ if env is None else env)
        # Whatever the server writes to "the temp dir" stays in its own folder.
        full_env["TMPDIR"] = str(self.workdir)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if _LIBC is not None else None,
            )
        self._write_marker()

    def leaves_sockets(self, paths: list[Path]) -> None:
        """Declare Unix sockets the server creates outside its folder.

        They are removed after the server ends, if nobody listens on them.
        """
        self._outside_sockets.extend(paths)
        self._write_marker()

    @property
    def alive(self) -> bool:
        """Whether the process has been started and has not ended."""
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last *lines* lines of the server's log."""
        try:
            with open(self.log_path, errors="replace") as log:
                return "".join(deque(log, maxlen=lines))
        except OSError:
            return ""

    def failure(self, what: str, error_class: type[ServerStartError] = ServerStartError) -> ServerStartError:
        """Build an error about this server that quotes the end of its log."""
        return error_class(f"{self.name} {what}; last lines of {self.log_path}:\n{self.log_tail()}")

    def wait_until(self, ready: Callable[[], bool], timeout: float = 20.0) -> None:
        """Poll *ready* until it returns true.

        :raises ServerExited: when the process ends first.
        :raises ServerStartError: when *timeout* seconds pass first.
        """
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            if not self.alive:
                code = self.popen.returncode if self.popen is not None else None
                raise self.failure(f"exited with code {code} while starting", ServerExited)
            if ready():
                return
            if time.monotonic() > deadline:
                raise self.failure(f"did not answer within {timeout:g} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove the temporary folder.

        Idempotent.  The whole process group is signalled, so helpers a server
        may have forked do not outlive it; this is only done while the leader
        is unreaped, when its group id cannot belong to anyone else.
        """
        if self.popen is not None and self.popen.returncode is None:
            self._signal(signal.SIGTERM)
            self._wait_unreaped(self.grace)
            self._signal(signal.SIGKILL)
            self.popen.wait()
        _remove_stale_sockets(self._outside_sockets)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self in _LIVE:
            _LIVE.remove(self)

    def _wait_unreaped(self, timeout: float) -> None:
        # WNOWAIT leaves an ended leader as a zombie, keeping its group id ours.
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return
            except ChildProcessError:
                return
            time.sleep(0.02)

    def _signal(self, signum: int) -> None:
        assert self.popen is not None
        try:
            os.killpg(self.popen.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def start_server(name: str, launch: Callable[[ServerProcess], T], *, grace: float = 5.0, attempts: int = 3) -> tuple[ServerProcess, T]:
    """Start a server with ``launch(process)``, retrying with a fresh folder when it exits early.

    *launch* chooses ports, calls :meth:`ServerProcess.spawn`, waits with
    :meth:`ServerProcess.wait_until` and returns what the tests need to know.
    On any failure (including KeyboardInterrupt) the attempt's process and
    folder are removed before the error propagates.

    :returns: the running process (stop it with :meth:`ServerProcess.stop`)
        and the value returned by *launch*.
    """
    for attempt in range(1, attempts + 1):
        process = ServerProcess(name, grace)
        try:
            return process, launch(process)
        except ServerExited:
            process.stop()
            if attempt == attempts:
                raise
        except BaseException:
            process.stop()
            raise
    raise AssertionError("unreachable")


def _remove_stale_sockets(paths: list[Path]) -> None:
    # Only remove a socket nobody listens on: once our server has ended, its
    # port, and so the socket name derived from it, may serve another run.
    for path in paths:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            probe.close()


def _pid_exists(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_swept = False


def _sweep_abandoned_folders() -> None:
    """Remove the folders (and sockets) of servers whose test run was killed.

    A SIGKILLed test process cannot clean up; its folders carry a marker
    naming the test process and the server, and are removed here, once per
    process, when neither exists any more.
    """
    global _swept
    if _swept:
        return
    _swept = True
    for marker_path in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*/{MARKER}"):
        try:
            marker = json.loads(marker_path.read_text())
        except (OSError, ValueError):
            continue
        if _pid_exists(marker.get("owner")) or _pid_exists(marker.get("server")):
            continue
        _remove_stale_sockets([Path(path) for path in marker.get("sockets", [])])
        shutil.rmtree(marker_path.parent, ignore_errors=True)


_LIVE: list[ServerProcess] = []


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _interrupt_on_sigterm() -> None:
    """Make SIGTERM act like Ctrl-C, so fixture teardown and atexit still run.

    By default SIGTERM ends Python at once, leaving the temporary folders
    behind (the servers themselves get the parent-death signal).  A handler
    someone else installed is left alone.
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_interrupt)


@atexit.register
def _stop_all() -> None:
    # Safety net for sessions that end without fixture teardown.
    for process in list(_LIVE):
        process.stop()
