"""The run record: parameters pinned at the start, one history line and the report at the end.

Written in two places only: ``save_params`` by the run's first task, and ``record`` by its last
(an Airflow teardown, so it runs whatever the outcome: promoted, not promoted, failed at the
gate or earlier). A failing task notes its reason (``record_failure``) for both to show.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from imgclf.files import atomic_write_json, atomic_write_text
from imgclf.settings import Settings

log = logging.getLogger(__name__)


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def save_params(settings: Settings, run_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate the run's parameters once and pin the normalised values for every later task
    and job (``runs/<run>/params.json``); ``ValueError`` lists every problem."""
    from imgclf.params import validate

    checked = validate(params)
    atomic_write_json(settings.params_path(run_id), checked)
    return checked


def open_run(settings: Settings, dag_id: str, run_id: str, params: dict[str, Any]) -> dict:
    """The run's MLflow run, with its parameters (``runs/<run>/mlflow.json``)."""
    from imgclf import tracking

    return tracking.start_run(settings, dag_id, run_id, params)


def reject_params(
    settings: Settings, dag_id: str, run_id: str, params: dict[str, Any], error: Exception
) -> None:
    """Record a run whose parameters failed validation: its reason (``failure.json``) and an
    MLflow run, FAILED, with the values given (known names only, each bounded) and the reason.
    Recording is best effort: it never hides the validation error itself."""
    from imgclf import tracking
    from imgclf.params import PROPERTIES

    record_failure(settings, run_id, "validate_params", error)
    try:
        given = {k: v for k, v in params.items() if k in PROPERTIES}
        tracking.start_run(settings, dag_id, run_id, given)
        failure = read_json(settings.run_dir(run_id) / "failure.json")
        tracking.finish_run(settings, run_id, metrics=None, failure=failure, artifacts=[])
    except Exception:  # a store that is down: the task still fails with the params' reason
        log.exception("could not record the rejected run %s in MLflow", run_id)


def record_failure(settings: Settings, run_id: str, task_id: str, error: BaseException) -> Path:
    """Note why a run failed (``runs/<run>/failure.json``): for the record, ``imgclf summary``.

    A Spark job that failed on a check of its own left its one line in ``<task>.error``: that
    line, rather than the operator's "Cannot execute: spark-submit ..."."""
    job_line = settings.run_dir(run_id) / f"{task_id}.error"
    if job_line.is_file():
        error = RuntimeError(job_line.read_text(errors="replace")[:2000])
    message = " ".join(str(error).split()) or type(error).__name__
    checks = read_json(settings.run_dir(run_id) / "datachecks.json") or {}
    if checks.get("failures"):  # a job's own exit says little; the checks say why
        message = "data checks failed: " + "; ".join(checks["failures"])
    path = settings.run_dir(run_id) / "failure.json"
    atomic_write_json(path, {"run_id": run_id, "task": task_id, "error": message[:2000]})
    return path


def history(settings: Settings) -> list[dict[str, Any]]:
    """One line per run that ended, oldest first (``runs/history.jsonl``)."""
    path = settings.runs_dir / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def last_fingerprint(settings: Settings) -> tuple[str | None, str | None]:
    """``(fingerprint, run_id)`` of the dataset the newest run that got one ran on."""
    for entry in reversed(history(settings)):
        if entry.get("fingerprint"):
            return entry["fingerprint"], entry.get("run_id")
    return None, None


def record(settings: Settings, run_id: str) -> dict[str, Any]:
    """End the run's record: one history line (once, however often this runs) and, when the
    run got as far as metrics, its report. Returns what was written."""
    run_dir = settings.run_dir(run_id)
    metrics = read_json(run_dir / "metrics.json")
    failure = read_json(run_dir / "failure.json")
    manifest = read_json(settings.manifest_copy(run_id)) or {}
    entry = {
        "run_id": run_id,
        "time": time.time(),
        "fingerprint": manifest.get("fingerprint"),
        "passed_gate": bool(metrics and metrics.get("passed_gate")),
        "accuracy": metrics.get("accuracy") if metrics else None,
        "candidate": metrics.get("candidate") if metrics else None,
        "promoted_version": metrics.get("promoted_version") if metrics else None,
        "model": (metrics or load_params_or_empty(settings, run_id)).get("model"),
        "failed_at": failure["task"] if failure else None,
    }
    if not any(e.get("run_id") == run_id for e in history(settings)):
        settings.runs_dir.mkdir(parents=True, exist_ok=True)
        with open(settings.runs_dir / "history.jsonl", "a") as fh:  # one short line: one write
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
    out: dict[str, Any] = {"history": str(settings.runs_dir / "history.jsonl")}
    artifacts: list[tuple[Path, str | None]] = [
        (settings.manifest_copy(run_id), None),
        (run_dir / "params.json", None),
        (run_dir / "datachecks.json", None),
        (run_dir / "evidence.json", None),
    ]
    if metrics is not None:
        from imgclf.files import atomic_write_bytes
        from imgclf.report import figure_files

        metrics = _with_late_parts(run_dir, metrics)
        report = write_report(settings, run_id)
        log.info("report: %s", report)
        out["report"] = str(report)
        artifacts += [(report, None), (run_dir / "metrics.json", None)]
        for name, png in figure_files(metrics).items():
            atomic_write_bytes(run_dir / "figures" / name, png)
            artifacts.append((run_dir / "figures" / name, "figures"))
    elif (checks := read_json(run_dir / "datachecks.json")) and checks.get("failures"):
        from imgclf.report import render_stopped

        report = run_dir / "report.html"  # stopped by a data check: no metrics, still a report
        atomic_write_text(
            report, render_stopped(run_id, load_params_or_empty(settings, run_id), checks, failure)
        )
        out["report"] = str(report)
        artifacts.append((report, None))
    from imgclf import tracking

    url = tracking.finish_run(
        settings, run_id, metrics=metrics, failure=failure, artifacts=artifacts
    )
    if url:
        out["mlflow_run_url"] = url
        log.info("MLflow run: %s", url)
    return out


def _with_late_parts(run_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json with what later tasks wrote beside it: the evidence job's maps, and the
    approval's outcome when promote did not get to record it."""
    metrics["evidence"] = read_json(run_dir / "evidence.json")
    if "approval" not in metrics:
        metrics["approval"] = read_json(run_dir / "approval.json")
    return metrics


def write_report(settings: Settings, run_id: str) -> Path:
    """``runs/<run>/report.html`` from the run's metrics as they stand (the approval task shows
    it to the approver; the record task writes the final one)."""
    from imgclf.report import render

    run_dir = settings.run_dir(run_id)
    metrics = read_json(run_dir / "metrics.json")
    if metrics is None:
        raise FileNotFoundError(f"no metrics.json in {run_dir}")
    report = run_dir / "report.html"
    atomic_write_text(report, render(_with_late_parts(run_dir, metrics), history(settings)))
    return report


def load_params_or_empty(settings: Settings, run_id: str) -> dict[str, Any]:
    return read_json(settings.params_path(run_id)) or {}
