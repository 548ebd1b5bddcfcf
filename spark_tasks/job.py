"""The one skeleton of the run's spark-submit jobs (train, tune, challenge).

A job takes two arguments, ``--run-id`` and ``--data-root`` (default ``IMGCLF_HOME``), and reads
everything else from where the run already put it: the validated, normalised run parameters
(``runs/<run>/params.json``, written by the DAG's first task), the pinned manifest, the layout of
the data root (``Settings``). No job re-declares a parameter or its default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.settings import Settings, safe_name


class JobCheckError(RuntimeError):
    """A job's own check failed (its counts do not add up): the message says what and why."""


@dataclass
class JobContext:
    """What a job of run ``run_id`` needs: settings (every path), the run's params."""

    settings: Settings
    run_id: str
    params: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        return self.settings.run_dir(self.run_id)

    def app_name(self, job: str) -> str:
        return f"imgclf-{job}-{safe_name(self.run_id)}"


class Phases:
    """Wall seconds of a job's phases, in order, for its metrics: where the time goes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._last, 2)
        self._last = now

    def timing(self) -> dict[str, Any]:
        """``seconds`` since the start and each phase's, for the job's metrics."""
        return {"seconds": round(time.monotonic() - self._start, 2), "phases": self.seconds}


def context(run_id: str, data_root: Path | None = None) -> JobContext:
    """The job context of ``run_id``; ``FileNotFoundError`` if its params were never written."""
    settings = Settings.from_env()
    if data_root is not None:
        settings = dataclasses.replace(settings, home=Path(data_root).resolve())
    path = settings.params_path(run_id)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the DAG's validate_params task writes it")
    return JobContext(settings, run_id, json.loads(path.read_text()))


def main(
    job: Callable[[JobContext], Any], description: str | None, argv: list[str] | None = None
) -> int:
    """Parse ``--run-id``/``--data-root``, build the context, run ``job`` (spark-submit's main)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog=sys.argv[0], description=description)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--data-root", type=Path, default=None, help="default: IMGCLF_HOME")
    args = parser.parse_args(argv)
    ctx = context(args.run_id, args.data_root)
    name = Path(sys.argv[0]).stem
    error = ctx.run_dir / f"{name}.error"  # the task's failure line (runs.record_failure)
    error.unlink(missing_ok=True)
    try:
        job(ctx)
    except (ValueError, JobCheckError) as exc:  # bad input or a broken invariant: one line
        line = " ".join(str(exc).split())
        logging.getLogger(__name__).error("%s failed: %s", name, line)
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        error.write_text(line[:2000] + "\n")
        print(f"imgclf {name}: {line}", file=sys.stderr)
        return 2
    return 0
