"""The same DAG on a real Spark standalone cluster: a master and a worker started with pyspark's
own spark-class scripts on 127.0.0.1, the project code shipped to executors as --py-files, on
data no classifier can learn: the run fails the gate, and nothing is promoted. The cluster is
stopped at the end, pass or fail.

Its files carry every kind of odd name Spark reads (spaces, %, #, commas, =, quotes, a leading
dash, non-ASCII): the run also proves each of them is trained on (manifest = trained + failed,
failed empty), which is why this one DAG run carries the name rule's happy path (the refusals
are in tests/dags/test_dag_names_e2e.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgclf import registry
from imgclf.settings import safe_name
from imgclf.testing.github_stub import GitHubStub
from imgclf.testing.standalone import StandaloneCluster, get_json
from tests.dags.conftest import artifacts, mlflow_run, run_dag, run_dir, settings
from tests.dags.test_dag_names_e2e import ODD
from tests.fixtures_images import make_tiny_model

pytestmark = [pytest.mark.e2e, pytest.mark.spark]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with StandaloneCluster(tmp_path_factory.mktemp("spark-standalone"), cores=2, memory="6g") as c:
        yield {"master": c.master, "status": c.status, "work": c.work}


def _indistinguishable(root: Path, per_class: int) -> Path:
    """Two classes of the same pixels (distinct files: only a PNG text chunk differs), so no
    classifier can beat chance: a run on them must fail the gate. Named with the odd names of
    ``ODD`` (each once per class), the rest plainly."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    pixels = Image.new("RGB", (48, 40), (120, 140, 160))
    for label in ("red", "blue"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            info = PngInfo()
            info.add_text("n", f"{label}{i}")
            names = ODD if label == "red" else ODD[::-1]
            stem = names[i].rsplit(".", 1)[0] if i < len(names) else f"{label}{i}"
            pixels.save(root / label / f"{stem}.png", pnginfo=info)
    return root


def test_a_run_on_the_cluster_that_fails_the_gate_promotes_nothing(
    airflow_db, cluster, monkeypatch, tmp_path, seed_mlflow_store
):
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
    remote = _indistinguishable(tmp_path / "remote", per_class=8)
    model = make_tiny_model(tmp_path / "tiny.keras")
    home = seed_mlflow_store(tmp_path / "home")
    with GitHubStub(remote, repo="acme/pics", ref="main", prefix="data") as stub:
        state, m = run_dag(monkeypatch, home, stub.url, {
            "model": str(model), "repo": "acme/pics", "ref": "main",
            "classes": {"red": "data/red", "blue": "data/blue"}, "min_images_per_class": 8,
            "test_fraction": 0.25, "min_accuracy": 0.9, "target_accuracy": 0.0,
            # no fit can learn these: a short one (each iteration is a job on the cluster)
            "max_iter": 5,
        })  # fmt: skip
    assert state == "failed", m
    # featurized on the cluster's executors, then stopped at the gate: one prediction for all
    assert m["featurized_images"] == 16 and m["tuned"] is None
    assert m["accuracy"] == 0.5 and m["passed_gate"] is False
    assert "fails the gate" in m["gate"]["reason"]
    # every file with an odd name was downloaded and trained on: none skipped, none failed
    manifest = json.loads((home / "raw" / "manifest.json").read_text())
    names = {e["name"] for e in manifest["files"]}
    assert {n.rsplit(".", 1)[0] + ".png" for n in ODD} <= names and len(manifest["files"]) == 16
    assert m["failed_images"] == []
    assert m["n_train"] + m["n_test"] == len(manifest["files"])  # every file, none skipped
    tested = {p["path"].rsplit("/", 1)[1] for p in m["baseline"]["predictions"]}
    assert len(tested) == m["n_test"] and tested <= names
    # nothing promoted or even registered; the run is recorded, failed, with its report
    assert registry.versions(settings(home)) == [] and registry.champion(settings(home)) is None
    assert "FAILED" in (run_dir(home, m["run_id"]) / "report.html").read_text()
    run = mlflow_run(home, m["run_id"])
    assert run.info.status == "FAILED" and run.data.tags["failed_task"] == "gate"
    assert "report.html" in artifacts(home, run)
    # the job was built by the one operator factory (imgclf.operators.spark_job) and ran on the
    # cluster; nothing ran after the gate
    apps = {a["name"]: a for a in get_json(cluster["status"])["completedapps"]}
    assert sorted(apps) == [f"imgclf-train-{safe_name(m['run_id'])}"], sorted(apps)
    train = apps[f"imgclf-train-{safe_name(m['run_id'])}"]
    assert train["state"] == "FINISHED" and train["cores"] >= 1  # executors were granted
    # executors ran on the worker and got the project code as --py-files
    logs = "".join(
        p.read_text(errors="replace") for p in (cluster["work"] / "work").rglob("stderr")
    )
    assert "imgclf-code.zip" in logs
    # each executor JVM was started with the bound on cached temporary direct buffers (the
    # worker writes its command line first in its stderr)
    commands = [line for line in logs.splitlines() if line.startswith("Spark Executor Command:")]
    assert commands and all("-Djdk.nio.maxCachedBufferSize=262144" in c for c in commands), commands
