"""The bodies of the DAGs' Python tasks, as plain functions (no Airflow import here): the
download, the branch, the gate, the promotion, the data watcher's check. (The spark-submit jobs
are ``spark_tasks``; the decisions these tasks act on are ``decisions``; the run record is
``runs``; the GitHub connection is ``connections``.)

Each takes and returns small values (paths, counts, dicts), so the DAG's XComs stay small and
the same functions run from the ``imgclf`` command line and in unit tests.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

from imgclf import approval, decisions, registry, runs
from imgclf.files import atomic_write_json
from imgclf.runs import read_json
from imgclf.settings import Settings
from imgclf.version import code_version

log = logging.getLogger(__name__)


class GateFailedError(RuntimeError):
    """The candidate model is below ``min_accuracy``: nothing is promoted."""


def dataset_changed(
    settings: Settings, params: dict[str, Any], api_url: str, token: str | None
) -> dict[str, Any]:
    """List the remote folders (no downloads) and compare with the dataset of the newest run
    that got one (not the champion's: a run that failed the gate or the challenge on new data
    must not be retriggered every check, forever)."""
    from imgclf.dataset import fingerprint, list_remote
    from imgclf.github import GitHubClient
    from imgclf.params import check_classes

    client = GitHubClient.from_settings(settings, api_url, token)
    files = list_remote(client, params["repo"], params["ref"], check_classes(params["classes"]))
    remote = fingerprint([(f.label, f.sha) for f in files])
    theirs, run_id = runs.last_fingerprint(settings)
    result = {
        "fingerprint": remote,
        "last_run": run_id,
        "last_fingerprint": theirs,
        "files": len(files),
        "changed": remote != theirs,
    }
    log.info("remote dataset %s, last run %s (%s): %s", remote[:12], run_id,
             (theirs or "none")[:12], "changed" if result["changed"] else "unchanged")  # fmt: skip
    return result


def resolve_version(settings: Settings, version: str) -> dict[str, str]:
    """``champion`` or a version number to its MLflow model URI (KeyError naming what is
    missing): ``models:/<name>@champion`` or ``models:/<name>/<version>``."""
    found = registry.version(settings, version)
    uri = registry.model_uri(settings, version or registry.CHAMPION)
    return {"version": found["version"], "model_uri": uri}


def download(
    settings: Settings,
    run_id: str,
    params: dict[str, Any],
    api_url: str,
    token: str | None,
) -> dict[str, Any]:
    """Sync the raw images with GitHub and pin this run's manifest in its run folder."""
    from imgclf.dataset import sync_dataset
    from imgclf.github import GitHubClient

    client = GitHubClient.from_settings(settings, api_url, token)
    result = sync_dataset(
        client,
        params["repo"],
        params["ref"],
        params["classes"],
        settings.raw_dir,
        min_images_per_class=params["min_images_per_class"],
        workers=settings.download_workers,
        max_image_pixels=settings.max_image_pixels,
        lock_wait=settings.sync_lock_wait,
    )
    manifest = settings.manifest_copy(run_id)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.manifest_path, manifest)
    log.info("download: %s; fingerprint %s", result.summary(), result.fingerprint)
    return {
        "manifest": str(manifest),
        "fingerprint": result.fingerprint,
        "counts": result.counts,
        "downloaded": result.downloaded,
        "unchanged": result.unchanged,
    }


def branch(settings: Settings, run_id: str, target_accuracy: float) -> bool:
    """True when the baseline falls short of ``target_accuracy`` and tuning should run."""
    baseline = read_json(settings.run_dir(run_id) / "baseline.json")
    if baseline is None:
        raise FileNotFoundError(f"no baseline metrics for run {run_id}: did the train job run?")
    tune = decisions.needs_tuning(baseline["accuracy"], target_accuracy)
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
        "n",
        "correct",
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
    baseline = read_json(run_dir / "baseline.json")
    if baseline is None:
        raise FileNotFoundError(f"no baseline metrics in {run_dir}")
    tuned = read_json(run_dir / "tuned.json")
    decision = decisions.decide(baseline, tuned, params["min_accuracy"])
    chosen = tuned if decision.candidate == "tuned" and tuned is not None else baseline
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
        **({"no_face_images": baseline["no_face_images"]} if "no_face_images" in baseline else {}),
        "baseline": _summary(baseline),
        "tuned": _summary(tuned),
        "model_path": chosen["model_path"],
        "dataset": dataset or {},
        "params": params,
        "data_checks": read_json(run_dir / "datachecks.json"),
    }
    atomic_write_json(run_dir / "metrics.json", metrics)
    log.info("%s; metrics in %s", decision.reason, run_dir / "metrics.json")
    if not decision.passed:
        raise GateFailedError(f"{decision.reason}; report: {run_dir / 'report.html'}")
    return {"metrics": str(run_dir / "metrics.json"), "accuracy": decision.accuracy}


def test_set_tags(metrics: dict[str, Any], comparison: dict[str, Any] | None) -> dict[str, str]:
    """Which test images a version's ``accuracy`` (and the champion's, in its challenge) was
    measured on: the split's seed and fraction, the image count, the dataset fingerprint.
    Accuracies on different test sets are different measurements (``imgclf models list``)."""
    params = metrics.get("params") or {}
    out = {
        "test_split_seed": str(params.get("seed")),
        "test_fraction": str(params.get("test_fraction")),
        "n_test": str(metrics.get("n_test")),
    }
    if comparison and comparison.get("champion_accuracy") is not None:
        out["challenged_version"] = str(comparison.get("champion"))
        out["challenged_accuracy"] = f"{comparison['champion_accuracy']:.6f}"
    return out


