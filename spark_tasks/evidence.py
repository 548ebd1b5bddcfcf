"""spark-submit entry point: what the gated model looks at, on this run's test images.

For a CNN whose features are the **average** over positions of its last feature map F, followed
by the logistic regression (weights W, intercepts b), the evidence map is exact: the logit of
class c is mean_(x,y) [ sum_k W_ck F_k(x,y) ] + b_c, so M_c(x,y) = sum_k W_ck F_k(x,y) is each
position's contribution, in the classifier's own units (its coefficients are in the units of
the features: Spark ML's standardisation is folded back into them). The map comes from the
featurizer's own network (``keras_models.load``: same model file, pooling, preprocessing and
resize), cut before its final ``GlobalAveragePooling2D``; nothing else runs the CNN. ``max``
pooling (or anything after the pooling) has no exact map: the job says so instead.

For ``dlib-face`` the features come from the aligned face only: the job records dlib's face box
and 5 landmarks per image instead, and which images had no face.

Over every test image it also measures the **face-evidence share**: the share of the positive
evidence for the image's true class that falls inside dlib's face box, against the box's share of
the image area (per class; a model that "looks at the face" has the first well above the second).

Writes ``runs/<run id>/evidence.json``: the maps of the misclassified test images and of the most
and least confident correct ones per class, the face boxes, the shares. A failure here is
written there too and never fails the run (the report says why there is no map).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import numpy as np

from imgclf.files import atomic_write_json
from imgclf.models import ModelSpec
from spark_tasks.job import JobContext, main

log = logging.getLogger(__name__)
PER_CLASS = 2  # most and least confident correct images shown per class
MAX_MISCLASSIFIED = 24
_CACHE: dict[Any, Any] = {}  # per Python worker: the spatial model, the face model


class NoExactMapError(ValueError):
    """The model's features are not an average over positions: no exact evidence map."""


def spatial_model(model: str, pooling: str, preprocessing: str):
    """``(LoadedModel, keras.Model giving the last feature map)``: the featurizer's network
    (``keras_models.load``) cut before its final global average pooling."""
    import keras

    from spark_tasks.keras_models import load

    if pooling != "avg":
        raise NoExactMapError(
            f"pooling={pooling!r}: a {pooling} over positions has no exact per-position "
            "decomposition, so no evidence map is shown (an approximation would not be the "
            "same thing under the same name)"
        )
    loaded = load(model, pooling, preprocessing)
    last = loaded.model.layers[-1]
    if not isinstance(last, keras.layers.GlobalAveragePooling2D) or last.keepdims:
        raise NoExactMapError(
            f"the model's features come from a {type(last).__name__} layer, not a final "
            "global average pooling: no exact evidence map"
        )
    return loaded, keras.Model(loaded.model.input, last.input)


def _check_on_a_worker(spark, model: str, pooling: str, preprocessing: str):
    """``(why there is no exact map or None, the network's input size)``: ``spatial_model``
    on a Python worker of the kind that computes the maps next (``mapInPandas``: the worker
    kept for it, which then has the network loaded), so that the driver never imports
    TensorFlow nor loads the model."""

    def check(batches):
        import pandas as pd

        for _ in batches:
            pass
        key = (model, pooling, preprocessing)
        try:
            if key not in _CACHE:
                _CACHE[key] = spatial_model(model, pooling, preprocessing)
        except NoExactMapError as exc:
            yield pd.DataFrame({"note": [str(exc)], "size": [""]})
            return
        yield pd.DataFrame({"note": [""], "size": [json.dumps(list(_CACHE[key][0].size))]})

    (row,) = (
        spark.range(1, numPartitions=1).mapInPandas(check, "note string, size string").collect()
    )
    return row["note"] or None, json.loads(row["size"]) if row["size"] else None


