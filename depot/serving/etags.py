"""Entity tags (RFC 9110 section 8.8.3): making them and comparing them."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import List, Optional, Tuple

__all__ = ["make_etag", "parse_etags", "etag_list_matches", "strong_match"]

_EPOCH = datetime(1970, 1, 1)
_ONE_SECOND = timedelta(seconds=1)
# A readable subset of etagc: nothing that needs escaping anywhere.
_PLAIN_TAG = re.compile(r"[A-Za-z0-9._:+=/-]{1,160}\Z")
# One entity-tag inside a list.  Elements that do not match are skipped, so a
# malformed list can only fail to match; never raise.
_TAG_IN_LIST = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')


def _opaque(text: str) -> str:
    if _PLAIN_TAG.match(text):
        return text
    # Anything else (quotes, spaces, non-ASCII from a backend's version string,
    # or an overlong id) is folded into a fixed-size digest so the tag stays valid.
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def make_etag(
    file_id: object,
    version: Optional[str],
    last_modified: Optional[datetime],
    content_length: Optional[int],
    checksum: Optional[str] = None,
) -> str:
    """The entity-tag of a stored file, quotes included.

    A file with a ``checksum`` (:attr:`StoredFile.checksum`, computed from
    its bytes when written) gets a tag made of it and the size: the same
    bytes keep the same tag through a replace with identical content, a
    migration to another storage, or on every replica, so caches stay valid.

    ``version`` is the backend's own change token (an inode/mtime_ns/size
    triple, a write counter, an S3 ETag, a GCS generation...), which changes
    on every write, even twice within a second with the same size.  Without
    one the tag falls back to the modification time (whole seconds) and the
    size, as filedepot did, but in a form valid by RFC 9110: filedepot's
    ``"2026-11-26 15:33:27-11"`` had a space, which the grammar forbids.  With
    neither a version nor a time, nothing reliably changes with the content,
    so the tag is weak (it can answer 304 but never validate a range).
    """
    if checksum is not None:
        return '"%s"' % _opaque("%s-%s-%s" % (file_id, checksum, content_length))
    if version is not None:
        return '"%s"' % _opaque("%s-%s" % (file_id, version))
    if last_modified is not None:
        seconds = (last_modified - _EPOCH) // _ONE_SECOND
        return '"%s"' % _opaque("%s-%d-%s" % (file_id, seconds, content_length))
    return 'W/"%s"' % _opaque("%s-%s" % (file_id, content_length))


def parse_etags(value: str) -> List[Tuple[bool, str]]:
    """The ``(weak, opaque-tag)`` pairs of an entity-tag list, in order.

    Malformed elements are ignored.  ``*`` is not handled here: see
    :func:`etag_list_matches`.
    """
    return [(bool(weak), opaque) for weak, opaque in _TAG_IN_LIST.findall(value)]


def _split(etag: str) -> Tuple[bool, str]:
    if etag.startswith("W/"):
        return True, etag[3:-1]
    return False, etag[1:-1]


def etag_list_matches(value: str, etag: str, weak: bool) -> bool:
    """Whether the header ``value`` (a list of tags, or ``*``) matches ``etag``.

    ``weak=True`` is the weak comparison of ``If-None-Match`` (the ``W/``
    prefixes are ignored); ``weak=False`` is the strong comparison of
    ``If-Match`` (both tags must be strong and identical).  ``*`` matches any
    current representation.
    """
    if value.strip() == "*":
        return True
    is_weak, opaque = _split(etag)
    if not weak and is_weak:
        return False
    for other_weak, other in parse_etags(value):
        if other == opaque and (weak or not other_weak):
            return True
    return False


def strong_match(value: str, etag: str) -> bool:
    """Whether ``value`` is exactly one strong entity-tag equal to the strong ``etag``."""
    return not etag.startswith("W/") and value.strip() == etag
