"""Serve files with huge names through DepotMiddleware; print the memory it takes (one JSON line).

Runs in whichever interpreter imports ``depot`` (ours or filedepot 0.12),
through filedepot's public API only.
Usage: middleware_memory_worker.py COUNT NAME_LENGTH DIR
"""
import gc
import json
import sys
import tracemalloc


def main(count, name_length, path):
    from depot.manager import DepotManager
    from depot.middleware import DepotMiddleware

    storage = DepotManager.configure("default", {"depot.storage_path": path})
    # Latin-1 letters: one byte each in memory, six in the percent-encoded header.
    ids = [storage.create(b"x", "\u00e9" * name_length + "-%d.txt" % i, "text/plain") for i in range(count)]
    app = DepotMiddleware(lambda environ, start_response: [])
    largest_header = [0]

    def start_response(status, headers, exc_info=None):
        assert status.startswith("200"), status
        largest_header[0] = max(largest_header[0], sum(len(k) + len(v) + 4 for k, v in headers))

    gc.collect()
    tracemalloc.start()
    for file_id in ids:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/depot/default/%s" % file_id, "QUERY_STRING": "",
                   "SERVER_NAME": "localhost", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
        body = app(environ, start_response)
        b"".join(body)
        if hasattr(body, "close"):
            body.close()
        del body
    gc.collect()
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({"retained": retained, "peak": peak, "header": largest_header[0]}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
