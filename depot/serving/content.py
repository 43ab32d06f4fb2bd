"""Which ``Content-Type`` and ``Content-Disposition`` a stored file is served with."""
from __future__ import annotations

import re
from typing import Iterable, Optional, Tuple

from depot.io.utils import DEFAULT_CONTENT_TYPE  # one definition: what storages store when no type is given
from depot.utils import make_content_disposition

__all__ = ["DEFAULT_CONTENT_TYPE", "safe_content_type", "header_filename", "InlinePolicy", "SANDBOX_CSP"]

#: Sent with every document a browser could run, in case it renders it anyway.
SANDBOX_CSP = "sandbox"

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# type/subtype plus parameters made of printable ASCII: a stored content type
# comes from the uploader, and must never inject a header or break the server.
# No tab either: PEP 3333 wants header values free of control characters.
_MEDIA_TYPE = re.compile(r"(%s/%s) *(;[\x20-\x7e]*)?\Z" % (_TOKEN, _TOKEN))
# Longer stored types are not media types (RFC 6838 caps type and subtype at
# 127 characters each); the cap also bounds what the header cache keeps.
MAX_CONTENT_TYPE = 512
#: The longest name (UTF-8 bytes) a ``Content-Disposition`` carries; the full
#: name stays in the storage.  Front servers refuse responses whose headers
#: exceed a few KiB, and a name is percent-encoded to up to three times its size.
MAX_HEADER_FILENAME = 200
# An extension longer than this is not one: it is cut like the rest of the name.
_MAX_EXTENSION = 16

# Media types a browser executes or renders as an active document when it
# navigates to them.  Matched on the lower-cased type/subtype.
_ACTIVE_EXACT = frozenset(
    (
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "application/xslt+xml",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "text/ecmascript",
        "text/jscript",
        "text/livescript",
        "application/x-shockwave-flash",
        "application/vnd.adobe.flash.movie",
        "multipart/x-mixed-replace",
        "text/cache-manifest",
        "application/wasm",
        "text/vtt",
        "text/x-component",
    )
)


def safe_content_type(content_type: Optional[str]) -> Tuple[str, str]:
    """``(header value, lower-cased type/subtype)`` for a stored content type.

    A missing or malformed type (filedepot sent ``Content-Type: None``) is
    served as ``application/octet-stream``.
    """
    if content_type and isinstance(content_type, str) and len(content_type) <= MAX_CONTENT_TYPE:
        # Surrounding blanks are not part of a field value (RFC 9110 5.5).
        content_type = content_type.strip(" \t")
        match = _MEDIA_TYPE.match(content_type)
        if match is not None:
            return content_type, match.group(1).lower()
    return DEFAULT_CONTENT_TYPE, DEFAULT_CONTENT_TYPE


def header_filename(filename: str, limit: int = MAX_HEADER_FILENAME) -> str:
    """``filename`` as a ``Content-Disposition`` carries it: at most ``limit`` UTF-8 bytes.

    A longer name is cut at a character boundary, keeping its extension
    (``.pdf``) so that the browser still saves a usable file.  Characters
    UTF-8 cannot encode (lone surrogates) become ``?``.
    """
    data = filename.encode("utf-8", "replace")
    if len(data) <= limit:
        return data.decode("utf-8")
    stem, dot, extension = filename.rpartition(".")
    suffix = (dot + extension).encode("utf-8", "replace")
    if not dot or not stem or len(suffix) > _MAX_EXTENSION + 1:
        stem, suffix = filename, b""
    head = stem.encode("utf-8", "replace")[: limit - len(suffix)]
    return head.decode("utf-8", "ignore") + suffix.decode("utf-8")


def _is_active(media_type: str) -> bool:
    # Any XML dialect (+xml) can carry scripts when rendered as a document.
    return (
        media_type in _ACTIVE_EXACT
        or media_type.endswith("+xml")
        or "javascript" in media_type
        or "ecmascript" in media_type
    )


class InlinePolicy:
    """Decides between ``inline`` and ``attachment``.

    Files are served ``inline`` (filedepot's behaviour) unless their type is
    one a browser would run as a document on the site's origin (HTML, SVG,
    XML, JavaScript...): those become downloads with a sandboxing
    ``Content-Security-Policy``.  ``inline_types`` lists types (``type/sub``
    or ``type/*``) that stay inline even so, for sites that trust their
    uploads.
    """

    def __init__(self, inline_types: Iterable[str] = ()) -> None:
        exact, wildcard = set(), set()
        for item in inline_types:
            item = item.strip().lower()
            if item.endswith("/*"):
                wildcard.add(item[:-1])
            elif item:
                exact.add(item)
        self._exact = frozenset(exact)
        self._wildcard = tuple(wildcard)

    def allows_inline(self, media_type: str) -> bool:
        """Whether a file of the lower-cased ``media_type`` may be shown inline."""
        if not _is_active(media_type):
            return True
        return media_type in self._exact or media_type.startswith(self._wildcard)

    def disposition(self, media_type: str, filename: Optional[str]) -> Tuple[str, bool]:
        """``(Content-Disposition value, sandbox)`` for a file.

        Ordinary names keep filedepot's exact form
        (``inline;filename="<ascii>";filename*=utf-8''<utf-8 percent-encoded>``);
        a file without a name gets the bare disposition type.  ``sandbox`` says
        whether :data:`SANDBOX_CSP` must be sent.
        """
        inline = self.allows_inline(media_type)
        kind = "inline" if inline else "attachment"
        value = kind if filename is None else make_content_disposition(kind, filename)
        return value, not inline