def class_evidence(maps: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class evidence (h, w, n_classes) from the classifier's maps (h, w, rows of W): a
    binomial model's one row argues for the last class (+) against the first (-); a
    multinomial model's class c, relative to the mean over classes (softmax ignores a shift)."""
    if maps.shape[-1] == 1 and n_classes == 2:
        return np.concatenate([-maps, maps], axis=-1)
    return maps - maps.mean(axis=-1, keepdims=True)


def box_share(evidence: np.ndarray, box: tuple[float, float, float, float]) -> float | None:
    """The share of the positive part of ``evidence`` (h, w) inside ``box`` (x0, y0, x1, y1 as
    fractions of the width and height), each cell counted by the fraction of it in the box."""
    h, w = evidence.shape
    x0, y0, x1, y1 = box
    cols = (
        np.clip(np.minimum((np.arange(w) + 1) / w, x1) - np.maximum(np.arange(w) / w, x0), 0, None)
        * w
    )
    rows = (
        np.clip(np.minimum((np.arange(h) + 1) / h, y1) - np.maximum(np.arange(h) / h, y0), 0, None)
        * h
    )
    positive = np.clip(evidence, 0, None)
    total = float(positive.sum())
    if total <= 0:
        return None
    return float((positive * np.outer(rows, cols)).sum() / total)


def _face(content: bytes) -> dict[str, Any] | None:
    """dlib's largest face: box and 5 landmarks as fractions of the (oriented) image."""
    from spark_tasks.face import FaceModel, decode_rgb

    if "face" not in _CACHE:
        _CACHE["face"] = FaceModel.load()
    face = _CACHE["face"]
    rgb = decode_rgb(content)
    rect, how = face.detect(rgb)
    if rect is None:
        return None
    h, w = rgb.shape[:2]
    x0, y0 = max(rect.left(), 0) / w, max(rect.top(), 0) / h
    x1, y1 = min(rect.right(), w) / w, min(rect.bottom(), h) / h
    points = face.landmarks(rgb, rect).parts()
    return {
        "box": [x0, y0, x1, y1],
        "landmarks": [[p.x / w, p.y / h] for p in points],
        "detector": how,
        "area": (x1 - x0) * (y1 - y0),
    }


def make_mapper(model: str, pooling: str, preprocessing: str, resize: str, weights, intercept,
                labels: list[str], keep: set[str], true_label: dict[str, str]):  # fmt: skip
    """The ``mapInPandas`` function: per image, the evidence maps (kept for ``keep``), the
    logit they add up to, the face box and the face-evidence share."""
    spec = ModelSpec.parse(model)
    weights = np.asarray(weights, dtype=np.float64)
    intercept = np.asarray(intercept, dtype=np.float64)

    def run(batches):
        import pandas as pd

        from spark_tasks.model_input import decode

        net = None
        if not spec.is_face:
            key = (model, pooling, preprocessing)
            if key not in _CACHE:
                _CACHE[key] = spatial_model(model, pooling, preprocessing)
            net = _CACHE[key]
        for pdf in batches:
            out = []
            for path, content in zip(pdf["path"], pdf["content"], strict=True):
                row: dict[str, Any] = {"path": path, "error": ""}
                try:
                    face = _face(bytes(content))
                    row["face"] = json.dumps(face)
                    label = true_label.get(path)
                    if net is not None:
                        loaded, spatial = net
                        pixels = loaded.preprocess(
                            decode(bytes(content), loaded.size, resize)[None]
                        )
                        fmap = np.asarray(spatial(pixels, training=False), dtype=np.float64)[0]
                        maps = fmap @ weights.T  # (h, w, rows of W)
                        row["logits"] = json.dumps((maps.mean(axis=(0, 1)) + intercept).tolist())
                        ev = class_evidence(maps, len(labels))
                        c = labels.index(label) if label in labels else None
                        share = (
                            box_share(ev[..., c], face["box"]) if face and c is not None else None
                        )
                        row["share"] = json.dumps(share)
                        row["maps"] = json.dumps(maps.round(5).tolist()) if path in keep else "null"
                    else:
                        row.update(logits="null", share="null", maps="null")
                except Exception as exc:  # one bad image: named, the others go on
                    row.update(error=f"{type(exc).__name__}: {exc}"[:300], face="null",
                               logits="null", share="null", maps="null")  # fmt: skip
                out.append(row)
            yield pd.DataFrame(out, columns=["path", "error", "face", "logits", "share", "maps"])

    return run


def choose(predictions: list[dict[str, Any]], labels: list[str]) -> dict[str, str]:
    """The images shown, by path: every misclassified one (up to ``MAX_MISCLASSIFIED``), and per
    class the ``PER_CLASS`` most and least confident correct ones."""
    chosen = {}
    wrong = [p for p in predictions if p["label"] != p["predicted"]]
    for p in sorted(wrong, key=lambda p: -p["probability"])[:MAX_MISCLASSIFIED]:
        chosen[p["path"]] = "misclassified"
    for label in labels:
        right = sorted((p for p in predictions if p["label"] == p["predicted"] == label),
                       key=lambda p: -p["probability"])  # fmt: skip
        for p in right[:PER_CLASS]:
            chosen.setdefault(p["path"], "most confident correct")
        for p in right[-PER_CLASS:]:
            chosen.setdefault(p["path"], "least confident correct")
    return chosen


def _classifier(model_path: str):
    """Labels, weights (rows x features) and intercepts of the saved pipeline's LR."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import LogisticRegressionModel
    from pyspark.ml.feature import StringIndexerModel

    stages = PipelineModel.load(model_path).stages
    featurizer = stages[0]
    indexer = next(s for s in stages if isinstance(s, StringIndexerModel))
    lr = next(s for s in stages if isinstance(s, LogisticRegressionModel))
    weights = lr.coefficientMatrix.toArray()
    return featurizer, list(indexer.labels), weights, lr.interceptVector.toArray()


def compute(ctx: JobContext, spark) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from spark_tasks import feature_store, image_files

    run_dir = ctx.run_dir
    metrics = json.loads((run_dir / "metrics.json").read_text())
    stage = metrics.get(metrics["candidate"]) or metrics["baseline"]
    predictions = stage["predictions"]
    featurizer, labels, weights, intercept = _classifier(metrics["model_path"])
    spec = featurizer.modelSpec()
    model, pooling = str(spec), featurizer.getPooling()
    out: dict[str, Any] = {"labels": labels, "model": model, "pooling": pooling}
    if spec.is_face:
        if spec.fallback is not None:
            out.update(kind="none", note="dlib-face+CNN: the face and CNN features are mixed in "
                       "one classifier; no exact map is drawn for them")  # fmt: skip
        else:
            out.update(kind="face", note="dlib-face: the features come from the aligned face "
                       "only; shown: dlib's face box and 5 landmarks")  # fmt: skip
    else:
        note, size = _check_on_a_worker(spark, model, pooling, featurizer.getPreprocessing())
        if note:
            out.update(kind="none", note=note)
        else:
            out.update(kind="exact", input_size=size)
    chosen = choose(predictions, labels)
    by_path = {p["path"]: p for p in predictions}
    true_label = {p["path"]: p["label"] for p in predictions}
    mapper = make_mapper(
        model, pooling, featurizer.getPreprocessing(), featurizer.getResize(), weights.tolist(),
        intercept.tolist(), labels, set(chosen) if out["kind"] == "exact" else set(), true_label,
    )  # fmt: skip
    if out["kind"] == "none":  # nothing per image to compute (the face share needs a map)
        rows = []
    else:
        images = image_files.read_images(spark, sorted(by_path)).select("path", "content")
        schema = "path string, error string, face string, logits string, share string, maps string"
        parts = feature_store.featurize_partitions(
            spark.sparkContext.defaultParallelism, len(by_path)
        )
        rows = images.repartition(parts).mapInPandas(mapper, schema).collect()
    # the map's logit against the classifier's own on the stored features: exactness, checked
    stored = (spark.read.parquet(str(run_dir / "dataset.parquet"))
              .filter(F.col("split") == "test").select("path", "features").collect())  # fmt: skip
    lr_logit = {r["path"]: (weights @ r["features"].toArray() + intercept).tolist() for r in stored}
    shown: list[dict[str, Any]] = []
    shares: dict[str, list[tuple[float, float]]] = {}
    errors: list[dict[str, str]] = []
    no_face: list[str] = []
    gaps: list[float] = []
    for r in rows:
        face = json.loads(r["face"])
        if r["error"]:
            errors.append({"path": r["path"], "error": r["error"]})
            continue
        if face is None:
            no_face.append(r["path"])
        logits = json.loads(r["logits"])
        if logits is not None and r["path"] in lr_logit:
            gaps.append(max(abs(a - b) for a, b in zip(logits, lr_logit[r["path"]], strict=True)))
        label = true_label[r["path"]]
        share = json.loads(r["share"]) if out["kind"] == "exact" else (1.0 if face else None)
        if face is not None and share is not None:
            shares.setdefault(label, []).append((share, face["area"]))
        if r["path"] in chosen:
            p = by_path[r["path"]]
            shown.append({
                "path": r["path"], "label": label, "predicted": p["predicted"],
                "probability": p["probability"], "group": chosen[r["path"]],
                "face": face, "map": json.loads(r["maps"]), "logits": logits,
            })  # fmt: skip
    out["images"] = sorted(shown, key=lambda s: (s["group"], s["label"], -s["probability"]))
    out["no_face"] = sorted(no_face)
    out["errors"] = errors
    out["face_share"] = {
        label: {
            "evidence_in_face": float(np.mean([s for s, _ in v])),
            "face_area": float(np.mean([a for _, a in v])),
            "images": len(v),
        }
        for label, v in sorted(shares.items())
    }
    out["max_logit_error"] = max(gaps) if gaps else None
    flat = {}
    for label, s in out["face_share"].items():
        flat[f"face_evidence_share_{label}"] = s["evidence_in_face"]
        flat[f"face_area_share_{label}"] = s["face_area"]
    if out["max_logit_error"] is not None:
        flat["evidence_max_logit_error"] = out["max_logit_error"]
    flat["no_face_test_images"] = float(len(no_face))
    out["metrics"] = flat
    return out


def run(ctx: JobContext, spark=None) -> dict[str, Any]:
    from spark_tasks import session

    started = time.time()
    spark = spark or session.spark_session(ctx.app_name("evidence"))
    try:
        out = compute(ctx, spark)
    except Exception as exc:  # the evidence is for people: it never fails the run
        log.exception("evidence maps failed")
        out = {"kind": "error", "note": f"{type(exc).__name__}: {exc}"[:2000], "metrics": {}}
    out["seconds"] = round(time.time() - started, 2)
    atomic_write_json(ctx.run_dir / "evidence.json", out)
    return out


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
