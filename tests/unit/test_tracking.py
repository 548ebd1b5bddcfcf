"""MLflow tracking, for real, on a temporary SQLite store (no mocks)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from imgclf import tracking
from imgclf.settings import Settings


@pytest.fixture(scope="module")
def settings(tmp_path_factory, seed_mlflow_store):
    home = seed_mlflow_store(tmp_path_factory.mktemp("mlflow-home"))
    return dataclasses.replace(Settings.from_env(), home=home, tracking_uri="", registry_uri="")


def test_a_dag_run_is_one_mlflow_run_with_params_metrics_tags_and_artifacts(settings, tmp_path):
    params = {"model": "dlib-face", "tune_grid": {"reg_param": [0.1]}, "seed": 12}
    opened = tracking.start_run(settings, "football_classifier", "manual__1", params)
    again = tracking.start_run(settings, "football_classifier", "manual__1", params)
    assert again["mlflow_run_id"] == opened["mlflow_run_id"]  # a retried task finds it
    report = tmp_path / "report.html"
    report.write_text("<html>report</html>")
    metrics = {
        "accuracy": 0.9, "passed_gate": True, "candidate": "baseline", "featurizer": "f-avg",
        "featurized_images": 60, "dataset": {"fingerprint": "abc"}, "gate": {"reason": "ok"},
        "baseline": {"accuracy": 0.9, "accuracy_ci95": [0.7, 0.97], "roc_auc": 0.95,
                     "per_class": {"messi": {"precision": 1.0, "recall": 0.8, "f1": 0.89}},
                     "seconds": 12.5},
        "tuned": None,
    }  # fmt: skip
    url = tracking.finish_run(
        settings, "manual__1", metrics=metrics, failure=None, artifacts=[(report, None)]
    )
    assert url.endswith(f"/runs/{opened['mlflow_run_id']}")
    run = tracking.client(settings).get_run(opened["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["tune_grid"] == json.dumps({"reg_param": [0.1]})
    assert run.data.metrics["baseline_accuracy_wilson_low"] == 0.7
    assert run.data.metrics["baseline_messi_recall"] == 0.8
    assert run.data.tags["airflow_run_id"] == "manual__1"
    assert run.data.tags["dataset_fingerprint"] == "abc"
    names = [a.path for a in tracking.client(settings).list_artifacts(opened["mlflow_run_id"])]
    assert names == ["report.html"]


def test_the_experiment_is_a_classic_ml_experiment_for_mlflow_3s_ui(settings):
    mlflow = tracking.client(settings)
    experiment = mlflow.get_experiment(tracking.experiment_id(settings))
    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    mlflow.delete_experiment_tag(experiment.experiment_id, tracking.EXPERIMENT_KIND_TAG)
    tracking.experiment_id(settings)  # one made by older code gets it on first use
    again = mlflow.get_experiment(experiment.experiment_id)
    assert again.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_the_run_says_what_happened_to_the_registry(settings):
    tracking.start_run(settings, "football_classifier", "manual__5", {})
    registry = "identical to version 1 (same dataset, featurizer, params and code): " + (
        "no new version registered"
    )
    metrics = {
        "accuracy": 0.9, "passed_gate": True, "candidate": "baseline", "featurizer": "f",
        "gate": {"reason": "ok"}, "baseline": None, "tuned": None, "promoted_version": None,
        "champion_comparison": {"decision": "candidate 0.9 vs champion 1: promoted",
                                "registry": registry},
    }  # fmt: skip
    tracking.finish_run(settings, "manual__5", metrics=metrics, failure=None, artifacts=[])
    rid = json.loads((settings.run_dir("manual__5") / "mlflow.json").read_text())
    run = tracking.client(settings).get_run(rid["mlflow_run_id"])
    assert run.data.tags["registry"] == registry and run.data.tags["promoted_version"] == ""


def test_readable_time():
    assert tracking.readable_time(0) == "1970-01-01T00:00:00Z"
    assert tracking.readable_time("1764924247") == tracking.readable_time(1764924247000)
    assert tracking.readable_time("2026-12-05T08:44:07Z") == "2026-12-05T08:44:07Z"
    assert tracking.readable_time(None) == ""


def test_a_failed_run_is_recorded_as_failed(settings):
    tracking.start_run(settings, "football_classifier", "manual__2", {})
    failure = {"task": "gate", "error": "0.5 < 0.8"}
    tracking.finish_run(settings, "manual__2", metrics=None, failure=failure, artifacts=[])
    rid = json.loads((settings.run_dir("manual__2") / "mlflow.json").read_text())
    run = tracking.client(settings).get_run(rid["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["failed_task"] == "gate"


def test_the_fluent_api_leaves_the_process_environment_as_it_was(settings, monkeypatch):
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: once leaked, every later
    Settings.from_env() (and every child process) would use another store."""
    import os

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    with tracking._fluent(settings) as mlflow:
        assert mlflow.get_tracking_uri() == settings.mlflow_tracking_uri
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with tracking._fluent(settings):
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:9"
