"""The work of the DAG's Python tasks, as plain functions (no Airflow import here).

Each takes and returns small values (paths, counts, dicts), so the DAG's XComs stay small and
the same functions run from the ``imgclf`` command line and in unit tests.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from imgclf import gate as gates
from imgclf.config import DEFAULT_API_URL, Settings
from imgclf.registry import Registry, atomic_write_json

log = logging.getLogger(__name__)


class GateFailedError(RuntimeError):
    """The candidate model is below ``min_accuracy``: nothing is promoted."""


def api_url_from_connection(host: str | None, schema: str | None, port: int | None) -> str:
    """The API base URL an HTTP connection describes (``host`` may be a full URL)."""
    host = (host or "").strip()
    if not host:
        return DEFAULT_API_URL
    if "://" not in host:
        host = f"{schema or 'https'}://{host}"
    if port and not urlsplit(host).port:
        host = f"{host.rstrip('/')}:{port}"
    return host.rstrip("/")


def download(
    settings: Settings,
    run_id: str,
    params: dict[str, Any],
    api_url: str,
    token: str | None,
) -> dict[str, Any]:
    """Sync the raw images with GitHub and pin this run's manifest in its run folder."""
    from imgclf.download import GitHubClient, download_dataset

    client = GitHubClient(api_url, token)
    result = download_dataset(
        client,
        params["repo"],
        params["ref"],
        params["classes"],
        settings.raw_dir,
        min_images_per_class=params["min_images_per_class"],
        workers=settings.download_workers,
    )
    run_dir = settings.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = run_dir / "manifest.json"
    shutil.copyfile(result.manifest_path, manifest)
    log.info("download: %s; fingerprint %s", result.summary(), result.fingerprint)
    return {
        "manifest": str(manifest),
        "fingerprint": result.fingerprint,
        "counts": result.counts,
        "downloaded": result.downloaded,
        "unchanged": result.unchanged,
    }


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def branch(settings: Settings, run_id: str, target_accuracy: float) -> bool:
    """True when the baseline falls short of ``target_accuracy`` and tuning should run."""
    baseline = _read(settings.run_dir(run_id) / "baseline.json")
    if baseline is None:
        raise FileNotFoundError(f"no baseline metrics for run {run_id}: did the train job run?")
    tune = gates.needs_tuning(baseline["accuracy"], target_accuracy)
    log.info(
        "baseline accuracy %.4f %s target %.4f: %s",
        baseline["accuracy"],
        "<" if tune else ">=",
        target_accuracy,
        "tuning" if tune else "skipping tuning",
    )
    return tune


def _summary(m: dict[str, Any] | None) -> dict[str, Any] | None:
    if m is None:
        return None
    keep = (
        "accuracy",
        "accuracy_ci95",
        "confusion_matrix",
        "labels",
        "per_class",
        "roc_auc",
        "params",
        "n_train",
        "n_test",
        "featurized_images",
        "model_path",
        "seconds",
        "cv",
        "failed_images",
        "featurizer",
        "predictions",
    )
    return {k: m[k] for k in keep if k in m}


def gate(
    settings: Settings, run_id: str, params: dict[str, Any], dataset: dict[str, Any] | None
) -> dict[str, Any]:
    """Write the run's ``metrics.json``; raise ``GateFailedError`` below ``min_accuracy``."""
    run_dir = settings.run_dir(run_id)
    baseline = _read(run_dir / "baseline.json")
    if baseline is None:
        raise FileNotFoundError(f"no baseline metrics in {run_dir}")
    tuned = _read(run_dir / "tuned.json")
    decision = gates.decide(baseline, tuned, params["min_accuracy"])
    chosen = tuned if decision.candidate == "tuned" else baseline
    metrics = {
        "run_id": run_id,
        "accuracy": decision.accuracy,
        "candidate": decision.candidate,
        "passed_gate": decision.passed,
        "gate": {"min_accuracy": decision.min_accuracy, "reason": decision.reason},
        "model": params["model"],
        "featurizer": baseline["featurizer"],
        "n_train": baseline["n_train"],
        "n_test": baseline["n_test"],
        "featurized_images": baseline["featurized_images"]
        + (tuned["featurized_images"] if tuned else 0),
        "failed_images": baseline.get("failed_images", []),
        "baseline": _summary(baseline),
        "tuned": _summary(tuned),
        "model_path": chosen["model_path"],
        "dataset": dataset or {},
        "params": params,
    }
    atomic_write_json(run_dir / "metrics.json", metrics)
    log.info("%s; metrics in %s", decision.reason, run_dir / "metrics.json")
    if not decision.passed:
        raise GateFailedError(decision.reason)
    return {"metrics": str(run_dir / "metrics.json"), "accuracy": decision.accuracy}


def promote(settings: Settings, run_id: str) -> dict[str, Any]:
    """Register the gated model as a new version and make it the champion (atomically)."""
    run_dir = settings.run_dir(run_id)
    metrics = _read(run_dir / "metrics.json")
    if metrics is None or not metrics.get("passed_gate"):
        raise RuntimeError(f"run {run_id} has no passing metrics.json: nothing to promote")
    registry = Registry(settings.models_dir)
    meta = {
        "run_id": run_id,
        "accuracy": metrics["accuracy"],
        "candidate": metrics["candidate"],
        "model": metrics["model"],
        "featurizer": metrics["featurizer"],
        "dataset": metrics.get("dataset", {}),
        "params": metrics["params"],
        "metrics_path": str(run_dir / "metrics.json"),
    }
    version = registry.register(Path(metrics["model_path"]), meta)
    registry.set_champion(version, reason=f"run {run_id}: {metrics['gate']['reason']}")
    metrics["promoted_version"] = version
    atomic_write_json(run_dir / "metrics.json", metrics)
    summary = (
        f"promoted {version} ({metrics['candidate']}, test accuracy {metrics['accuracy']:.4f}, "
        f"{metrics['n_test']} test images); metrics: {run_dir / 'metrics.json'}"
    )
    log.info(summary)
    print(summary)
    return {
        "version": version,
        "accuracy": metrics["accuracy"],
        "metrics": str(run_dir / "metrics.json"),
    }
