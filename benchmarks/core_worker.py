"""One core workload, run in whichever interpreter imports ``depot`` (ours or filedepot 0.12).

Usage: core_worker.py small BACKEND COUNT SIZE DIR  |  large SOURCE DIR  |  copyfile SOURCE DIR
       core_worker.py delete COUNT SIZE DIR  |  delete-floor COUNT SIZE DIR
       core_worker.py memstream SOURCE  |  memstream-floor SOURCE
       core_worker.py durable yes|no COUNT SIZE DIR
Prints one JSON line.
"""
import json
import os
import resource
import shutil
import sys
import time


def storage_for(backend, path):
    if backend == "memory":
        from depot.io.memory import MemoryFileStorage
        return MemoryFileStorage()
    from depot.io.local import LocalFileStorage
    return LocalFileStorage(path)


def small(backend, count, size, path):
    storage = storage_for(backend, path)
    payloads = [os.urandom(size) for _ in range(count)]
    # Dirty pages of an earlier large write would otherwise be written back
    # during the timing and stall every metadata operation on the journal.
    os.sync()
    t0, c0 = time.perf_counter(), time.process_time()
    ids = [storage.create(p, "file.bin") for p in payloads]
    t1, c1 = time.perf_counter(), time.process_time()
    for file_id in ids:
        f = storage.get(file_id)
        f.read()
        f.close()
    t2, c2 = time.perf_counter(), time.process_time()
    # CPU time (user + system) leaves out the waits for a disk busy with
    # other work (writeback, discards of deleted files), which swing the
    # wall clock of metadata-heavy loops from one run to the next.
    return {"create_ops": count / (t1 - t0), "get_read_ops": count / (t2 - t1),
            "create_ops_cpu": count / (c1 - c0), "get_read_ops_cpu": count / (c2 - c1)}


def _timed(func, items):
    """Call ``func`` on each item; ``(ops/s, ops per CPU-second)``."""
    t0, c0 = time.perf_counter(), time.process_time()
    for item in items:
        func(item)
    t1, c1 = time.perf_counter(), time.process_time()
    return len(items) / (t1 - t0), len(items) / max(c1 - c0, 1e-9)


def delete(count, size, path):
    """Delete ``count`` local files of ``size`` bytes, each written by the storage itself."""
    from depot.io.local import LocalFileStorage
    storage = LocalFileStorage(path)
    ids = [storage.create(os.urandom(size), "file.bin") for _ in range(count)]
    os.sync()
    ops, ops_cpu = _timed(storage.delete, ids)
    assert not os.listdir(path), os.listdir(path)[:3]
    return {"delete_ops": ops, "delete_ops_cpu": ops_cpu}


def delete_floor(count, size, path):
    """The least any delete does: two unlinks and one rmdir of the same layout, no atomicity."""
    folders = []
    for i in range(count):
        folder = os.path.join(path, "%032x" % i)
        os.makedirs(folder)
        for name, data in (("file", os.urandom(size)), ("metadata.json", b"{}" * 60)):
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
        folders.append(folder)
    os.sync()

    def remove(folder):
        os.unlink(folder + "/file")
        os.unlink(folder + "/metadata.json")
        os.rmdir(folder)

    ops, ops_cpu = _timed(remove, folders)
    return {"delete_ops": ops, "delete_ops_cpu": ops_cpu}


#: In-process repetitions of a memory stream: the best one is kept, which
#: leaves out most of the time a busy machine takes the CPU away.
STREAM_REPEATS = 3


def _best_stream(size, store):
    """Run ``store()`` (which drops what it kept before returning) a few times; best MB/s figures."""
    base = reset_peak_kib()
    best_wall = best_cpu = float("inf")
    for _ in range(STREAM_REPEATS):
        t0, c0 = time.perf_counter(), time.process_time()
        store()
        t1, c1 = time.perf_counter(), time.process_time()
        best_wall, best_cpu = min(best_wall, t1 - t0), min(best_cpu, c1 - c0)
    return {"write_mbs": size / best_wall / 1e6, "write_mbs_cpu": size / max(best_cpu, 1e-9) / 1e6,
            "rss_growth_mib": (peak_kib() - base) / 1024.0}


def memstream(source):
    """Stream a file from disk into the memory storage (``create`` with the open file)."""
    from depot.io.memory import MemoryFileStorage
    storage = MemoryFileStorage()
    size = os.path.getsize(source)

    def store():
        with open(source, "rb") as src:
            file_id = storage.create(src, "large.bin")
        assert storage.get(file_id).content_length == size
        storage.delete(file_id)

    return _best_stream(size, store)


def memstream_floor(source):
    """The least it takes to hold a file's bytes in memory: one ``read()`` of the whole file."""
    size = os.path.getsize(source)

    def store():
        with open(source, "rb") as src:
            assert len(src.read()) == size

    return _best_stream(size, store)


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_kib():
    """Reset the kernel's high-water mark so that only the workload's peak counts."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_kib("VmRSS")


def peak_kib():
    return _status_kib("VmHWM")


def large(source, path):
    from depot.io.local import LocalFileStorage
    storage = LocalFileStorage(path)
    size = os.path.getsize(source)
    base = reset_peak_kib()
    t0 = time.perf_counter()
    with open(source, "rb") as src:
        file_id = storage.create(src, "large.bin")
    t1 = time.perf_counter()
    f = storage.get(file_id)
    total = 0
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            break
        total += len(chunk)
    f.close()
    t2 = time.perf_counter()
    assert total == size, (total, size)
    return {"write_mbs": size / (t1 - t0) / 1e6, "read_mbs": size / (t2 - t1) / 1e6,
            "rss_growth_mib": (peak_kib() - base) / 1024.0}


def durable_create(durable, count, size, path):
    """Create ``count`` local files of ``size`` bytes with ``durable`` on or off (this project only)."""
    from depot.io.local import LocalFileStorage
    storage = LocalFileStorage(path, durable=durable)
    payload = os.urandom(size)
    storage.create(b"warm-up")  # the storage folder exists before the timing, as in a running app
    os.sync()
    ops, ops_cpu = _timed(lambda i: storage.create(payload, "file.bin"), range(count))
    return {"create_ops": ops, "create_mbs": ops * size / 1e6, "create_ops_cpu": ops_cpu}


def copyfile(source, path):
    size = os.path.getsize(source)
    os.makedirs(path, exist_ok=True)
    t0 = time.perf_counter()
    shutil.copyfile(source, os.path.join(path, "copy.bin"))
    return {"write_mbs": size / (time.perf_counter() - t0) / 1e6}


if __name__ == "__main__":
    kind, args = sys.argv[1], sys.argv[2:]
    if kind == "small":
        result = small(args[0], int(args[1]), int(args[2]), args[3])
    elif kind == "large":
        result = large(args[0], args[1])
    elif kind in ("delete", "delete-floor"):
        result = (delete if kind == "delete" else delete_floor)(int(args[0]), int(args[1]), args[2])
    elif kind == "durable":
        result = durable_create(args[0] == "yes", int(args[1]), int(args[2]), args[3])
    elif kind in ("memstream", "memstream-floor"):
        result = (memstream if kind == "memstream" else memstream_floor)(args[0])
    else:
        result = copyfile(args[0], args[1])
    print(json.dumps(result))
