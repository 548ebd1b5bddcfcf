"""The whole DAG with dag.test(): real Airflow (SQLite), real spark-submit, real Keras, real HTTP.

GitHub is the only stand-in (it cannot exist here): a local server that answers like its REST
API. The real-data tests use ../shared; the synthetic test makes its own images and model and
always runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgclf.config import safe_name
from imgclf.registry import Registry
from imgclf.testing.github_stub import GitHubStub
from tests.dags.conftest import load_dag
from tests.fixtures_images import make_images, make_tiny_model

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

# a small grid that still holds the reference run's tuned params
SMALL_GRID = {"reg_param": [0.05, 0.5], "elastic_net_param": [0.3], "max_iter": [15]}


def run_dag(monkeypatch, home: Path, github_url: str, conf: dict):
    """Trigger one run; return (state, metrics or None)."""
    monkeypatch.setenv("IMGCLF_HOME", str(home))
    monkeypatch.setenv(
        "AIRFLOW_CONN_GITHUB_DEFAULT", json.dumps({"conn_type": "http", "host": github_url})
    )
    dag = load_dag()  # re-parse: the DAG reads IMGCLF_HOME at parse time
    dr = dag.test(run_conf=conf)
    path = run_dir(home, dr.run_id) / "metrics.json"
    return str(dr.state), (json.loads(path.read_text()) if path.is_file() else None)


def run_dir(home: Path, run_id: str) -> Path:
    return home / "runs" / safe_name(run_id)


@pytest.fixture(scope="module")
def football_stub(shared):
    with GitHubStub(shared / "datasets" / "football") as stub:
        yield stub


@pytest.fixture(scope="module")
def real_home(tmp_path_factory):
    return tmp_path_factory.mktemp("real-home")


@pytest.fixture(scope="module")
def first_run(airflow_db, football_stub, lite0, real_home):
    mp = pytest.MonkeyPatch()
    try:
        yield run_dag(mp, real_home, football_stub.url, {
            "model": str(lite0), "target_accuracy": 1.0, "tune_grid": SMALL_GRID,
        })  # fmt: skip
    finally:
        mp.undo()


@pytest.mark.shared
def test_real_images_tuned_run_featurizes_60_and_promotes(first_run, real_home):
    state, m = first_run
    assert state == "success"
    assert m["passed_gate"] is True and m["candidate"] == "tuned"
    assert m["featurized_images"] == 60  # every image through the CNN exactly once
    assert m["tuned"]["featurized_images"] == 0  # tuning reused the stored features
    assert (m["n_train"], m["n_test"]) == (36, 24)
    assert m["baseline"]["confusion_matrix"] and len(m["baseline"]["labels"]) == 2
    assert m["tuned"]["params"] in (
        {"regParam": 0.05, "elasticNetParam": 0.3, "maxIter": 15},
        {"regParam": 0.5, "elasticNetParam": 0.3, "maxIter": 15},
    )
    assert len(m["tuned"]["cv"]["grid"]) == 2
    assert 0.0 <= m["accuracy"] <= 1.0 and m["accuracy"] == m["tuned"]["accuracy"]
    registry = Registry(real_home / "models")
    assert registry.champion() == "v0001"
    assert registry.info("v0001")["accuracy"] == m["accuracy"]


@pytest.mark.shared
def test_rerun_with_high_baseline_target_skips_tuning_and_featurizes_nothing(
    first_run, monkeypatch, football_stub, lite0, real_home
):
    state, m = run_dag(monkeypatch, real_home, football_stub.url, {
        "model": str(lite0), "target_accuracy": 0.0, "min_accuracy": 0.5,
    })  # fmt: skip
    assert state == "success"
    assert m["tuned"] is None and m["candidate"] == "baseline"
    assert m["featurized_images"] == 0
    assert Registry(real_home / "models").champion() == "v0002"


@pytest.mark.shared
def test_gate_fails_the_run_below_min_accuracy_and_promotes_nothing(
    first_run, monkeypatch, football_stub, lite0, real_home
):
    before = Registry(real_home / "models").versions()
    champion = Registry(real_home / "models").champion()
    state, m = run_dag(monkeypatch, real_home, football_stub.url, {
        "model": str(lite0), "target_accuracy": 0.0, "min_accuracy": 0.99,
    })  # fmt: skip
    assert state == "failed"
    assert m["passed_gate"] is False and "fails the gate" in m["gate"]["reason"]
    assert Registry(real_home / "models").versions() == before
    assert Registry(real_home / "models").champion() == champion


def test_synthetic_run_without_shared(airflow_db, monkeypatch, tmp_path):
    """Images and a small Keras model made here: the whole DAG runs with no ../shared."""
    remote = make_images(tmp_path / "remote", per_class=8)
    model = make_tiny_model(tmp_path / "tiny.keras")
    home = tmp_path / "home"
    with GitHubStub(remote, repo="acme/pics", ref="main", prefix="data") as stub:
        state, m = run_dag(monkeypatch, home, stub.url, {
            "model": str(model), "repo": "acme/pics", "ref": "main",
            "classes": {"red": "data/red", "blue": "data/blue"}, "min_images_per_class": 8,
            "test_fraction": 0.25, "cv_folds": 2, "min_accuracy": 0.5, "target_accuracy": 1.0,
            "tune_grid": {"reg_param": [0.01], "elastic_net_param": [0.0], "max_iter": [20]},
        })  # fmt: skip
    assert state == "success", m
    assert m["featurized_images"] == 16
    assert (m["n_train"], m["n_test"]) == (12, 4)
    assert m["tuned"] is not None
    assert Registry(home / "models").champion() == "v0001"
    assert (home / "raw" / "red").is_dir() and len(list((home / "raw" / "red").iterdir())) == 8
