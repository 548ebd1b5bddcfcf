"""Benchmark: what the data checks find on the real 60 images and on an augmented dataset.

``python -m benchmarks.datachecks [--images 6000] [--out FILE.json]``: for the reference
dataset (``../shared/datasets/football``) and an N-image dataset made from it
(``benchmarks.augment``: the 60 originals and augmented copies of them), run the train job
in-process (local Spark, the Lite0 model file, default run parameters) twice: with the plain
split, then with ``group_near_duplicates=true`` at each ``--group-at`` similarity (the features
come from the store: the CNN runs once per image). Prints one JSON line per dataset: the
data-check metrics, the first leaked pairs, and the test accuracy with and without grouping
(leakage inflates it).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import augment
from imgclf.files import atomic_write_json
from imgclf.settings import PROJECT_ROOT, Settings

LITE0 = PROJECT_ROOT.parent / "shared" / "models" / "efficientnet_lite0_imagenet_notop.keras"


def _data_root(home: Path, images: Path) -> Settings:
    """A data root whose ``raw/`` holds ``images/<class>/*`` and its manifest."""
    raw = home / "raw"
    shutil.copytree(images, raw)
    files = []
    for p in sorted(raw.glob("*/*")):
        if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            files.append({"path": f"{p.parent.name}/{p.name}", "sha256": digest})
    fingerprint = hashlib.sha256(json.dumps(files).encode()).hexdigest()
    atomic_write_json(raw / "manifest.json", {"files": files, "fingerprint": fingerprint})
    return dataclasses.replace(Settings.from_env(), home=home)


def _train(settings: Settings, run_id: str, spark, **params) -> dict:
    from imgclf import runs
    from spark_tasks import train
    from spark_tasks.job import JobContext

    classes = {c.name: f"CH13/football/{c.name}" for c in sorted(settings.raw_dir.iterdir())
               if c.is_dir()}  # fmt: skip
    checked = runs.save_params(settings, run_id, {"model": str(LITE0), "classes": classes,
                                                  **params})  # fmt: skip
    runs.open_run(settings, "benchmark", run_id, checked)
    shutil.copyfile(settings.raw_dir / "manifest.json", settings.manifest_copy(run_id))
    started = time.monotonic()
    metrics = train.run(JobContext(settings, run_id, checked), spark)
    checks = json.loads((settings.run_dir(run_id) / "datachecks.json").read_text())
    return {
        "accuracy": metrics["accuracy"],
        "n_test": metrics["n_test"],
        "seconds": round(time.monotonic() - started, 2),
        "data_checks_seconds": metrics["phases"].get("data_checks"),
        "metrics": checks["metrics"],
        "leaked_examples": checks["findings"]["leakage"]["examples"][:5],
        "cross_class": checks["findings"]["near_duplicates"]["cross_class"][:5],
    }


def measure(name: str, images: Path, work: Path, spark, group_at: list[float]) -> dict:
    settings = _data_root(work / name, images)
    plain = _train(settings, f"{name}-plain", spark)
    grouped = {
        str(t): _train(settings, f"{name}-grouped-{t}", spark, group_near_duplicates=True,
                       near_duplicate_similarity=t)
        for t in group_at
    }  # fmt: skip
    return {"dataset": name, "plain": plain, "grouped": grouped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=6000, help="size of the augmented set")
    parser.add_argument("--out", type=Path, help="also write the JSON lines here")
    parser.add_argument(
        "--group-at",
        default="0.92,0.88",
        help="near_duplicate_similarity of each grouped run (comma-separated)",
    )
    args = parser.parse_args(argv)
    from spark_tasks import session

    spark = session.spark_session("imgclf-bench-datachecks")
    lines = []
    with tempfile.TemporaryDirectory(prefix="imgclf-datachecks-") as tmp:
        work = Path(tmp)
        made = augment.make_dataset(augment.DEFAULT_SOURCE, work / "augmented", args.images)
        for name, images in (("real60", augment.DEFAULT_SOURCE),
                             (f"augmented{made['images']}", work / "augmented")):  # fmt: skip
            group_at = [float(t) for t in args.group_at.split(",") if t]
            result = measure(name, images, work, spark, group_at)
            line = json.dumps(result, sort_keys=True)
            print(line, flush=True)
            lines.append(line)
    spark.stop()
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
