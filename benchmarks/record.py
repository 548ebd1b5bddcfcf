"""Keep a benchmark's output: ``python -m benchmarks.X ... | python -m benchmarks.record NAME``.

Reads the benchmark's JSON lines from stdin, passes them through to stdout, and writes
``benchmarks/results/<NAME>.json``: the lines, with when, where (the machine) and at which
commit they were measured, and the command. ``tools/render_performance.py`` (``make
perf-docs``) renders ``docs/performance.md`` from these files: a new measurement is a new file,
never an edit of prose.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imgclf.files import atomic_write_json
from imgclf.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "benchmarks" / "results"


def _git(*args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / (1 << 30), 1)


def _java() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return (out.stderr or out.stdout).splitlines()[0].strip() if (out.stderr or out.stdout) else ""


def machine() -> dict[str, Any]:
    """Where a figure was measured: enough to tell two machines (or two loads) apart."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": _java(),
        "load_1min_at_end": round(load, 2) if load is not None else None,
    }


def record(name: str, lines: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """The result file's content for ``lines`` measured just now."""
    return {
        "benchmark": name,
        "source": "measured",  # written by this module as the benchmark ran
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "command": command,
        "machine": machine(),
        "results": lines,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.record", description=__doc__)
    p.add_argument("name", help="the result's name: benchmarks/results/<name>.json")
    p.add_argument("--command", default="", help="the command that measured it (for the docs)")
    p.add_argument("--dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    lines = []
    for raw in sys.stdin:
        sys.stdout.write(raw)
        sys.stdout.flush()
        text = raw.strip()
        if text.startswith("{"):
            try:
                lines.append(json.loads(text))
            except ValueError:
                continue  # a log line that happens to start with a brace
    if not lines:
        print(f"benchmarks.record: no JSON line on stdin: {args.name} not written", file=sys.stderr)
        return 1
    path = args.dir / f"{args.name}.json"
    atomic_write_json(path, record(args.name, lines, args.command))
    print(f"benchmarks.record: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
