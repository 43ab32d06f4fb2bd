"""Handing the transfer of a local file to the front server.

Apache (mod_xsendfile) and lighttpd read ``X-Sendfile: <path>``; nginx reads
``X-Accel-Redirect: <internal URI>`` and maps it to a file through an
``internal`` location.  Either way the application answers headers only and
the front server sends the bytes, ranges included.
"""
from __future__ import annotations

import os
import re
from typing import Mapping, Optional, Tuple, Union
from urllib.parse import quote

__all__ = ["Offload", "parse_accel_mapping"]

# Paths outside this set are served by the application instead: header values
# must stay plain ASCII, and the front servers differ in how they unescape.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~+-]+\Z")

AccelMapping = Union[None, str, Mapping[str, str]]


def parse_accel_mapping(value: AccelMapping) -> Tuple[Tuple[str, str], ...]:
    """``((directory/, location/), ...)``, longest directory first.

    ``value`` is a mapping of file system directories to nginx internal
    locations, or the same as text for INI files:
    ``"/var/depot=/protected, /srv/other=/other-files"``.
    """
    if not value:
        return ()
    if isinstance(value, str):
        pairs = []
        for item in re.split(r"[,\s]+", value.strip()):
            directory, sep, location = item.partition("=")
            if not sep or not directory or not location:
                raise ValueError("x_accel_redirect entries are DIRECTORY=LOCATION, got %r" % (item,))
            pairs.append((directory, location))
    else:
        pairs = list(value.items())
    normalised = []
    for directory, location in pairs:
        if not location.startswith("/"):
            raise ValueError("x_accel_redirect location must be an absolute URI path: %r" % (location,))
        directory = os.path.join(os.path.abspath(directory), "")
        normalised.append((directory, location.rstrip("/") + "/"))
    return tuple(sorted(normalised, key=lambda pair: len(pair[0]), reverse=True))


class Offload:
    """Chooses the offload header for a local file, if offloading is configured."""

    def __init__(self, x_sendfile: bool = False, x_accel_redirect: AccelMapping = None) -> None:
        self.x_sendfile = x_sendfile
        self.accel = parse_accel_mapping(x_accel_redirect)

    def __bool__(self) -> bool:
        return self.x_sendfile or bool(self.accel)

    def header_for(self, path: str) -> Optional[Tuple[str, str]]:
        """``(header, value)`` that makes the front server send the file at ``path``.

        ``None`` when the file cannot be offloaded (no mapping covers it, or
        its path has characters that are not safe in a header), in which
        case the application sends it itself.
        """
        path = os.path.abspath(path)
        for directory, location in self.accel:
            if path.startswith(directory):
                return "X-Accel-Redirect", location + quote(path[len(directory):], safe="/")
        if self.x_sendfile and _PLAIN_PATH.match(path):
            return "X-Sendfile", path
        return None
