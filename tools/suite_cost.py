"""Each test module's CPU (``make test-cost``): where to look when ``make test`` is slow.

``make test`` runs on every core and is bound by CPU, not by waits, so its wall time follows
the CPU its tests spend. This runs each module alone (``pytest -q -x <file>``, one process, no
xdist) and reads the machine's busy time from ``/proc/stat`` before and after. That counts what
the module's tests start too: spark-submit JVMs, Airflow's processes, servers, the CLI in a
subprocess, which a process's own rusage misses once they are not its waited-for children. So
run it on an otherwise idle machine. A module alone pays its own session fixtures (a Spark
session, a trained model), so the sum is more than the suite spends.

``python -m tools.suite_cost [FILE ...] [--json OUT]``: every ``tests/**/test_*.py`` by default;
prints one line a module, most expensive first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from imgclf.settings import PROJECT_ROOT


def busy_seconds(stat: str | None = None) -> float:
    """CPU time the whole machine has spent busy (user, nice, system, irq, softirq), in s."""
    text = stat if stat is not None else Path("/proc/stat").read_text()
    fields = text.splitlines()[0].split()
    assert fields[0] == "cpu", fields[0]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def measure(path: Path, timeout: float) -> dict[str, Any]:
    """One module alone: its CPU (the machine's busy time), its wall time, pytest's exit code."""
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", str(path)]
    busy, started = busy_seconds(), time.monotonic()
    try:
        done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, timeout=timeout)
        rc = done.returncode
    except subprocess.TimeoutExpired:
        rc = None  # said, not hidden: the figures are then a lower bound
    module = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
    return {
        "module": module.as_posix(),
        "cpu_s": round(busy_seconds() - busy, 1),
        "wall_s": round(time.monotonic() - started, 1),
        "rc": rc,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'cpu s':>7} {'wall s':>7} {'rc':>4}  module"]
    for r in sorted(rows, key=lambda r: -r["cpu_s"]):
        lines.append(f"{r['cpu_s']:7.1f} {r['wall_s']:7.1f} {r['rc']!s:>4}  {r['module']}")
    total_cpu = sum(r["cpu_s"] for r in rows)
    total_wall = sum(r["wall_s"] for r in rows)
    lines.append(f"{total_cpu:7.1f} {total_wall:7.1f}       all, one after another")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="test modules (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--timeout", type=float, default=1200, help="per module, in s")
    args = parser.parse_args(argv)
    files = args.files or sorted((PROJECT_ROOT / "tests").rglob("test_*.py"))
    rows = []
    for f in files:
        rows.append(measure(f.resolve(), args.timeout))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress: a module a line
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
