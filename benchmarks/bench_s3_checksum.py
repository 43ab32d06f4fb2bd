"""S3 checksums (issue 15): a large multipart upload with checksum=None, crc32c and sha256, and filedepot 0.12.

Against a SeaweedFS S3 gateway this script starts, one non-seekable stream of
``--large-mib`` MiB (256 by default, a multipart upload of 8 MiB parts) is
stored by each configuration in turn, in fresh processes, rounds
interleaved in alternating order.  Printed per configuration: write MB/s,
client CPU seconds, SeaweedFS CPU seconds (medians), and the ratio of its
write MB/s to depot with ``checksum=None`` and to filedepot 0.12, each the
median of the ratios within a round (so a busy machine slows both sides of
a ratio alike).  The gateway is plain http: under the default
``payload_signing='auto'`` every part is also signed (a SHA-256 of it), as
botocore does over plain http.

    python benchmarks/bench_s3_checksum.py [--rounds 3] [--large-mib 256]

The worker is ``bench_s3.py``'s (``DEPOT_BENCH_CHECKSUM`` picks the option).
"""
import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUCKET = "depot-bench"
#: (label, interpreter key, DEPOT_BENCH_CHECKSUM or None for filedepot's default).
CONFIGS = [
    ("depot checksum=None", "depot", "none"),
    ("depot checksum=crc32c", "depot", "crc32c"),
    ("depot checksum=sha256", "depot", "sha256"),
    ("filedepot 0.12", "filedepot", None),
]


def main():
    sys.path.insert(0, HERE)
    sys.path.insert(0, ROOT)
    from _harness import run_worker
    from bench_s3 import _empty, start_seaweedfs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--large-mib", type=int, default=256)
    opts = parser.parse_args()

    pythons, process, server, client = start_seaweedfs()
    results = {label: [] for label, _, _ in CONFIGS}
    try:
        client.create_bucket(Bucket=BUCKET)
        # Round 0 is a discarded warm-up (page cache, server volumes, imports).
        for r in range(opts.rounds + 1):
            for label, which, checksum in (CONFIGS if r % 2 else CONFIGS[::-1]):
                # This checkout first on the path (the venv may hold another depot).
                env = {"PYTHONPATH": ROOT} if which == "depot" else {}
                if checksum is not None:
                    env["DEPOT_BENCH_CHECKSUM"] = checksum
                prefix = "c-%d-%s/" % (r, label.replace(" ", "_").replace("=", "-"))
                result = run_worker(pythons[which], "bench_s3.py", [
                    "worker", server.endpoint_url, server.access_key, server.secret_key, BUCKET, prefix,
                    "large", str(opts.large_mib), str(process.popen.pid)], env=env)
                _empty(client, prefix)
                if r:
                    results[label].append(result)
                    print("round %d  %-24s %7.1f MB/s  client CPU %.2fs  server CPU %s" % (
                        r, label, result["write_mbs"], result["client_cpu_s"],
                        "?" if result["server_cpu_s"] is None else "%.2fs" % result["server_cpu_s"]), flush=True)
            if not r:
                print("warm-up round done", flush=True)
    finally:
        process.stop()

    def ratio(label, base):
        return statistics.median(a["write_mbs"] / b["write_mbs"] for a, b in zip(results[label], results[base], strict=True))

    print()
    print("%d MiB non-seekable stream to SeaweedFS (multipart, 8 MiB parts), %d rounds, %d cores; medians"
          % (opts.large_mib, opts.rounds, os.cpu_count()))
    print("%-24s %10s %12s %12s %14s %14s" % ("configuration", "write MB/s", "client CPU", "server CPU",
                                              "vs depot None", "vs filedepot"))
    for label, _, _ in CONFIGS:
        rs = results[label]
        server_cpu = [x["server_cpu_s"] for x in rs if x["server_cpu_s"] is not None]
        print("%-24s %10.1f %11.2fs %11s %13.2fx %13.2fx" % (
            label, statistics.median(x["write_mbs"] for x in rs), statistics.median(x["client_cpu_s"] for x in rs),
            "%.2fs" % statistics.median(server_cpu) if server_cpu else "?",
            ratio(label, "depot checksum=None"), ratio(label, "filedepot 0.12")))


if __name__ == "__main__":
    main()
