"""The boto3 implementation behind :mod:`depot.io.awss3` where legacy ``boto`` does not import.

``boto`` does not run on Python 3.12+; code configured for
``depot.io.awss3.S3Storage`` keeps working with the same options, stored
layout and metadata, on :class:`depot.io.boto3.S3Storage`.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from depot.io import boto3 as _boto3
from depot.io._s3 import S3_DEFAULT_HOST, parse_s3_host
from depot.io.boto3 import BucketDriver, S3StoredFile
from depot.utils import asbool

__all__ = ["S3StoredFile", "BucketDriver", "S3Storage", "_enable_sigv4", "endpoint_url_for"]


def _enable_sigv4() -> None:
    """Nothing to do: boto3 always signs with SigV4 (kept for code that calls it)."""


def endpoint_url_for(host: Optional[str]) -> Optional[str]:
    """The boto3 ``endpoint_url`` for a legacy ``host``; ``None`` for AWS's default."""
    if not host or host == S3_DEFAULT_HOST:
        return None
    hostname, port, secure = parse_s3_host(host)
    return "%s://%s%s" % ("https" if secure else "http", hostname, "" if port is None else ":%d" % port)


class S3Storage(_boto3.S3Storage):
    """The legacy constructor (``host``, ``encrypt_key``) on :class:`depot.io.boto3.S3Storage`.

    ``encrypt_key`` asks for SSE-S3 (AES256) server-side encryption; INI
    strings such as ``'false'`` are understood.  Other keyword options of
    the boto3 storage (``region_name``, ``multipart_threshold``...) are accepted.
    """

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        bucket: Optional[str] = None,
        host: Optional[str] = None,
        policy: Optional[str] = None,
        encrypt_key: Any = False,
        prefix: str = "",
        **options: Any,
    ) -> None:
        self._encrypt_key = asbool(encrypt_key)
        self._host = host or S3_DEFAULT_HOST
        super().__init__(access_key_id, secret_access_key, bucket=bucket, policy=policy,
                         endpoint_url=endpoint_url_for(host), prefix=prefix, **options)

    def _extra_args(self, filename: Optional[str], content_type: Optional[str]) -> Dict[str, Any]:
        args = super()._extra_args(filename, content_type)
        if self._encrypt_key:
            args["ServerSideEncryption"] = "AES256"
        return args
