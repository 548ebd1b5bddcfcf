"""A stalled GitHub fails the download task at once (no retry), in one line (real ``dag.test``).

The DAG retries its download task only for failures a retry can help; a remote that accepts
the connection and never answers is not one of them, so the task must fail on its first try
with the line that names the host and what was slow, and the run's failure record must say
so (what ``make run`` prints last). The grace is set small, as a user would, so that this
takes seconds.
"""

from __future__ import annotations

import json
import time

from tests.attack.hostile_github import HostileServer, Reply
from tests.dags.conftest import load_dag, run_dir


def test_a_stalled_github_fails_the_download_task_at_once_in_one_line(
    airflow_db, tiny_model, monkeypatch, tmp_path
):
    monkeypatch.setenv("IMGCLF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IMGCLF_GITHUB_GRACE", "1")
    with HostileServer() as github:
        github.default = Reply.stall(max_seconds=60)
        monkeypatch.setenv(
            "AIRFLOW_CONN_GITHUB_DEFAULT", json.dumps({"conn_type": "http", "host": github.url})
        )
        dag = load_dag()  # re-parse: the DAG reads its settings at parse time
        started = time.monotonic()
        dr = dag.test(run_conf={"model": str(tiny_model)})  # no weights to fetch here
        took = time.monotonic() - started
    assert str(dr.state) == "failed"
    download = next(ti for ti in dr.get_task_instances() if ti.task_id == "download")
    assert str(download.state) == "failed" and download.try_number == 1  # not up for retry
    assert took < 60, f"{took:.0f} s"  # a retry would have waited its 30 s delay first
    failure = json.loads((run_dir(tmp_path / "home", dr.run_id) / "failure.json").read_text())
    assert failure["task"] == "download"
    error = failure["error"]
    assert "\n" not in error and "Traceback" not in error
    assert f"127.0.0.1:{github.port}" in error and "accepted the connection" in error
    assert "cannot reach" not in error
