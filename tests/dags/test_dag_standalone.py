"""The same DAG on a real Spark standalone cluster: a master and a worker started with pyspark's
own spark-class scripts on 127.0.0.1, the project code shipped to executors as --py-files.
The cluster is stopped at the end, pass or fail."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from imgclf.config import safe_name
from imgclf.testing.github_stub import GitHubStub
from tests.dags.conftest import run_dag
from tests.fixtures_images import make_images, make_tiny_model

pytestmark = [pytest.mark.e2e, pytest.mark.spark]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _wait(what: str, check, seconds: float = 90.0):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:  # bounded
        try:
            result = check()
            if result:
                return result
        except OSError as exc:
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {seconds:.0f} s ({last})")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("spark-standalone")
    port, ui, worker_ui = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(work)}
    procs = []
    logs = [open(work / "master.log", "w"), open(work / "worker.log", "w")]  # noqa: SIM115
    try:
        procs.append(subprocess.Popen(
            [BIN / "spark-class", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", str(port), "--webui-port", str(ui)],
            env=env, stdout=logs[0], stderr=subprocess.STDOUT,
            start_new_session=True,
        ))  # fmt: skip
        status = f"http://127.0.0.1:{ui}/json/"
        _wait("spark master", lambda: _json(status))
        procs.append(subprocess.Popen(
            [BIN / "spark-class", "org.apache.spark.deploy.worker.Worker",
             f"spark://127.0.0.1:{port}", "--host", "127.0.0.1", "--cores", "2",
             "--memory", "6g", "--webui-port", str(worker_ui), "--work-dir", str(work / "work")],
            env=env, stdout=logs[1], stderr=subprocess.STDOUT,
            start_new_session=True,
        ))  # fmt: skip
        _wait("spark worker", lambda: _json(status).get("aliveworkers", 0) >= 1)
        yield {"master": f"spark://127.0.0.1:{port}", "status": status, "work": work}
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for fh in logs:
            fh.close()


def test_dag_runs_on_the_standalone_cluster(airflow_db, cluster, monkeypatch, tmp_path):
    code = tmp_path / "imgclf-code.zip"
    subprocess.run([BIN / "imgclf", "package-code", "--out", str(code)], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    monkeypatch.setenv(
        "AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": cluster["master"]})
    )
    monkeypatch.setenv("IMGCLF_PY_FILES", str(code))
    monkeypatch.setenv(
        "IMGCLF_SPARK_CONF",
        json.dumps({"spark.driver.host": "127.0.0.1", "spark.executor.memory": "2g"}),
    )
    remote = make_images(tmp_path / "remote", per_class=8)
    model = make_tiny_model(tmp_path / "tiny.keras")
    with GitHubStub(remote, repo="acme/pics", ref="main", prefix="data") as stub:
        state, m = run_dag(monkeypatch, tmp_path / "home", stub.url, {
            "model": str(model), "repo": "acme/pics", "ref": "main",
            "classes": {"red": "data/red", "blue": "data/blue"}, "min_images_per_class": 8,
            "test_fraction": 0.25, "cv_folds": 2, "min_accuracy": 0.5, "target_accuracy": 0.0,
        })  # fmt: skip
    assert state == "success", m
    assert m["featurized_images"] == 16 and m["tuned"] is None  # tuning: tests/dags/test_dag_e2e
    assert m["promoted_version"] == "1"
    run = safe_name(m["run_id"])
    apps = {a["name"]: a for a in _json(cluster["status"])["completedapps"]}
    # every job is built by the one operator factory (imgclf.operators.spark_job); the two that
    # run here are the one that featurizes on executors and the one that loads the candidate
    # and logs it to MLflow with the Spark flavor
    for name in (f"imgclf-train-{run}", f"imgclf-challenge-{run}"):
        assert name in apps, sorted(apps)
        assert apps[name]["state"] == "FINISHED"
        assert apps[name]["cores"] >= 1  # executors were granted on the worker
    # executors ran on the worker and got the project code as --py-files
    logs = "".join(
        p.read_text(errors="replace") for p in (cluster["work"] / "work").rglob("stderr")
    )
    assert "imgclf-code.zip" in logs
