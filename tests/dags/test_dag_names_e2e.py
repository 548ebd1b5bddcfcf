"""The name rule end to end: real ``dag.test()`` runs (real Airflow, HTTP) on a remote holding
names Spark would skip or misread: refused by name at download (nothing trained on a partial
dataset). The happy path, a run that trains on every other kind of odd name (``ODD``), is the
Spark standalone DAG run in tests/dags/test_dag_standalone.py, whose files carry these names."""

from __future__ import annotations

import json
import shutil

import pytest

from imgclf.testing.github_stub import GitHubStub
from tests.dags.conftest import run_dag, run_dir
from tests.fixtures_images import make_images

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

ODD = ["a b.jpg", "100%.jpg", "#1.jpg", "a,b.jpg", "x=y.jpg", "l'été.jpg", "-x.jpg", "日本.jpg"]


def _conf(model, classes=None) -> dict:
    return {
        "model": str(model), "min_images_per_class": 6, "cv_folds": 2, "target_accuracy": 0.0,
        "min_accuracy": 0.0, "classes": classes or {"red": "CH13/football/red",
                                                    "blue": "CH13/football/blue"},
    }  # fmt: skip


def _failure(home, run_id) -> dict:
    return json.loads((run_dir(home, run_id) / "failure.json").read_text())


def _last_run_id(home) -> str:
    runs = sorted((home / "runs").glob("*/failure.json"), key=lambda p: p.stat().st_mtime)
    return runs[-1].parent.name


def test_names_spark_would_misread_are_refused_by_name_at_download(
    airflow_db, tiny_model, tmp_path, monkeypatch, seed_mlflow_store
):
    remote = make_images(tmp_path / "remote")
    for name in ("_x.jpg", "[x].jpg", "a:b.jpg"):
        shutil.copyfile(next((remote / "red").glob("*.jpg")), remote / "red" / name)
    home = seed_mlflow_store(tmp_path / "home")
    with GitHubStub(remote) as stub:
        state, metrics = run_dag(monkeypatch, home, stub.url, _conf(tiny_model))
    assert state == "failed" and metrics is None
    failure = _failure(home, _last_run_id(home))
    assert failure["task"] == "download"
    assert "'[x].jpg' contains [ ], which Spark reads as a glob pattern" in failure["error"]
    assert not (home / "raw").exists()  # nothing downloaded, nothing trained
    with GitHubStub(remote) as stub:  # a class Spark would drop whole: refused by the first task
        conf = _conf(tiny_model, {"_messi": "CH13/football/red", "blue": "CH13/football/blue"})
        state, _ = run_dag(monkeypatch, home, stub.url, conf)
    failure = _failure(home, _last_run_id(home))
    assert state == "failed" and failure["task"] == "validate_params"
    assert "class name '_messi' starts with '_'" in failure["error"]
