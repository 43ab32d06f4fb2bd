"""depot: file storage for web applications, attached to database models.

A drop-in, API-compatible re-implementation of filedepot 0.12.
"""

__version__ = "1.0.0a1"
