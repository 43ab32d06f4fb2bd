"""Store a few files on local disk, read them back, replace one and clean up.

Run it with ``python examples/quickstart.py [STORAGE_DIR]``; it needs no
server and no optional dependency.
"""
from __future__ import annotations

import io
import sys
import tempfile

from depot.io.utils import FileIntent
from depot.manager import DepotManager


def main(storage_path: str) -> None:
    DepotManager.configure("files", {"depot.backend": "local", "depot.storage_path": storage_path})
    depot = DepotManager.get()
    print("storage 'files' at %s" % storage_path)

    stored = {
        "notes.txt": depot.create(b"depot keeps files for web applications\n", "notes.txt"),
        "data.csv": depot.create(io.BytesIO(b"id,name\n1,alpha\n2,beta\n"), "data.csv"),
        "logo.svg": depot.create(FileIntent(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "logo.svg", "image/svg+xml")),
    }
    for name, file_id in stored.items():
        f = depot.get(file_id)
        print("stored  %-9s id=%s type=%-13s size=%d modified=%s"
              % (name, file_id, f.content_type, f.content_length, f.last_modified))

    file_id = stored["data.csv"]
    depot.replace(file_id, b"id,name\n1,alpha\n2,beta\n3,gamma\n")
    with depot.get(file_id) as f:
        print("replaced data.csv, now %d bytes, filename kept: %s" % (f.content_length, f.filename))
        print("read back:", f.read().decode().strip().replace("\n", " | "))

    print("files in storage: %d" % len(depot.list()))
    for file_id in stored.values():
        depot.delete(file_id)
    print("deleted all, files left: %d" % len(depot.list()))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="depot-quickstart-") as tmp:
            main(tmp)
