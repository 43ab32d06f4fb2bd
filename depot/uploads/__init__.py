"""Direct uploads: the browser sends a file straight to the storage, the application attaches it by id.

* :func:`create_upload_intent` gives out a signed, expiring permission to
  upload one file (:class:`UploadIntent`), after writing its
  :class:`PendingUpload` marker.
* The field value :meth:`UploadedFile.from_upload
  <depot.fields.upload.UploadedFile.from_upload>` attaches the uploaded file
  to a row: :func:`finish_upload` checks it against the intent first.
* :func:`collect_pending` (``depot gc --pending-older-than``) removes the
  uploads never attached.

See ``docs/uploads.rst``.
"""
from __future__ import annotations

from ._api import collect_pending, create_upload_intent, finish_upload, pending_uploads
from .intents import PendingUpload, UploadIntent, UploadRefused, UploadTarget
from .static import javascript_path

__all__ = [
    "UploadRefused",
    "PendingUpload",
    "UploadIntent",
    "UploadTarget",
    "create_upload_intent",
    "finish_upload",
    "collect_pending",
    "pending_uploads",
    "javascript_path",
]
