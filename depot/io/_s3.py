"""What the S3 storages share (:mod:`depot.io.boto3` and both :mod:`depot.io.awss3` implementations).

The default bucket name and host are filedepot 0.12's, so deployments
configured for it find the same bucket.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Optional, Set, Tuple
from urllib.parse import urlsplit

__all__ = [
    "default_bucket_name",
    "range_header",
    "log_once",
    "S3_DEFAULT_HOST",
    "parse_s3_host",
]


def default_bucket_name(access_key_id: str) -> str:
    """The bucket filedepot picks when none is configured."""
    return "filedepot-" + access_key_id.lower()


def range_header(start: int, stop: Optional[int], length: Optional[int]) -> Optional[str]:
    """The HTTP ``Range`` value for bytes ``[start, stop)`` of ``length`` bytes; ``None`` if empty."""
    if (stop is not None and stop <= start) or (length is not None and start >= length):
        return None
    return "bytes=%d-%s" % (start, "" if stop is None else stop - 1)


_logged: Set[Tuple[str, ...]] = set()
_logged_lock = threading.Lock()


def log_once(logger: logging.Logger, key: Tuple[str, ...], message: str, *args: Any) -> None:
    """Log a warning the first time ``key`` is seen in this process, then stay quiet.

    For facts about a service (it cannot set some bucket option) that would
    otherwise repeat for every storage built against it.
    """
    with _logged_lock:
        if key in _logged:
            return
        _logged.add(key)
    logger.warning(message, *args)


#: The ``host`` of filedepot's legacy S3 storage when none is given.
S3_DEFAULT_HOST = "s3.amazonaws.com"


def parse_s3_host(host: Optional[str]) -> Tuple[str, Optional[int], bool]:
    """``(hostname, port, is_secure)`` from ``'host'``, ``'host:port'`` or ``'http(s)://host[:port]'``."""
    host = host or S3_DEFAULT_HOST
    parts = urlsplit(host if "://" in host else "https://" + host)
    return parts.hostname or host, parts.port, parts.scheme != "http"
