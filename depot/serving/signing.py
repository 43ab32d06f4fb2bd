"""Signed, expiring links: an HMAC over the file path and an expiry time."""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Optional, Union

__all__ = ["LinkSigner"]

_EXPIRES = "expires"
_SIGNATURE = "signature"
# Far beyond any real expiry; longer digit strings are refused unparsed.
_MAX_EXPIRES_DIGITS = 12


class LinkSigner:
    """Makes and checks links that stop working at a given time.

    A link carries ``?expires=<unix time>&signature=<token>`` where the token
    is an HMAC-SHA256 of the file path (``<storage>/<id>``, UTF-8) and the
    expiry, keyed with ``secret``.  Changing the path, the expiry or the
    token, or waiting past the expiry, invalidates it.
    """

    def __init__(self, secret: Union[str, bytes], lifetime: int) -> None:
        if not secret:
            raise ValueError("A link signing secret must not be empty")
        if lifetime <= 0:
            raise ValueError("link_lifetime must be a positive number of seconds")
        self._key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        self.lifetime = lifetime

    def _token(self, path: bytes, expires: int) -> str:
        digest = hmac.new(self._key, b"%s\n%d" % (path, expires), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def sign(self, path: str, now: Optional[float] = None) -> str:
        """The query string (without ``?``) that makes ``path`` valid for :attr:`lifetime` seconds."""
        expires = int(time.time() if now is None else now) + self.lifetime
        return "%s=%d&%s=%s" % (_EXPIRES, expires, _SIGNATURE, self._token(path.encode("utf-8"), expires))

    def remaining(self, path: bytes, query_string: str, now: Optional[float] = None) -> Optional[int]:
        """Seconds the link for ``path`` (raw request bytes) with ``query_string`` stays valid.

        ``None`` when the signature is missing, repeated, malformed, wrong
        (checked in constant time) or expired.
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
        if expires_text is None or signature is None:
            return None
        if not expires_text.isdigit() or not expires_text.isascii() or len(expires_text) > _MAX_EXPIRES_DIGITS:
            return None
        expires = int(expires_text)
        expected = self._token(path, expires)
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
            return None
        left = expires - int(time.time() if now is None else now)
        return left if left > 0 else None
