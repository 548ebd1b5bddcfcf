"""A real Spark standalone cluster on 127.0.0.1: a master and one worker, started with pyspark's
own ``spark-class`` scripts (what the compose file's ``spark-master``/``spark-worker`` run), for
the tests and ``benchmarks.scale --standalone``. Everything listens on 127.0.0.1 only; every wait is
bounded; the processes are stopped (their whole process groups) on exit, pass or fail."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def wait_for(what: str, check, seconds: float = 90.0, alive=()):
    """``check()``'s first truthy result, polled every 0.5 s for at most ``seconds``; fails at
    once if a process of ``alive`` has exited."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:  # bounded
        for proc in alive:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: {proc.args[1]} exited with {proc.returncode}")
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError) as exc:  # not listening yet, or a half-written page
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {seconds:.0f} s ({last})")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (its children too, e.g. a worker's executors, even if the
    leader has exited), SIGKILL after 20 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class Cluster:
    master: str  # spark://127.0.0.1:<port>
    status: str  # the master's JSON status page
    work: Path  # logs; the worker's work dir is work/"work"
    worker_pid: int  # the worker's process: executors are its children


class StandaloneCluster:
    """``with StandaloneCluster(work, cores=2, memory="6g") as cluster: ...``"""

    def __init__(self, work: Path, cores: int = 2, memory: str = "6g"):
        self.work, self.cores, self.memory = Path(work), cores, memory
        self._stack = ExitStack()

    def __enter__(self) -> Cluster:
        port, ui, worker_ui = free_port(), free_port(), free_port()
        import pyspark

        env = {
            **os.environ,
            # pyspark's own distribution unless SPARK_HOME says otherwise: spark-class
            # would ask whatever python is first on PATH
            "SPARK_HOME": os.environ.get("SPARK_HOME") or str(Path(pyspark.__file__).parent),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(self.work),
        }
        stack = self._stack
        try:
            master_log = stack.enter_context(open(self.work / "master.log", "w"))
            worker_log = stack.enter_context(open(self.work / "worker.log", "w"))
            master = subprocess.Popen(
                [BIN / "spark-class", "org.apache.spark.deploy.master.Master", "--host",
                 "127.0.0.1", "--port", str(port), "--webui-port", str(ui)],
                env=env, stdout=master_log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            stack.callback(stop, master)
            status = f"http://127.0.0.1:{ui}/json/"
            wait_for("spark master", lambda: get_json(status), alive=[master])
            worker = subprocess.Popen(
                [BIN / "spark-class", "org.apache.spark.deploy.worker.Worker",
                 f"spark://127.0.0.1:{port}", "--host", "127.0.0.1", "--cores", str(self.cores),
                 "--memory", self.memory, "--webui-port", str(worker_ui),
                 "--work-dir", str(self.work / "work")],
                env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            stack.callback(stop, worker)  # stopped first (callbacks run last in, first out)
            wait_for(
                "spark worker",
                lambda: get_json(status).get("aliveworkers", 0) >= 1,
                alive=[master, worker],
            )
        except BaseException:
            stack.close()
            raise
        return Cluster(f"spark://127.0.0.1:{port}", status, self.work, worker.pid)

    def __exit__(self, *exc) -> None:
        self._stack.close()
