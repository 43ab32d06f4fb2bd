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
- :mod:`.signing`: signed, expiring links;
- :mod:`.offload`: ``X-Sendfile`` / ``X-Accel-Redirect`` targets;
- :mod:`.plan`: the whole decision (status, headers, byte range) for one request.

:mod:`depot.middleware` turns a plan into a WSGI response.
"""
