"""Benchmark: the dataset download (``sync_dataset``) at loopback speed, every file verified.

``python -m benchmarks.download --images N`` makes an N-image dataset with ``benchmarks.augment``
in a temporary folder, serves it with the GitHub stand-in (``imgclf github-stub``, in a process of
its own as GitHub would be, on 127.0.0.1), syncs it into an empty data root (listing, blob SHA and
full Pillow decode of every file, staging, atomic swap), then syncs again with nothing changed.
It prints one JSON line: ``files``, ``seconds`` and ``files_per_s`` of the first sync,
``bytes``, ``rerun_seconds`` (the unchanged sync), ``listing_seconds`` (the listing alone), and
the CPU seconds of this process (the client) and of the stand-in during the first sync, which
say which side is the bottleneck, and ``connections``, the TCP connections the client opened
in the first sync (one per worker and origin when connections are kept alive).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.augment import DEFAULT_SOURCE, make_dataset
from imgclf.settings import Settings

REPO, REF, PREFIX = "acme/pics", "main", "data"


class _ConnectionCounter(logging.Filter):
    """Counts urllib3's "Starting new HTTP(S) connection" records (and lets none through)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        self.count += record.getMessage().startswith("Starting new HTTP")
        return False


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux ``/proc``), 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_stub(root: Path, tmp: Path) -> tuple[subprocess.Popen, str]:
    url_file = tmp / "stub.url"
    cmd = [sys.executable, "-m", "imgclf.cli", "github-stub", "--root", str(root)]
    cmd += ["--repo", REPO, "--ref", REF, "--prefix", PREFIX, "--url-file", str(url_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (url_file.is_file() and url_file.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the GitHub stand-in did not start (exit code {proc.returncode})")
        time.sleep(0.05)
    return proc, url_file.read_text().strip()


def run(args: argparse.Namespace, tmp: Path) -> dict:
    from imgclf.dataset import list_remote, sync_dataset
    from imgclf.github import GitHubClient

    remote = tmp / "remote"
    made = make_dataset(
        args.source, remote, args.images, seed=args.seed, noisy_fraction=args.noisy_fraction
    )
    classes = {label: f"{PREFIX}/{label}" for label in made["classes"]}
    proc, url = _start_stub(remote, tmp)
    try:
        client = GitHubClient(url)
        dest = tmp / "home" / "raw"
        counter, pool_log = _ConnectionCounter(), logging.getLogger("urllib3.connectionpool")
        pool_log.addFilter(counter)
        level = pool_log.level
        pool_log.setLevel(logging.DEBUG)
        stub_cpu, cpu, t0 = _cpu_seconds(proc.pid), time.process_time(), time.perf_counter()
        try:
            first = sync_dataset(client, REPO, REF, classes, dest, workers=args.workers)
        finally:
            seconds = time.perf_counter() - t0
            cpu, stub_cpu = time.process_time() - cpu, _cpu_seconds(proc.pid) - stub_cpu
            pool_log.setLevel(level)
            pool_log.removeFilter(counter)
        t1 = time.perf_counter()
        second = sync_dataset(client, REPO, REF, classes, dest, workers=args.workers)
        rerun = time.perf_counter() - t1
        t2 = time.perf_counter()
        list_remote(client, REPO, REF, classes)
        listing = time.perf_counter() - t2
    finally:
        proc.terminate()
        proc.wait(10)
    files = first.downloaded
    return {
        "files": files,
        "seconds": round(seconds, 3),
        "files_per_s": round(files / seconds, 1),
        "bytes": first.bytes,
        "rerun_seconds": round(rerun, 3),
        "rerun_downloaded": second.downloaded,
        "rerun_unchanged": second.unchanged,
        "listing_seconds": round(listing, 3),
        "client_cpu_seconds": round(cpu, 2),
        "stub_cpu_seconds": round(stub_cpu, 2),
        "connections": counter.count,
        "workers": args.workers,
        "cores": os.cpu_count(),
        "dataset_seconds": made["seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.download", description=__doc__)
    p.add_argument("--images", type=int, default=6000)
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noisy-fraction", type=float, default=0.0)
    p.add_argument(
        "--workers",
        type=int,
        default=Settings.download_workers,
        help="download workers (IMGCLF_DOWNLOAD_WORKERS's default)",
    )
    p.add_argument("--verbose", action="store_true", help="show the sync's log lines")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
    )
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-download-") as tmp:
        out = run(args, Path(tmp))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
