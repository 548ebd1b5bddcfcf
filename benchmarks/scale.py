"""Benchmark: the whole DAG at 60, 600 and 6,000 images, side by side, in one run.

``make bench-scale`` (``python -m benchmarks.scale --sizes 60,600,6000``): for each size N it
makes an N-image dataset from ``../shared`` (``benchmarks.augment``: the 60 originals, then
deterministic augmented copies), serves it through the GitHub stand-in on 127.0.0.1, runs
``airflow dags test football_classifier`` from an empty data root, and prints one JSON line:
the DAG's wall time, each task's time (Airflow's own start/end), download files/s,
featurization images/s (train job, CNN pass only) and the time before it, the tune task and
its cross-validation, and the peak RSS of the Spark driver (JVM + Python driver) and of the
Python workers, sampled every 0.2 s. A last line puts the sizes side by side, with the
plain-Keras rate measured in the same run (``benchmarks.featurize``'s plain side on up to 600
of the images) before the first size and after each, and each size's featurization rate as a
ratio of the mean of the two measured around it.

At 60 images the baseline (~0.8) is below the default ``target_accuracy`` and the tuning
branch runs; augmented copies of 60 images are easy (baseline 1.0), so the sizes in
``--tune-at`` (default 6000) get 5 % label noise and ``target_accuracy`` 1.0: the tuning
branch runs at scale too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path

from benchmarks import augment
from imgclf.settings import PROJECT_ROOT, safe_name

LITE0 = PROJECT_ROOT.parent / "shared" / "models" / "efficientnet_lite0_imagenet_notop.keras"
NOISE = 0.05
PLAIN_IMAGES = 600


class PeakRss:
    """Peak resident memory of process trees' Spark drivers, executors (on a cluster) and Python
    workers (psutil), overall and per job (``by_job``: the driver's peak while
    ``spark_tasks/<job>.py`` ran). ``roots``: the trees' root processes (the DAG run; on a
    standalone cluster also its worker, whose children are the executors)."""

    def __init__(self, *roots: int, every: float = 0.2):
        self.roots, self.every = roots, every
        self.peak = {"driver_jvm": 0, "driver_python": 0, "driver": 0, "executor_jvm": 0,
                     "worker": 0, "workers": 0}  # fmt: skip
        self.by_job: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = psutil.Process(self.roots[0]).children(recursive=True)
            except psutil.Error:
                return
            for root in self.roots[1:]:
                with suppress(psutil.Error):
                    procs += psutil.Process(root).children(recursive=True)
            jvm = py = workers = worker = executors = 0
            jobs = set()
            seen = []
            for proc in procs:
                try:
                    cmd = " ".join(proc.cmdline())
                    seen.append((proc.pid, proc.ppid(), cmd, proc.memory_info().rss))
                except psutil.Error:
                    continue
            drivers = {
                pid for pid, _, cmd, _ in seen if "org.apache.spark.deploy.SparkSubmit" in cmd
            }
            backends = {pid for pid, _, cmd, _ in seen if "CoarseGrainedExecutorBackend" in cmd}
            for pid, ppid, cmd, rss in seen:
                # a JVM's child with its command line is a fork not yet exec'd (Hadoop's chmod,
                # the Python daemon's launch): its RSS is the parent's, shared
                if pid in drivers:
                    if ppid not in drivers:
                        jvm += rss
                elif pid in backends:
                    if ppid not in backends:
                        executors += rss
                elif "pyspark.daemon" in cmd or "pyspark.worker" in cmd:
                    workers += rss
                    worker = max(worker, rss)
                elif "spark_tasks/" in cmd:  # the job's Python driver (train.py, tune.py ...)
                    py += rss
                    jobs.add(cmd.split("spark_tasks/", 1)[1].split(".py", 1)[0])
            for key, value in (
                ("driver_jvm", jvm),
                ("driver_python", py),
                ("driver", jvm + py),
                ("executor_jvm", executors),
                ("worker", worker),
                ("workers", workers),
            ):
                self.peak[key] = max(self.peak[key], value)  # fmt: skip
            job = ",".join(sorted(jobs)) or "(no job)"
            self.by_job[job] = max(self.by_job.get(job, 0), jvm + py)
            self._stop.wait(self.every)


def _env(home: Path, airflow_home: Path, github_url: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "IMGCLF_HOME": str(home),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[*]"}),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # spark-submit and the project's interpreter first, as `make` puts them
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    if github_url:
        env["AIRFLOW_CONN_GITHUB_DEFAULT"] = json.dumps({"conn_type": "http", "host": github_url})
    return env


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _stub(root: Path, url_file: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [_bin("imgclf"), "github-stub", "--root", str(root), "--url-file", str(url_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        if url_file.is_file() and url_file.read_text().strip():
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the GitHub stand-in did not start")


def _task_seconds(airflow_home: Path) -> tuple[str, dict[str, float], float]:
    """The newest football_classifier run: its id, each task's seconds, the run's wall."""
    db = sqlite3.connect(airflow_home / "airflow.db")
    try:
        run_id, start, end = db.execute(
            "SELECT run_id, start_date, end_date FROM dag_run WHERE dag_id = ? "
            "ORDER BY id DESC LIMIT 1", ("football_classifier",),
        ).fetchone()  # fmt: skip
        rows = db.execute(
            "SELECT task_id, start_date, end_date FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? AND start_date IS NOT NULL",
            ("football_classifier", run_id),
        ).fetchall()
    finally:
        db.close()

    def seconds(a: str, b: str) -> float:
        return round((datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds(), 2)

    tasks = {task: seconds(s, e) for task, s, e in rows if e}
    return run_id, tasks, seconds(start, end)


def run_size(
    n: int, work: Path, airflow_home: Path, model: str, tune: bool, extra: dict,
    cluster: dict | None = None,
) -> dict:  # fmt: skip
    data, home = work / f"data-{n}", work / f"home-{n}"
    noise = NOISE if tune else 0.0
    made = augment.make_dataset(augment.DEFAULT_SOURCE, data, n, noisy_fraction=noise)
    home.mkdir(parents=True)
    url_file = work / f"stub-{n}.url"
    stub = _stub(data, url_file)
    conf = {"model": model, **({"target_accuracy": 1.0} if tune else {}), **extra}
    try:
        started = time.monotonic()
        with open(work / f"dag-{n}.log", "w") as log:
            env = _env(home, airflow_home, url_file.read_text().strip())
            env.update(cluster["env"] if cluster else {})
            proc = subprocess.Popen(
                [_bin("airflow"), "dags", "test", "football_classifier", "-c", json.dumps(conf)],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
            )  # fmt: skip
            roots = (proc.pid, cluster["worker_pid"]) if cluster else (proc.pid,)
            with PeakRss(*roots) as rss:
                code = proc.wait()
        wall = time.monotonic() - started
    finally:
        stub.kill()
        stub.wait()
    run_id, tasks, dag_wall = _task_seconds(airflow_home)
    run_dir = home / "runs" / safe_name(run_id)
    base = _json(run_dir / "baseline.json")
    tuned = _json(run_dir / "tuned.json")
    metrics = _json(run_dir / "metrics.json")
    phases = base.get("phases", {})
    featurized = base.get("featurized_images", 0)
    mib = 1 << 20
    return {
        "images": n,
        "ok": code == 0,
        "master": cluster["master"] if cluster else "local[*]",
        "label_noise": made["noisy"],
        "dag_wall_s": dag_wall,  # Airflow's run start to end
        "process_wall_s": round(wall, 2),  # + parsing the DAG, start-up, exit
        "tasks_s": tasks,
        "download_files_per_s": round(n / tasks["download"], 1) if tasks.get("download") else None,
        "featurize_images_per_s": round(featurized / phases["featurize"], 1)
        if phases.get("featurize")
        else None,
        "train_phases_s": phases,
        "before_featurize_s": round(
            sum(phases.get(k, 0) for k in ("session", "list_and_hash", "lookup", "list_new")), 2
        ),
        "tuned": bool(tuned),
        "tune_phases_s": tuned.get("phases"),
        "baseline_accuracy": base.get("accuracy"),
        "tuned_accuracy": tuned.get("accuracy"),
        "tuned_params": tuned.get("params"),
        "accuracy": metrics.get("accuracy"),
        "peak_rss_mib": {k: round(v / mib) for k, v in rss.peak.items()},
        "driver_peak_rss_mib_by_job": {k: round(v / mib) for k, v in sorted(rss.by_job.items())},
        "log": str(work / f"dag-{n}.log"),
    }


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def plain_keras(work: Path, model: str, n: int) -> dict:
    """Plain Keras (no Spark) on ``n`` of the images, as ``benchmarks.featurize`` measures it."""
    folder = work / "plain"
    if not folder.is_dir():
        augment.make_dataset(augment.DEFAULT_SOURCE, folder, n)
    env = {k: v for k, v in os.environ.items() if k != "IMGCLF_TF_THREADS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.featurize", "--plain-only", "--dir", str(folder),
         "--model", model, "--repeat", "2", "--images", str(n)],
        capture_output=True, text=True, check=True, env=env, cwd=PROJECT_ROOT,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"images": result["images"], "images_per_s": round(
        result["images"] / min(result["passes_s"]), 1)}  # fmt: skip


def side_by_side(results: list[dict], plain: list[float]) -> dict:
    """The sizes' results side by side. ``plain``: plain Keras's images/s measured before the
    first size and after each (``len(results) + 1`` values): each size's featurization is
    compared with the mean of the two measured around it, so that the host's drift over the
    run (~10 % seen) shows as the spread of the pair instead of as a change of the ratio."""
    if len(plain) != len(results) + 1:
        raise ValueError(f"{len(plain)} plain-Keras rates for {len(results)} sizes")
    around = [round((plain[i] + plain[i + 1]) / 2, 1) for i in range(len(results))]
    base = results[0]
    return {
        "side_by_side": True,
        "plain_keras_images_per_s": around,
        "plain_keras_before_after": [[plain[i], plain[i + 1]] for i in range(len(results))],
        "sizes": [r["images"] for r in results],
        "dag_wall_s": [r["dag_wall_s"] for r in results],
        "train_s": [r["tasks_s"].get("train") for r in results],
        "tune_s": [r["tasks_s"].get("tune") for r in results],
        "download_files_per_s": [r["download_files_per_s"] for r in results],
        "featurize_images_per_s": [r["featurize_images_per_s"] for r in results],
        "featurize_vs_plain_keras": [
            round(r["featurize_images_per_s"] / keras, 3)
            if r["featurize_images_per_s"] and keras
            else None
            for r, keras in zip(results, around, strict=True)
        ],
        "before_featurize_s": [r["before_featurize_s"] for r in results],
        "driver_peak_rss_mib": [r["peak_rss_mib"]["driver"] for r in results],
        "driver_rss_vs_first": [
            round(r["peak_rss_mib"]["driver"] / max(1, base["peak_rss_mib"]["driver"]), 2)
            for r in results
        ],
        "executor_peak_rss_mib": [r["peak_rss_mib"]["executor_jvm"] for r in results],
        "worker_peak_rss_mib": [r["peak_rss_mib"]["worker"] for r in results],
    }


@contextmanager
def spark_master(work: Path, standalone: bool):
    """``None`` (the DAG's default, ``local[*]``: one JVM is driver and executor), or a
    standalone cluster on 127.0.0.1 (``imgclf.testing.standalone``: a master, a worker with
    every core) and the environment that sends the DAG's jobs there, the project code shipped
    as ``--py-files``: the driver and the executor are then processes apart, measured apart."""
    if not standalone:
        yield None
        return
    import psutil

    from imgclf.settings import Settings
    from imgclf.testing.standalone import StandaloneCluster

    code = work / "imgclf-code.zip"
    subprocess.run([_bin("imgclf"), "package-code", "--out", str(code)], check=True,
                   capture_output=True)  # fmt: skip
    folder = work / "standalone"
    folder.mkdir(exist_ok=True)
    memory = Settings.from_env().spark_driver_memory  # the executor gets what local mode has
    offered = f"{psutil.virtual_memory().total >> 30}g"  # all of it: IMGCLF_SPARK_CONF may ask more
    with StandaloneCluster(folder, cores=os.cpu_count() or 1, memory=offered) as cluster:
        yield {
            "master": cluster.master,
            "worker_pid": cluster.worker_pid,
            "env": {
                "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(
                    {"conn_type": "spark", "host": cluster.master}
                ),
                "IMGCLF_PY_FILES": str(code),
                "IMGCLF_SPARK_CONF": json.dumps(
                    {
                        "spark.driver.host": "127.0.0.1",
                        "spark.executor.memory": memory,
                        **json.loads(os.environ.get("IMGCLF_SPARK_CONF") or "{}"),
                    }
                ),
            },
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    p.add_argument("--sizes", default="60,600,6000", help="comma-separated image counts")
    p.add_argument("--tune-at", default="6000",
                   help="sizes with 5%% label noise, target_accuracy 1.0: tuning runs")  # fmt: skip
    p.add_argument("--model", default=str(LITE0))
    p.add_argument("--conf", default="{}", help="more run parameters (JSON), e.g. the runtime")
    p.add_argument("--keep", type=Path, help="work here and keep it (default: a temp folder)")
    p.add_argument(
        "--standalone",
        action="store_true",
        help="run the jobs on a Spark standalone cluster on 127.0.0.1 (pyspark's "
        "own scripts), not local[*]: the driver's memory apart from the executor's",
    )
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    tune_at = {int(s) for s in args.tune_at.split(",") if s.strip()}
    work = args.keep or Path(tempfile.mkdtemp(prefix="imgclf-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    airflow_home = work / "airflow"
    airflow_home.mkdir(exist_ok=True)
    subprocess.run([_bin("airflow"), "db", "migrate"], env=_env(work / "none", airflow_home),
                   check=True, capture_output=True)  # fmt: skip
    try:
        results = []
        n_plain = min(PLAIN_IMAGES, max(sizes))
        plain = [plain_keras(work, args.model, n_plain)["images_per_s"]]
        with spark_master(work, args.standalone) as cluster:
            for n in sizes:
                conf = json.loads(args.conf)
                result = run_size(n, work, airflow_home, args.model, n in tune_at, conf, cluster)
                plain.append(plain_keras(work, args.model, n_plain)["images_per_s"])
                result["plain_keras_before_after"] = plain[-2:]
                print(json.dumps(result), flush=True)
                results.append(result)
        print(json.dumps(side_by_side(results, plain)), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
