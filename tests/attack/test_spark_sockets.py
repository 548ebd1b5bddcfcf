"""Spark's own network surface: a local-mode job, submitted exactly as the DAG submits its jobs
(the project's operator, the spark_default connection), listens on loopback only.

Spark's RPC has no authentication unless ``spark.authenticate`` is on: on a shared network, a
driver RPC, block manager or UI port on the machine's address is an open door for as long as
the job runs. An attacker on the network sees those ports: this test looks at what every process
of the job (spark-submit's JVM, the Python driver, its workers) is listening on, mid-job.
"""

from __future__ import annotations

import ipaddress
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.spark  # a real spark-submit, as the DAG runs it

PROBE = textwrap.dedent("""
    import os, sys, time
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    # a real job: tasks on the executor, a Python worker, blocks through the block manager
    rows = spark.sparkContext.parallelize(range(1000), 2).map(lambda x: x * x).sum()
    spark.range(1000).selectExpr("sum(id)").collect()
    with open(sys.argv[1] + ".tmp", "w") as fh:
        fh.write(spark.sparkContext.uiWebUrl or "")
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    deadline = time.time() + 120
    while not os.path.exists(sys.argv[2]) and time.time() < deadline:
        time.sleep(0.1)
    spark.stop()
""")


def _listening(root: psutil.Process) -> dict[tuple[str, int], str]:
    """Every listening TCP socket of ``root``'s descendants: (address, port) -> process."""
    found = {}
    for proc in root.children(recursive=True):
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found[(conn.laddr.ip, conn.laddr.port)] = " ".join(proc.cmdline()[:3])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)  # a Java socket on IPv6: ::ffff:127.0.0.1
    return (mapped or ip).is_loopback


@pytest.mark.parametrize("master", ["local[2]"])
def test_a_local_job_listens_on_loopback_only(tmp_path, monkeypatch, master):
    from imgclf.operators import spark_job
    from imgclf.settings import Settings

    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "probe.py").write_text(PROBE)
    monkeypatch.setenv("IMGCLF_SPARK_TASKS", str(tmp_path / "jobs"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_SPARK_DEFAULT", f'{{"conn_type": "spark", "host": "{master}"}}'
    )
    ready, done = tmp_path / "ready", tmp_path / "done"
    op = spark_job(Settings.from_env(), "probe", "probe.py", [str(ready), str(done)])
    errors: list[BaseException] = []

    def run() -> None:
        try:
            op.execute({})
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 240
        while not ready.exists() and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.exists(), f"the probe job never got going: {errors}"
        listening = _listening(psutil.Process())
    finally:
        done.write_text("")
        thread.join(timeout=120)
    assert not thread.is_alive() and not errors, errors
    ui_port = int(Path(ready).read_text().rsplit(":", 1)[1])
    ports = {port for _, port in listening}
    assert ui_port in ports, (ui_port, listening)  # the UI was on: it too is checked
    assert len(ports) >= 3, listening  # the driver's RPC, its block manager, the UI (+ py4j)
    exposed = {k: v for k, v in listening.items() if not _loopback(k[0])}
    assert not exposed, f"listening beyond loopback: {exposed}"
    print(f"listening sockets of the job: {sorted(listening)}")
