"""The HTTP rules of file serving, as small pure functions.

Each module decides one thing from request header values and the facts of a
stored file, without WSGI and without touching storage, so that every rule
can be tested on its own:

- :mod:`.paths`: which ``<storage>/<id>`` a request path names, if any;
- :mod:`.dates`: HTTP-date parsing;
- :mod:`.etags`: entity-tag generation and comparison;
- :mod:`.conditional`: ``If-Match``, ``If-None-Match``, ``If-Modified-Since``,
  ``If-Unmodified-Since`` and ``If-Range``;
- :mod:`.ranges`: the ``Range`` header;
- :mod:`.content`: safe ``Content-Type`` and ``Content-Disposition``;
- :mod:`.signing`: signed, expiring links (for downloads, and for uploads);
- :mod:`.uploads`: whether a direct upload (``PUT`` of a signed upload URL) may store its body;
- :mod:`.offload`: ``X-Sendfile`` / ``X-Accel-Redirect`` targets;
- :mod:`.plan`: the stages of the decision (preconditions, range, headers) for one request;
- :mod:`.core`: the transport-neutral core that applies them to a stored
  file and chooses the body source, or streams an upload's body into the
  storage (the one module here that touches storage).

:mod:`depot.middleware` (WSGI) and :mod:`depot.asgi` (ASGI) only send what
:mod:`.core` decided.
"""
