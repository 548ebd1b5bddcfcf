"""MLflow tracking and the Model Registry, for real, on a temporary SQLite store (no mocks)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgclf import tracking
from imgclf.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def settings(tmp_path_factory, seed_mlflow_store):
    home = seed_mlflow_store(tmp_path_factory.mktemp("mlflow-home"))
    return dataclasses.replace(Settings.from_env(), home=home, tracking_uri="", registry_uri="")


def _logged_model(settings, mlflow_run_id: str, tmp_path: Path) -> str:
    """A stand-in artifact for a logged model (the Spark flavor is tested with Spark)."""
    mlflow = tracking.client(settings)
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    mlflow.log_artifacts(mlflow_run_id, str(model), "model")
    return f"runs:/{mlflow_run_id}/model"


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


def test_a_failed_run_is_recorded_as_failed(settings):
    tracking.start_run(settings, "football_classifier", "manual__2", {})
    failure = {"task": "gate", "error": "0.5 < 0.8"}
    tracking.finish_run(settings, "manual__2", metrics=None, failure=failure, artifacts=[])
    rid = json.loads((settings.run_dir("manual__2") / "mlflow.json").read_text())
    run = tracking.client(settings).get_run(rid["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["failed_task"] == "gate"


def test_register_promote_rollback_and_an_identical_candidate(settings, tmp_path):
    rid = tracking.start_run(settings, "d", "manual__3", {})["mlflow_run_id"]
    source = _logged_model(settings, rid, tmp_path)
    v1, same = tracking.register(settings, source, rid, "key-1", {"accuracy": "0.9"})
    assert (v1, same) == ("1", None)
    assert tracking.register(settings, source, rid, "key-1", {}) == (None, "1")  # no duplicate
    v2, _ = tracking.register(settings, source, rid, "key-2", {"accuracy": "0.95"})
    tracking.promote(settings, v1, "first")
    tracking.promote(settings, v2, "better")
    assert tracking.champion(settings)["version"] == "2"
    assert tracking.champion(settings)["tags"]["previous_champion"] == "1"
    assert tracking.model_uri(settings, "champion") == "models:/football_classifier@champion"
    assert tracking.rollback(settings) == "1"
    assert tracking.champion(settings)["version"] == "1"
    with pytest.raises(KeyError, match="no earlier champion"):
        tracking.rollback(settings)
    with pytest.raises(KeyError, match="no version '42'"):
        tracking.version(settings, "42")


def _history(settings) -> list[str]:
    model = tracking.client(settings).get_registered_model(settings.registered_model)
    return json.loads(model.tags.get(tracking.HISTORY_TAG, "[]"))


def _in_processes(settings, calls: list[str]) -> None:
    """Each call in its own process, all at once (``promote N`` or ``rollback``)."""
    code = (
        "import sys, dataclasses, pathlib; from imgclf import tracking; "
        "from imgclf.settings import Settings; "
        "s = dataclasses.replace(Settings.from_env(), home=pathlib.Path(sys.argv[1]), "
        "tracking_uri='', registry_uri=''); "
        "tracking.promote(s, sys.argv[3], 'concurrent') if sys.argv[2] == 'promote' "
        "else tracking.rollback(s)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(settings.home), *call.split()], cwd=ROOT)
        for call in calls
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * len(procs)


def test_concurrent_promotes_and_rollbacks_lose_nothing(settings, tmp_path):
    rid = tracking.start_run(settings, "d", "manual__4", {})["mlflow_run_id"]
    source = _logged_model(settings, rid, tmp_path)
    made = [tracking.register(settings, source, rid, f"c-{i}", {})[0] for i in range(3)]
    tracking.promote(settings, made[2], "before")
    before = _history(settings)
    _in_processes(settings, [f"promote {v}" for v in made[:2]])
    after = _history(settings)
    assert after[: len(before)] == before and sorted(after[len(before) :]) == sorted(made[:2])
    assert tracking.champion(settings)["version"] == after[-1]  # the alias and its log agree
    _in_processes(settings, ["rollback", "rollback"])
    assert _history(settings) == after[:-2]  # each rollback took exactly one step back
    assert tracking.champion(settings)["version"] == after[-3] == made[2]


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
