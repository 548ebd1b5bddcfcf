"""Benchmark: where the model looks, on the real 60 images: the face-evidence share.

``python -m benchmarks.evidence [--models lite0,dlib-face] [--keep DIR]``: for each model, a
data root with the reference dataset (``../shared/datasets/football``), then the run's own
steps in-process (local Spark, default run parameters): the train job, the gate, the evidence
job, the run record (its ``report.html``). Prints one JSON line per model: the face-evidence
share per class (positive evidence for the true class inside dlib's face box) against the box's
share of the image area, the test images without a face, the largest difference between an
evidence map's logit and the classifier's, the test accuracy. ``--keep``: the data roots stay
there (their reports), else they go.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import augment
from benchmarks.datachecks import LITE0, _data_root

MODELS = {"lite0": str(LITE0), "dlib-face": "dlib-face"}


def measure(name: str, model: str, work: Path, spark) -> dict:
    from imgclf import dag_tasks, runs
    from spark_tasks import evidence, train
    from spark_tasks.job import JobContext

    settings = _data_root(work / name, augment.DEFAULT_SOURCE)
    run_id = f"evidence-{name}"
    classes = {c: f"CH13/football/{c}" for c in ("messi", "ronaldo")}
    checked = runs.save_params(settings, run_id, {"model": model, "classes": classes})
    runs.open_run(settings, "benchmark", run_id, checked)
    shutil.copyfile(settings.raw_dir / "manifest.json", settings.manifest_copy(run_id))
    ctx = JobContext(settings, run_id, checked)
    started = time.monotonic()
    train.run(ctx, spark)
    # the baseline only (no tuning here): the evidence is shown whatever the gate says
    with contextlib.suppress(dag_tasks.GateFailedError):
        dag_tasks.gate(settings, run_id, checked, None)
    ev = evidence.run(ctx, spark)
    record = runs.record(settings, run_id)
    metrics = json.loads((settings.run_dir(run_id) / "metrics.json").read_text())
    return {
        "model": name,
        "kind": ev.get("kind"),
        "note": ev.get("note"),
        "accuracy": metrics["accuracy"],
        "n_test": metrics["n_test"],
        "face_share": ev.get("face_share"),
        "no_face_test_images": len(ev.get("no_face") or []),
        "max_logit_error": ev.get("max_logit_error"),
        "evidence_seconds": ev.get("seconds"),
        "seconds": round(time.monotonic() - started, 2),
        "report": record.get("report"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="lite0,dlib-face", help=f"of {sorted(MODELS)}")
    parser.add_argument("--keep", type=Path, help="keep the data roots (and reports) here")
    args = parser.parse_args(argv)
    from spark_tasks import session

    spark = session.spark_session("imgclf-bench-evidence")
    with tempfile.TemporaryDirectory(prefix="imgclf-evidence-") as tmp:
        work = args.keep or Path(tmp)
        for name in args.models.split(","):
            print(json.dumps(measure(name, MODELS[name], work, spark), sort_keys=True), flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
