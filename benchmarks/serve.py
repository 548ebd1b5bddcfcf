"""The prediction service's latency, throughput, cold start and memory, beside the batch path.

Trains one champion per runtime for real (Spark: the model file on the images, logistic
regression), registers them in a temporary registry, then for each runtime starts
``python -m imgclf.serving --version N`` in its own process on loopback and measures:

- ``cold_start_s``: process start to the first answered ``/predict``;
- single-image ``/predict`` latency (p50, p99, mean, ms) and requests/s at concurrency 1 and 4
  (each request a real photo, multipart, over HTTP);
- the server's peak RSS (VmHWM) after the runs; with ``--garbage N`` (OpenVINO), N garbage
  requests at concurrency 4: the status counts, good requests answered meanwhile, peak RSS
  before and after.

Beside them, the batch path: ``spark_tasks.predict`` (``imgclf predict``: a Spark session,
the featurizer, the classifier) scoring the same images with the same model, its wall time per
image. Prints one JSON line (and writes it to ``--out``).

``python -m benchmarks.serve --model M.keras [--images DIR] [--requests 200] [--garbage 1000]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from imgclf import spark_conf
from imgclf.settings import PROJECT_ROOT, Settings

DEFAULT_IMAGES = PROJECT_ROOT.parent / "shared" / "datasets" / "football"


def train(spark, settings: Settings, model: Path, images: Path, runtime: str) -> str:
    """A champion candidate of ``runtime``, logged with the serving flavor; its version."""
    from pyspark.ml.classification import LogisticRegression

    from imgclf import registry, tracking
    from spark_tasks import classification, image_files, serving
    from spark_tasks.featurizer import make_featurizer

    featurizer = make_featurizer(str(model), "avg", "none", 32, runtime)
    files = [str(p) for p in sorted(images.glob("*/*")) if p.is_file()]
    data = featurizer.transform(image_files.read_images(spark, files)).cache()
    indexer = classification.fit_label_indexer(data)
    classifier = classification.classifier_pipeline(indexer, LogisticRegression(maxIter=30)).fit(
        data
    )
    data.unpersist()
    run_id = f"bench_serve_{runtime}"
    info = tracking.start_run(settings, "football_classifier", run_id, {"runtime": runtime})
    uri = tracking.log_model(
        settings, run_id, classification.full_model(featurizer, classifier), serving
    )
    version, same = registry.register(settings, uri, info["mlflow_run_id"], run_id, {})
    return str(version or same)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def load_run(url: str, photos: list[bytes], n: int, concurrency: int) -> dict:
    def one(i: int) -> float:
        started = time.perf_counter()
        r = requests.post(url, files={"image": ("p.jpg", photos[i % len(photos)])}, timeout=60)
        took = time.perf_counter() - started
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
        return took

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        times = list(pool.map(one, range(n)))
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": n,
        "p50_ms": round(1000 * percentile(times, 50), 2),
        "p99_ms": round(1000 * percentile(times, 99), 2),
        "mean_ms": round(1000 * statistics.fmean(times), 2),
        "requests_per_s": round(n / wall, 2),
    }


def garbage_run(url: str, pid: int, good: bytes, n: int) -> dict:
    rng = random.Random(28)
    kinds = ["image/jpeg", "image/png", "application/octet-stream", "text/html", ""]
    counts: dict[str, int] = {}
    before = vm_kb(pid, "VmHWM")

    def one(i: int) -> int:
        size = rng.choice([0, 1, 17, 1000, 50_000, 400_000])
        body = (rng.randbytes(min(size, 4096)) * (size // 4096 + 1))[:size]
        if i % 3 == 0:
            body = good[:200] + body
        if i % 2:
            r = requests.post(url, files={"image": ("g", body)}, timeout=60)
        else:
            r = requests.post(url, data=body, headers={"Content-Type": kinds[i % 5]}, timeout=60)
        return r.status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        good_during = [
            requests.post(url, files={"image": ("m.jpg", good)}, timeout=60).status_code
            for _ in range(10)
        ]
        statuses = [f.result() for f in futures]
    for s in statuses:
        counts[str(s)] = counts.get(str(s), 0) + 1
    good_after = requests.post(url, files={"image": ("m.jpg", good)}, timeout=60).status_code
    return {
        "requests": n,
        "seconds": round(time.perf_counter() - started, 2),
        "statuses": counts,
        "good_during": good_during,
        "good_after": good_after,
        "peak_rss_mb_before": round(before / 1024, 1),
        "peak_rss_mb_after": round(vm_kb(pid, "VmHWM") / 1024, 1),
    }


def serve(
    settings: Settings, version: str, photos: list[bytes], n: int, garbage: int, log: Path
) -> dict:
    port = free_port()
    env = {**os.environ, "IMGCLF_HOME": str(settings.home)}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(key, None)
    url = f"http://127.0.0.1:{port}/predict"
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imgclf.serving", "--port", str(port), "--version", version],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()[-3000:])
            try:
                r = requests.post(url, files={"image": ("p.jpg", photos[0])}, timeout=5)
                if r.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.perf_counter() - started > 120:
                raise RuntimeError("no answer in 120 s")
            time.sleep(0.02)
        cold = time.perf_counter() - started
        load_run(url, photos, 20, 1)  # warm-up, not counted
        out = {
            "cold_start_s": round(cold, 2),
            "c1": load_run(url, photos, n, 1),
            "c4": load_run(url, photos, n, 4),
            "peak_rss_mb": round(vm_kb(proc.pid, "VmHWM") / 1024, 1),
        }
        if garbage:
            out["garbage"] = garbage_run(url, proc.pid, photos[0], garbage)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def batch(settings: Settings, version: str, images: Path, tmp: Path) -> dict:
    """``imgclf predict``'s path (spark-submit job module, its own Spark session)."""
    env = {**os.environ, "IMGCLF_HOME": str(settings.home)}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "spark_tasks.predict", "--images", str(images),
         "--model-uri", f"models:/{settings.registered_model}/{version}",
         "--out", str(tmp / "batch.csv")],
        env=env, capture_output=True, text=True, check=False, timeout=1200,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "images": summary["images"],
        "wall_s": round(wall, 2),
        "per_image_ms": round(1000 * wall / summary["images"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=__doc__)
    p.add_argument("--model", type=Path, required=True, help="a .keras feature extractor")
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    p.add_argument("--requests", type=int, default=200, help="per concurrency level")
    p.add_argument("--garbage", type=int, default=1000)
    p.add_argument("--runtimes", default="tensorflow,openvino")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    args.model, args.images = args.model.resolve(), args.images.resolve()

    from pyspark.sql import SparkSession

    from spark_tasks.session import use_this_interpreter_for_workers

    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    os.environ["IMGCLF_HOME"] = str(tmp / "home")
    settings = dataclasses.replace(
        Settings.from_env(), home=tmp / "home", tracking_uri="", registry_uri=""
    )
    try:
        use_this_interpreter_for_workers()
        spark = (
            SparkSession.builder.master("local[2]")
            .config(map=spark_conf.job_conf(settings))
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
        runtimes = args.runtimes.split(",")
        versions = {rt: train(spark, settings, args.model, args.images, rt) for rt in runtimes}
        spark.stop()
        photos = [p.read_bytes() for p in sorted(args.images.glob("*/*")) if p.is_file()]
        result: dict = {
            "benchmark": "serve",
            "model": args.model.name,
            "images": len(photos),
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "server": {},
        }
        for rt, version in versions.items():
            result["server"][rt] = serve(
                settings, version, photos, args.requests,
                args.garbage if rt == "openvino" else 0, tmp / f"serve-{rt}.log",
            )  # fmt: skip
        result["batch_predict"] = batch(settings, versions[runtimes[0]], args.images, tmp)
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    line = json.dumps(result)
    print(line)
    if args.out:
        args.out.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