def promote(settings: Settings, run_id: str, max_regression: float) -> dict[str, Any]:
    """Register the gated model and make it champion, unless it is worse than the champion.

    "Worse" is measured by the challenge job on this run's test images (``challenge.json``).
    Either way the decision lands in ``metrics.json``, the history and the report.
    """
    run_dir = settings.run_dir(run_id)
    metrics = read_json(run_dir / "metrics.json")
    if metrics is None or not metrics.get("passed_gate"):
        raise RuntimeError(f"run {run_id} has no passing metrics.json: nothing to promote")
    comparison = read_json(run_dir / "challenge.json")
    decision = decisions.challenge(metrics["accuracy"], comparison, max_regression)
    metrics["champion_comparison"] = {
        **(comparison or {}),
        "max_regression": max_regression,
        "promoted": decision.promote,
        "decision": decision.reason,
    }
    code = code_version()
    key = registry.candidate_key(metrics, code)
    mlflow_run = read_json(run_dir / "mlflow.json") or {}
    tags = {
        "airflow_run_id": run_id,
        "accuracy": f"{metrics['accuracy']:.6f}",
        "candidate": metrics["candidate"],
        "model": str(metrics["model"]),
        "featurizer": str(metrics["featurizer"]),
        "dataset_fingerprint": str((metrics.get("dataset") or {}).get("fingerprint")),
        "code_version": code,
        "challenge_decision": decision.reason[:4000],
        "max_regression": str(max_regression),
        **test_set_tags(metrics, comparison),
    }
    # the person's answer (the approval task; none when it did not run: the rules alone)
    verdict = read_json(run_dir / "approval.json") or approval.not_asked("not asked")
    tags.update(approval.version_tags(verdict))
    metrics["approval"] = verdict
    source = (comparison or {}).get("candidate_model_uri")
    if not source:
        raise RuntimeError(f"run {run_id}: the challenge job logged no candidate model")
    registered, identical = registry.register(
        settings, source, mlflow_run.get("mlflow_run_id"), key, tags
    )
    version = None
    if identical:
        outcome = (
            f"identical to version {identical} (same dataset, featurizer, params and code): "
            "no new version registered"
        )
    elif not verdict["approved"]:  # said whatever the rules decided: the person's answer
        outcome = f"version {registered} registered; not promoted: {verdict['summary']}"
    elif decision.promote:
        assert registered is not None
        version = registry.promote(settings, registered, f"run {run_id}: {decision.reason}")
        outcome = f"version {version} registered and made champion"
    else:
        outcome = f"version {registered} registered; the champion stays"
    metrics["registered_version"] = registered
    metrics["identical_to_version"] = identical
    metrics["promoted_version"] = version
    metrics["champion_comparison"]["registry"] = outcome
    atomic_write_json(run_dir / "metrics.json", metrics)
    report = run_dir / "report.html"  # written by the run's last task (runs.record)
    summary = (
        f"{decision.reason}; {outcome}. {metrics['candidate']} test accuracy "
        f"{metrics['accuracy']:.4f} on {metrics['n_test']} images. "
        f"Metrics: {run_dir / 'metrics.json'}. Report: {report}"
    )
    log.info(summary)
    return {
        "version": version,
        "registered": registered,
        "identical_to": identical,
        "accuracy": metrics["accuracy"],
        "report": str(report),
    }


def approval_request(settings: Settings, run_id: str, report_url: str | None) -> dict[str, Any]:
    """Whether this run waits for a person (the ``approval`` Param and the rules' decision),
    and what they are shown: ``{"ask", "why", "subject", "body", "timeout_hours"}``. Writes
    the report as it stands, so the approver can open it."""
    run_dir = settings.run_dir(run_id)
    metrics = read_json(run_dir / "metrics.json")
    if metrics is None or not metrics.get("passed_gate"):
        raise RuntimeError(f"run {run_id} has no passing metrics.json: nothing to approve")
    params = metrics.get("params") or {}
    comparison = read_json(run_dir / "challenge.json")
    rules = decisions.challenge(metrics["accuracy"], comparison, params["max_regression"])
    key = registry.candidate_key(metrics, code_version())
    identical = next(
        (v["version"] for v in registry.versions(settings)
         if v["tags"].get("candidate_key") == key),
        None,
    )  # fmt: skip
    ask, why = approval.should_ask(params.get("approval", "auto"), rules.promote, identical)
    out: dict[str, Any] = {"ask": ask, "why": why}
    if not ask:
        return out
    timeout = float(params.get("approval_timeout_hours", 24.0))
    runs.write_report(settings, run_id)
    mlflow_url = (read_json(run_dir / "mlflow.json") or {}).get("url")
    out.update(
        subject=f"Promote {metrics['candidate']} model of run {run_id}? "
        f"(test accuracy {metrics['accuracy']:.4f})",
        body=approval.body(metrics, comparison, rules.reason, report_url, mlflow_url, timeout),
        timeout_hours=timeout,
    )
    return out


def record_approval(settings: Settings, run_id: str, outcome: dict[str, Any]) -> dict[str, Any]:
    """Pin the approval's outcome for promote and the record (``runs/<run>/approval.json``)."""
    atomic_write_json(settings.run_dir(run_id) / "approval.json", outcome)
    log.info("approval: %s", outcome["summary"])
    return outcome
