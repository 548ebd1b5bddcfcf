"""One champion per test session, trained for real (Spark, Lite0 on the 60 real images, the
OpenVINO runtime), logged with the serving flavor and promoted in a temporary registry.

The Spark pipeline's own predictions (``PipelineModel.transform``) of the 60 images and of 40
held-out augmented ones are taken before the CNN file the run read is deleted: what the served
model must reproduce, standing on its own artifacts.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from imgclf.settings import Settings
from imgclf.testing.standalone import free_port

REFRESH = 0.5  # seconds between the server's looks at the alias
TOLERANCE = 1e-5  # served probabilities against the Spark pipeline's


@dataclass
class Champion:
    settings: Settings
    version: str
    mlflow_run_id: str
    model_uri: str
    runtime: str
    images: dict[str, Path]  # name -> file: the 60 real images, then 40 augmented ones
    spark: dict[str, tuple[str, list[float]]]  # name -> (class, probabilities) from Spark
    labels: list[str]
    cnn_copy: Path  # the .keras file the run read, deleted once logged


def spark_predictions(spark, model, files: dict[str, Path]) -> dict[str, tuple[str, list[float]]]:
    from spark_tasks import image_files

    paths = [str(p.resolve()) for p in files.values()]
    return collected(model.transform(image_files.read_images(spark, paths)), files)


def collected(scored, files: dict[str, Path]) -> dict[str, tuple[str, list[float]]]:
    """``name -> (class, probabilities)`` of a scored DataFrame of ``files``."""
    from spark_tasks import classification

    by_path = {str(p.resolve()): name for name, p in files.items()}
    rows = scored.select("path", classification.PREDICTED, "probability").collect()
    out = {}
    for r in rows:
        path = r["path"].removeprefix("file:")
        out[by_path[path]] = (r[classification.PREDICTED], [float(v) for v in r["probability"]])
    return out


def train_champion(
    spark, tmp: Path, football: Path, lite0: Path, seed_store, runtime: str,
    model_name: str | None = None, augment: bool = True, features: list | None = None,
):  # fmt: skip
    """``model_name``: a model the featurizer names (``dlib-face``) instead of the Lite0 file's
    copy; ``augment``: also score 40 held-out augmented images; ``features``: the real images'
    rows (``path, label, sha256, features``) as that featurizer gave them already, so that it
    does not run on them again."""
    from pyspark.ml.classification import LogisticRegression

    from benchmarks.augment import make_dataset
    from imgclf import registry, tracking
    from spark_tasks import classification, image_files, serving
    from spark_tasks.featurizer import make_featurizer

    settings = dataclasses.replace(
        Settings.from_env(), home=seed_store(tmp / "home"), tracking_uri="", registry_uri=""
    )
    cnn = tmp / "cnn" / "lite0.keras"  # the run's copy: deleted below, as if moved away
    cnn.parent.mkdir()
    shutil.copyfile(lite0, cnn)
    real = {p.parent.name + "/" + p.name: p for p in sorted(football.glob("*/*")) if p.is_file()}
    augmented = {}
    if augment:
        make_dataset(football, tmp / "augmented", 100)  # 30 originals + 20 new per class
        augmented = {
            "aug/" + p.parent.name + "/" + p.name: p
            for p in sorted((tmp / "augmented").glob("*/*"))
            if p.name not in {q.name for q in real.values()}
        }
    featurizer = make_featurizer(model_name or str(cnn), "avg", "none", 32, runtime)
    paths = [str(p.resolve()) for p in real.values()]
    if features is None:
        data = featurizer.transform(image_files.read_images(spark, paths)).cache()
    else:
        data = spark.createDataFrame(features).cache()
        assert sorted(r["path"] for r in features) == sorted(paths)
    indexer = classification.fit_label_indexer(data)
    classifier = classification.classifier_pipeline(indexer, LogisticRegression(maxIter=30)).fit(
        data
    )
    model = classification.full_model(featurizer, classifier)
    images = {**real, **augmented}
    # the pipeline's predictions: its classifier on the features its featurizer just gave the
    # real images (what PipelineModel.transform computes, without running the CNN or dlib on
    # them a second time), and the whole PipelineModel on the augmented ones
    predictions = collected(classifier.transform(data), real)
    if augmented:
        predictions |= spark_predictions(spark, model, augmented)
    data.unpersist()
    run_id = f"serving_{runtime}"
    info = tracking.start_run(settings, "football_classifier", run_id, {"runtime": runtime})
    uri = tracking.log_model(settings, run_id, model, serving)
    version, _ = registry.register(settings, uri, info["mlflow_run_id"], run_id, {})
    assert version is not None
    registry.promote(settings, version, "serving tests")
    cnn.unlink()
    return Champion(
        settings, version, info["mlflow_run_id"], uri, runtime, images, predictions,
        list(indexer.labels), cnn,
    )  # fmt: skip


def served_like_spark(champion: Champion):
    """The champion's served pyfunc (``models:/...@champion``, the serving flavor) on all its
    images: each gets the class the Spark pipeline gave it, its probabilities within
    ``TOLERANCE``, no error. Returns the pyfunc's own model and its rows."""
    import mlflow.pyfunc
    import numpy as np

    from imgclf import tracking

    with tracking._fluent(champion.settings):
        model = mlflow.pyfunc.load_model("models:/football_classifier@champion")
    names = list(champion.images)
    content = [champion.images[n].read_bytes() for n in names]
    rows = model.predict({"content": content}).to_dict("records")
    worst = 0.0
    for name, row in zip(names, rows, strict=True):
        want_class, want = champion.spark[name]
        assert (row["class"], row["error"]) == (want_class, ""), name
        got = [row["probabilities"][label] for label in champion.labels]
        worst = max(worst, float(np.max(np.abs(np.subtract(got, want)))))
    assert worst <= TOLERANCE, worst
    return model.get_raw_model(), rows


def parity_on_real_and_augmented(champion: Champion, runtime: str) -> None:
    """``served_like_spark`` on the 60 real images and 40 held-out augmented ones."""
    assert champion.runtime == runtime
    names = list(champion.images)
    assert len(names) == 100 and sum(n.startswith("aug/") for n in names) == 40
    raw, _ = served_like_spark(champion)
    assert raw.labels == champion.labels


@pytest.fixture(scope="session")
def champion(spark, tmp_path_factory, football, lite0, seed_mlflow_store) -> Champion:
    tmp = tmp_path_factory.mktemp("champion-openvino")
    return train_champion(spark, tmp, football, lite0, seed_mlflow_store, "openvino")


def vm_hwm_kb(pid: int) -> int:
    """The process's peak resident set (VmHWM), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="session")
def server(champion, tmp_path_factory):
    """``python -m imgclf.serving`` (what ``make serve`` runs) on a free loopback port."""
    port = free_port()
    env = {
        **os.environ,
        "IMGCLF_HOME": str(champion.settings.home),
        "IMGCLF_SERVE_REFRESH": str(REFRESH),
        "IMGCLF_MAX_FILE_BYTES": str(2 * 1024 * 1024),  # a smaller cap: cheaper to exceed
    }
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(key, None)
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imgclf.serving", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("the server did not come up in 60 s: " + log.read_text()[-3000:])
        yield {"url": url, "proc": proc, "cold_start": time.monotonic() - started, "log": log}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
