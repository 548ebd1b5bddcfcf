from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgclf.config import safe_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_db():
    """``airflow db migrate`` once for the session (the embedded SQLite database)."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        capture_output=True, text=True, timeout=600, env=os.environ.copy(), check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


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
