"""The run record (params pinned first, one history line and the report last) and the data
watcher's comparison with the newest run, not the champion."""

from __future__ import annotations

import dataclasses
import json

import pytest

from imgclf import dag_tasks, runs
from imgclf.files import atomic_write_json
from imgclf.settings import Settings
from imgclf.testing.github_stub import GitHubStub

from .test_report import _metrics


@pytest.fixture
def settings(tmp_path):
    return dataclasses.replace(Settings.from_env(), home=tmp_path / "home")


def test_params_are_validated_once_and_pinned_normalised(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ValueError, match="min_accuracy=2"):
        runs.save_params(settings, "r1", {"min_accuracy": 2})
    assert not settings.params_path("r1").exists()
    from spark_tasks.job import context  # what reads them: the spark-submit jobs

    with pytest.raises(FileNotFoundError, match="validate_params"):
        context("r1", settings.home)
    pinned = runs.save_params(settings, "r1", {"model": "dlib-face", "seed": 3})
    assert context("r1", settings.home).params == pinned
    assert pinned["seed"] == 3 and pinned["cv_folds"] == 3  # defaults filled in


def test_a_run_rejected_at_validate_params_is_a_failed_mlflow_run_with_the_reason(
    settings, seed_mlflow_store
):
    from imgclf import tracking

    seed_mlflow_store(settings.home)
    given = {"min_accuracy": 2, "seed": 3, "x" * 300: "not a param", "model": "m" * 5000}
    with pytest.raises(ValueError, match="min_accuracy=2") as caught:
        runs.save_params(settings, "bad__1", given)
    runs.reject_params(settings, "football_classifier", "bad__1", given, caught.value)
    rid = json.loads((settings.run_dir("bad__1") / "mlflow.json").read_text())["mlflow_run_id"]
    run = tracking.client(settings).get_run(rid)
    assert run.info.status == "FAILED"
    assert run.data.tags["failed_task"] == "validate_params"
    assert "min_accuracy=2" in run.data.tags["failure"]
    assert run.data.params["seed"] == "3" and "x" * 300 not in run.data.params  # known names
    assert len(run.data.params["model"]) == tracking.PARAM_VALUE_MAX  # bounded
    runs.record(settings, "bad__1")  # the teardown after it: still one run, still FAILED
    assert tracking.client(settings).get_run(rid).info.status == "FAILED"
    (entry,) = runs.history(settings)
    assert entry["failed_at"] == "validate_params"


def test_record_writes_one_history_line_and_the_report_however_often_it_runs(settings, tmp_path):
    run_dir = settings.run_dir("manual__1")
    atomic_write_json(run_dir / "metrics.json", _metrics(tmp_path))
    atomic_write_json(settings.manifest_copy("manual__1"), {"fingerprint": "f1"})
    first = runs.record(settings, "manual__1")
    again = runs.record(settings, "manual__1")  # a retried teardown
    assert first["report"] == again["report"] == str(run_dir / "report.html")
    entries = runs.history(settings)
    assert len(entries) == 1
    assert entries[0]["fingerprint"] == "f1" and entries[0]["promoted_version"] == "v0002"
    assert "<html" in (run_dir / "report.html").read_text().lower()


def test_a_run_that_failed_early_is_recorded_with_where_and_no_report(settings):
    runs.record_failure(settings, "r2", "download", RuntimeError("cannot reach\nthe host"))
    out = runs.record(settings, "r2")
    assert "report" not in out
    (entry,) = runs.history(settings)
    assert entry["failed_at"] == "download" and entry["passed_gate"] is False
    failure = json.loads((settings.run_dir("r2") / "failure.json").read_text())
    assert failure["error"] == "cannot reach the host"  # one line


def test_the_watcher_compares_with_the_newest_run_not_the_champion(settings, tmp_path):
    root = tmp_path / "remote"
    for label in ("messi", "ronaldo"):
        (root / label).mkdir(parents=True)
        (root / label / "a.jpg").write_bytes(label.encode() * 10)
    params = {"repo": "o/r", "ref": "main",
              "classes": {"messi": "data/messi", "ronaldo": "data/ronaldo"}}  # fmt: skip
    with GitHubStub(root, repo="o/r", ref="main", prefix="data") as stub:
        first = dag_tasks.dataset_changed(settings, params, stub.url, None)
        assert first["changed"] and first["last_run"] is None  # nothing ever ran
        # a run on that data that failed the gate (so no champion): the data is not new
        atomic_write_json(settings.manifest_copy("r1"), {"fingerprint": first["fingerprint"]})
        runs.record_failure(settings, "r1", "gate", RuntimeError("below min_accuracy"))
        runs.record(settings, "r1")
        again = dag_tasks.dataset_changed(settings, params, stub.url, None)
        assert not again["changed"] and again["last_run"] == "r1"
        (root / "ronaldo" / "b.jpg").write_bytes(b"new" * 10)
        assert dag_tasks.dataset_changed(settings, params, stub.url, None)["changed"]
