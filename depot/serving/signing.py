"""Signed, expiring links: an HMAC over the file path and an expiry time."""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Optional, Union

__all__ = ["LinkSigner", "DOWNLOAD", "UPLOAD"]

_EXPIRES = "expires"
_SIGNATURE = "signature"
# Far beyond any real expiry; longer digit strings are refused unparsed.
_MAX_EXPIRES_DIGITS = 12

#: The purpose of a download link: the token is over the file path alone,
#: the format of every link handed out before purposes existed.
DOWNLOAD = ""
#: The purpose of a direct-upload URL (``PUT`` of the file's content).
UPLOAD = "upload"

# Tokens with a purpose are over ``NUL <purpose> LF <path>``.  No download
# message starts with NUL (:meth:`LinkSigner.sign` refuses such a path and
# :meth:`LinkSigner.remaining` never accepts one), so a download token can
# never stand for an upload or any other purpose, nor the reverse.
_TAG = b"\0"


def _message(path: bytes, purpose: str) -> bytes:
    if not purpose:
        return path
    return b"%s%s\n%s" % (_TAG, purpose.encode("ascii"), path)


class LinkSigner:
    """Makes and checks links that stop working at a given time.

    A link carries ``?expires=<unix time>&signature=<token>`` where the token
    is an HMAC-SHA256 of the file path (``<storage>/<id>``, UTF-8) and the
    expiry, keyed with ``secret``.  Changing the path, the expiry or the
    token, or waiting past the expiry, invalidates it.

    A ``purpose`` other than :data:`DOWNLOAD` (such as :data:`UPLOAD`) signs
    the path tagged with it: the token has the same form, and is valid only
    for that purpose.
    """

    def __init__(self, secret: Union[str, bytes], lifetime: int) -> None:
        if not secret:
            raise ValueError("A link signing secret must not be empty")
        if lifetime <= 0:
            raise ValueError("link_lifetime must be a positive number of seconds")
        self._key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        self.lifetime = lifetime

    def _token(self, message: bytes, expires: int) -> str:
        digest = hmac.new(self._key, b"%s\n%d" % (message, expires), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def sign(
        self, path: str, now: Optional[float] = None, *, expires: Optional[float] = None, purpose: str = DOWNLOAD
    ) -> str:
        """The query string (without ``?``) that makes ``path`` valid for :attr:`lifetime` seconds.

        Or until ``expires`` (a unix time) when given, and only for ``purpose``.
        """
        raw = path.encode("utf-8")
        if raw.startswith(_TAG):
            raise ValueError("Cannot sign a path starting with NUL: %r" % (path,))
        until = int(expires) if expires is not None else int(time.time() if now is None else now) + self.lifetime
        return "%s=%d&%s=%s" % (_EXPIRES, until, _SIGNATURE, self._token(_message(raw, purpose), until))

    def remaining(
        self, path: bytes, query_string: str, now: Optional[float] = None, *, purpose: str = DOWNLOAD
    ) -> Optional[int]:
        """Seconds the link for ``path`` (raw request bytes) with ``query_string`` stays valid for ``purpose``.

        ``None`` when the signature is missing, repeated, malformed, wrong
        (checked in constant time), made for another purpose, or expired.
        """
        expires_text = signature = None
        for part in query_string.split("&"):
            key, _, value = part.partition("=")
            if key == _EXPIRES:
                if expires_text is not None:
                    return None
                expires_text = value
            elif key == _SIGNATURE:
                if signature is not None:
                    return None
                signature = value
        if expires_text is None or signature is None or path.startswith(_TAG):
            return None
        if not expires_text.isdigit() or not expires_text.isascii() or len(expires_text) > _MAX_EXPIRES_DIGITS:
            return None
        expires = int(expires_text)
        expected = self._token(_message(path, purpose), expires)
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
            return None
        left = expires - int(time.time() if now is None else now)
        return left if left > 0 else None
