from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from imgclf import tracking
from imgclf.settings import Settings, safe_name
from imgclf.testing.github_stub import GitHubStub

ROOT = Path(__file__).resolve().parents[2]


def load_dag(dag_id: str = "football_classifier"):
    """Parse the DAG folder afresh (picks up IMGCLF_HOME and connections from the env now)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags[dag_id]


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


def settings(home: Path) -> Settings:
    """What the DAG's tasks used: the embedded MLflow store under ``home``."""
    import dataclasses

    return dataclasses.replace(Settings.from_env(), home=home, tracking_uri="", registry_uri="")


def mlflow_run(home: Path, run_id: str):
    info = json.loads((run_dir(home, run_id) / "mlflow.json").read_text())
    return tracking.client(settings(home)).get_run(info["mlflow_run_id"])


def artifacts(home: Path, run) -> set[str]:
    found = tracking.client(settings(home)).list_artifacts(run.info.run_id)
    names = {a.path for a in found}
    for folder in [a.path for a in found if a.is_dir]:
        names |= {
            a.path for a in tracking.client(settings(home)).list_artifacts(run.info.run_id, folder)
        }
    return names


# a small grid that still holds the reference run's tuned params
SMALL_GRID = {"reg_param": [0.05, 0.5], "elastic_net_param": [0.3], "max_iter": [15]}


@pytest.fixture(scope="session")
def remote(football, tmp_path_factory):
    """The remote repository's folders: a copy of ../shared's images (a test adds one)."""
    folder = tmp_path_factory.mktemp("remote") / "football"
    shutil.copytree(football, folder)
    return folder


@pytest.fixture(scope="session")
def football_stub(remote):
    with GitHubStub(remote) as stub:
        yield stub


@pytest.fixture(scope="session")
def real_home(tmp_path_factory):
    return tmp_path_factory.mktemp("real-home")


@pytest.fixture(scope="session")
def first_run(airflow_db, football_stub, lite0, real_home):
    """The tuned real-image DAG run (evidence job included), once per session: ``(state,
    metrics)``. Tests of different aspects of one run share it (tests/dags/test_dag_e2e.py);
    a test that writes to ``real_home`` or ``remote`` says what it changes."""
    mp = pytest.MonkeyPatch()
    try:
        return run_dag(mp, real_home, football_stub.url, {
            "model": str(lite0), "runtime": "openvino", "target_accuracy": 1.0,
            "tune_grid": SMALL_GRID, "cv_folds": 2,  # the choice itself: tests/spark
        })  # fmt: skip
    finally:
        # at once, not at the session's end: the run's data root and connection must not
        # stay in the environment of the worker's later tests
        mp.undo()
