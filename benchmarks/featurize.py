"""Benchmark: the Spark featurizer against plain Keras on the same images, in one run.

``make bench`` (``python -m benchmarks.featurize --images N --model NAME_OR_PATH``) prints
one JSON object with
``plain_images_per_s``, ``spark_images_per_s``, ``ratio`` (spark / plain) and each side's fixed
overhead. Throughput is steady state, decoding and inference included on both sides, the best
of ``--repeat`` passes over the N images on each side (every pass is printed too); the fixed
overhead (TensorFlow import and model load for plain Keras; session start, Python worker start,
TensorFlow import and model load in the workers for Spark) is reported apart.

The Spark side runs once per featurizer ``--runtimes`` (default ``tensorflow,openvino``; the
``spark_*`` fields are TensorFlow's): ``runtimes`` holds each one's images/s, passes, warm-up
(for OpenVINO with the conversion unless ``ir_cached_before``) and the max abs difference of
its features from TensorFlow's on the same images;
``spark_openvino_images_per_s`` and ``openvino_max_abs_diff`` repeat OpenVINO's.

Plain Keras runs in a child process so that its TensorFlow import is measured cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imgclf import spark_conf
from imgclf.github import IMAGE_EXTENSIONS
from imgclf.settings import PROJECT_ROOT, Settings


def _source_files(source: Path | None) -> list[Path]:
    candidates = [source] if source else [PROJECT_ROOT.parent / "shared" / "datasets" / "football"]
    for folder in candidates:
        if folder and folder.is_dir():
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            if files:
                return files
    return []


def make_images(n: int, dest: Path, source: Path | None) -> str:
    """``n`` image files under ``dest/<class>/``: copies of real images, or synthetic ones."""
    files = _source_files(source)
    if files:
        for i in range(n):
            src = files[i % len(files)]
            (dest / src.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / src.parent.name / f"{i:05d}_{src.name}")
        return f"{len(files)} real images from {files[0].parent.parent}, cycled"
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (dest / "synthetic").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = rng.integers(0, 255, (168, 300, 3), dtype=np.uint8)
        Image.fromarray(arr).save(dest / "synthetic" / f"{i:05d}.jpg", quality=90)
    return "synthetic 300x168 JPEGs"


def plain(args: argparse.Namespace) -> dict:
    """Plain Keras in this process: read, decode, batch, infer."""
    t0 = time.perf_counter()
    import numpy as np

    from spark_tasks.featurizer import cached_model
    from spark_tasks.model_input import decode

    loaded, infer = cached_model(args.model, "avg", "none")
    files = sorted(p for p in args.dir.rglob("*") if p.is_file())
    infer(loaded.preprocess(np.zeros((1, loaded.size[1], loaded.size[0], 3), np.float32)))
    t1 = time.perf_counter()
    passes = []
    for _ in range(args.repeat):
        start, n = time.perf_counter(), 0
        for i in range(0, len(files), args.batch_size):
            chunk = files[i : i + args.batch_size]
            batch = np.stack([decode(p.read_bytes(), loaded.size) for p in chunk])
            out = np.asarray(infer(loaded.preprocess(batch)))
            n += len(out)
        passes.append(time.perf_counter() - start)
    return {"images": n, "fixed_s": t1 - t0, "passes_s": passes}


def _ir_cached(model: str) -> bool | None:
    """Whether OpenVINO's IR of ``model`` is in the cache already (``None``: not applicable)."""
    from spark_tasks import openvino_models

    try:
        key = openvino_models.cache_key(model)
    except ValueError:
        return None
    return (openvino_models.cache_root() / key / openvino_models.META).is_file()


def _features(featurizer, images) -> dict:
    rows = featurizer.transform(images).select("path", "features").collect()
    return {r["path"]: r["features"].toArray() for r in rows}


def _max_abs_diff(a: dict, b: dict) -> float:
    import numpy as np

    if set(a) != set(b):
        raise RuntimeError(f"the runtimes featurized different images: {len(a)} vs {len(b)}")
    return float(max(np.abs(a[p] - b[p]).max() for p in a))


def spark_runtime(spark, args, runtime: str, images, cores: int, parts: int) -> dict:
    """One runtime on the Spark side: warm-up (workers load the model), timed passes, features."""
    from spark_tasks import image_files
    from spark_tasks.featurizer import make_featurizer

    featurizer = make_featurizer(args.model, "avg", "none", args.batch_size, runtime)
    cached = _ir_cached(args.model) if runtime != "tensorflow" else None
    t0 = time.perf_counter()
    # warm-up: start every Python worker, load the model in each (import TensorFlow; or read
    # OpenVINO's IR, converted first if it is not cached)
    warm = image_files.read_images_dir(spark, args.dir).limit(cores * 2).repartition(cores)
    featurizer.transform(warm).write.format("noop").mode("overwrite").save()
    warm_s = time.perf_counter() - t0
    passes = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        featurizer.transform(images.repartition(parts)).write.format("noop").mode(
            "overwrite"
        ).save()
        passes.append(time.perf_counter() - start)
    return {"warmup_s": warm_s, "passes_s": passes, "ir_cached_before": cached,
            "features": _features(featurizer, images.repartition(parts))}  # fmt: skip


