"""One core workload, run in whichever interpreter imports ``depot`` (ours or filedepot 0.12).

Usage: core_worker.py small BACKEND COUNT SIZE DIR  |  large SOURCE DIR  |  copyfile SOURCE DIR
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
    else:
        result = copyfile(args[0], args[1])
    print(json.dumps(result))
