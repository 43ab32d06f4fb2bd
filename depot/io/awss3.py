"""Deprecated S3 storage with filedepot 0.12's ``depot.io.awss3`` constructor and behaviour.

Where the legacy ``boto`` package imports (Python up to 3.11) the storage
runs on it, exactly as deployments configured for filedepot expect
(:mod:`depot.io._awss3_boto`).  Where it does not (Python 3.12+), the same
names and constructor run on boto3 (:mod:`depot.io._awss3_boto3`), so code
importing this module keeps working.  Either way, building a storage emits
the filedepot :class:`DeprecationWarning`; new code should use
:class:`depot.io.boto3.S3Storage`.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any

from depot.io import utils  # noqa: F401 - a name filedepot 0.12 had here
from depot.io._objects import CANNED_ACL_PRIVATE, CANNED_ACL_PUBLIC_READ
from depot.io.interfaces import FileStorage, StoredFile  # noqa: F401 - a name filedepot 0.12 had here
from depot.io.utils import check_uuid
from depot.utils import make_content_disposition  # noqa: F401 - a name filedepot 0.12 had here

__all__ = ["CANNED_ACL_PUBLIC_READ", "CANNED_ACL_PRIVATE", "S3StoredFile", "BucketDriver", "S3Storage", "BACKEND"]

DEPRECATION_MESSAGE = "awss3.S3Storage is deprecated in favor of boto3.S3Storage"

_check_file_id = check_uuid  # filedepot 0.12's name; the storage checks through FileStorage._checked_id


def _legacy_boto_imports() -> bool:
    try:
        import boto  # noqa: F401
        import boto.s3.connection  # noqa: F401
    except Exception:  # ImportError on Python 3.12+ (no 'imp'), or any breakage of the old package
        return False
    return True


if _legacy_boto_imports():
    from depot.io import _awss3_boto as _impl
else:
    from depot.io import _awss3_boto3 as _impl  # type: ignore[no-redef]

#: Which library runs this module's storage: ``'boto'`` or ``'boto3'``.
BACKEND = "boto" if _impl.__name__.endswith("_boto") else "boto3"

S3StoredFile = _impl.S3StoredFile
BucketDriver = _impl.BucketDriver
_enable_sigv4 = _impl._enable_sigv4


class S3Storage(_impl.S3Storage):
    __doc__ = _impl.S3Storage.__doc__

    @functools.wraps(_impl.S3Storage.__init__)  # type: ignore[misc]  # keeps the real signature for help()
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn(DEPRECATION_MESSAGE, DeprecationWarning, stacklevel=2)
        super().__init__(*args, **kwargs)