def spark_side(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    from pyspark.sql import SparkSession

    from spark_tasks import image_files, session

    session.use_this_interpreter_for_workers()
    settings = Settings.from_env()
    spark = (
        SparkSession.builder.master(args.master)
        .appName("imgclf-bench")
        .config(map=spark_conf.job_conf(settings))  # as the jobs run (JVM archive included)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.arrow_batch))
        .config(map=dict(kv.split("=", 1) for kv in args.conf))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    t_session = time.perf_counter()
    cores = spark.sparkContext.defaultParallelism
    parts = args.partitions or cores
    images = image_files.read_images_dir(spark, args.dir)  # every pass reads the files again
    n = images.count()  # listing: fixed overhead, as for plain
    t_listed = time.perf_counter()
    runs = {rt: spark_runtime(spark, args, rt, images, cores, parts) for rt in args.runtimes}
    spark.stop()
    archive = settings.jvm_archive
    first = runs[args.runtimes[0]]
    return {"images": n, "partitions": parts, "cores": cores, "runtimes": runs,
            "fixed_s": t_listed - t0 + first["warmup_s"], "session_s": t_session - t0,
            "workers_s": t_listed - t_session + first["warmup_s"],
            "jvm_archive": str(archive) if archive and archive.is_file() else None}  # fmt: skip


def _runtimes(text: str) -> list[str]:
    from imgclf.models import RUNTIMES

    chosen = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in chosen if r not in RUNTIMES]
    if bad or not chosen:
        raise argparse.ArgumentTypeError(f"runtimes {bad or text!r}: choose from {RUNTIMES}")
    # TensorFlow first: the reference the others are compared with
    return ["tensorflow", *[r for r in dict.fromkeys(chosen) if r != "tensorflow"]]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.featurize", description=__doc__)
    p.add_argument("--images", type=int, default=600, help="how many images (N)")
    p.add_argument("--model", required=True, help="keras.applications name or .keras path")
    p.add_argument("--source", type=Path, help="folder of images to cycle (default ../shared)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--partitions", type=int, default=0, help="default: one per core")
    p.add_argument("--master", default="local[*]")
    p.add_argument("--arrow-batch", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3, help="steady passes per side; best is used")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="Spark conf")
    p.add_argument("--runtimes", type=_runtimes, default="tensorflow,openvino",
                   help="featurizer runtimes on the Spark side, comma-separated (tensorflow "
                   "always runs: the reference)")  # fmt: skip
    p.add_argument("--plain-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.plain_only:
        print(json.dumps(plain(args)))
        return 0
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-") as tmp:
        args.dir = Path(tmp)
        origin = make_images(args.images, args.dir, args.source)
        env = os.environ.copy()
        env.pop("IMGCLF_TF_THREADS", None)  # plain Keras as people run it: TensorFlow's threads
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.featurize", "--plain-only", "--dir", tmp,
             "--model", args.model, "--batch-size", str(args.batch_size),
             "--repeat", str(args.repeat)],
            capture_output=True, text=True, check=False, env=env, cwd=PROJECT_ROOT,
        )  # fmt: skip
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            return child.returncode
        p = json.loads(child.stdout.strip().splitlines()[-1])
        s = spark_side(args)
    plain_rate = p["images"] / min(p["passes_s"])
    tf_run = s["runtimes"]["tensorflow"]
    spark_rate = s["images"] / min(tf_run["passes_s"])
    plain_rates = [p["images"] / t for t in p["passes_s"]]
    spark_rates = [s["images"] / t for t in tf_run["passes_s"]]
    runtimes = {}
    for name, run in s["runtimes"].items():
        rate = s["images"] / min(run["passes_s"])
        runtimes[name] = {
            "images_per_s": round(rate, 2),
            "images_per_s_each_pass": [round(s["images"] / t, 1) for t in run["passes_s"]],
            "vs_spark_tensorflow": round(rate / spark_rate, 3),
            "warmup_s": round(run["warmup_s"], 2),  # workers load the model (+ convert)
            **({"ir_cached_before": run["ir_cached_before"]} if name != "tensorflow" else {}),
            "max_abs_diff_vs_tensorflow": _max_abs_diff(run["features"], tf_run["features"]),
        }
    openvino = runtimes.get("openvino", {})
    print(json.dumps({
        "images": args.images,
        "model": args.model,
        "source": origin,
        "batch_size": args.batch_size,
        "spark_partitions": s["partitions"],
        "cores": s["cores"],
        "plain_images_per_s": round(plain_rate, 2),
        "spark_images_per_s": round(spark_rate, 2),
        "ratio": round(spark_rate / plain_rate, 3),
        "passes": args.repeat,  # steady passes per side: the best of each is compared
        "plain_images_per_s_each_pass": [round(r, 1) for r in plain_rates],
        "spark_images_per_s_each_pass": [round(r, 1) for r in spark_rates],
        "plain_fixed_overhead_s": round(p["fixed_s"], 2),
        "spark_fixed_overhead_s": round(s["fixed_s"], 2),
        "overhead_difference_s": round(s["fixed_s"] - p["fixed_s"], 2),
        "spark_jvm_archive": s["jvm_archive"],  # tools/jvm_archive.py; IMGCLF_JVM_ARCHIVE=off
        "spark_overhead_parts_s": {
            "session_start": round(s["session_s"], 2),
            "workers_tensorflow_model_warmup": round(s["workers_s"], 2),
        },
        "spark_openvino_images_per_s": openvino.get("images_per_s"),
        "openvino_max_abs_diff": openvino.get("max_abs_diff_vs_tensorflow"),
        "runtimes": runtimes,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
