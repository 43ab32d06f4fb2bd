"""Human-readable sizes, rates and durations for the command's output."""
from __future__ import annotations

__all__ = ["human_size", "human_rate", "human_duration"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``; whole bytes below 1 KiB."""
    if n < 1024:
        return "%d B" % n
    for unit in _UNITS[1:]:
        n /= 1024.0
        if n < 1024 or unit == _UNITS[-1]:
            return "%.1f %s" % (n, unit)
    raise AssertionError("unreachable")


def human_rate(nbytes: float, seconds: float) -> str:
    """Throughput as ``'12.3 MiB/s'``; ``'-'`` before any time has passed."""
    if seconds <= 0:
        return "-"
    return human_size(nbytes / seconds) + "/s"


def human_duration(seconds: float) -> str:
    """``75`` -> ``'1:15'``, ``3725`` -> ``'1:02:05'``."""
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return "%d:%02d:%02d" % (hours, minutes, secs)
    return "%d:%02d" % (minutes, secs)
