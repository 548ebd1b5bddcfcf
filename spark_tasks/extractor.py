"""The CNN feature extractor without Spark: one loaded model per process, features of a batch.

One code path from encoded image bytes to feature vectors, called by the featurizer's
``predict_batch_udf`` in each Spark Python worker and by the serving model (``spark_tasks.
serving``) in a process with no Spark at all: decode and orient (``spark_tasks.model_input``), the
model's preprocessing, the CNN through its runtime (TensorFlow, or OpenVINO IR). Nothing here
imports pyspark.
"""

from __future__ import annotations

import gc
from typing import Any

import numpy as np

from spark_tasks.keras_models import configure_tensorflow, load, tf_threads

# Models loaded in this process, by (model, pooling, preprocessing, runtime).
# predict_batch_udf's own cache is keyed by a fresh UUID per transform() call; this one survives
# across calls, so a worker (reused by Spark) loads each model once, whatever number of jobs it
# serves.
_MODELS: dict[tuple[str, ...], Any] = {}


def freeze_what_is_loaded() -> None:
    """Move everything alive now (TensorFlow, Keras, the model: millions of objects that live
    as long as the worker) out of the cyclic garbage collector's reach. Otherwise each of its
    full collections, triggered by the per-batch allocations of the Arrow/pandas round trip,
    walks all of them again: a third of the workers' CPU while featurizing (perf)."""
    gc.collect()
    gc.freeze()


def cached_model(model: str, pooling: str, preprocessing: str, runtime: str = "tensorflow"):
    """The loaded model and a batch-size-agnostic inference function, once per process."""
    key = (model, pooling, preprocessing, runtime)
    if key not in _MODELS:
        _MODELS[key] = load_model(model, pooling, preprocessing, runtime)
        freeze_what_is_loaded()
    return _MODELS[key]


def load_model(
    model: str,
    pooling: str,
    preprocessing: str,
    runtime: str = "tensorflow",
    ir: str | None = None,
):
    """``(LoadedModel, infer)`` of ``model``, loaded now (``cached_model`` keeps one per key).

    ``ir``: a folder holding this model's OpenVINO IR already (a served model's own copy),
    compiled as it is, without TensorFlow, instead of looked up in (or converted into) the
    cache.
    """
    if runtime != "tensorflow":
        from pathlib import Path

        from spark_tasks import openvino_models

        if ir is not None:
            return openvino_models.load_folder(Path(ir), runtime, threads=tf_threads())
        return openvino_models.load(model, pooling, preprocessing, runtime, threads=tf_threads())
    configure_tensorflow()
    import keras

    loaded = load(model, pooling, preprocessing)
    infer = loaded.model.predict_on_batch
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # one trace for every batch size (a partial last batch must not retrace)
        w, h = loaded.size
        infer = tf.function(
            lambda x: loaded.model(x, training=False),
            input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32)],
        )
    return loaded, infer


def error_text(exc: BaseException) -> str:
    """How an image's failure is recorded: the exception's type and message, bounded."""
    return f"{type(exc).__name__}: {exc}"[:500]


def features(contents, loaded, infer, resize: str) -> tuple[np.ndarray, np.ndarray]:
    """``(features, errors)`` of a batch of encoded images: one row each, zeros and the reason
    (``error_text``) for an image that does not decode, ``""`` for one that does."""
    from spark_tasks.model_input import decode

    n = len(contents)
    errors = np.full(n, "", dtype=object)
    pixels, ok = [], []
    for i, data in enumerate(contents):
        try:
            pixels.append(decode(data, loaded.size, resize))
            ok.append(i)
        except Exception as exc:  # any undecodable input: record and go on
            errors[i] = error_text(exc)
    out = np.zeros((n, loaded.dim), dtype=np.float32)
    if ok:
        batch = loaded.preprocess(np.stack(pixels))
        out[ok] = np.asarray(infer(batch), dtype=np.float32)
    return out, errors.astype(str)


def face_features(contents, face, cnn, infer, resize: str) -> tuple[np.ndarray, np.ndarray]:
    """``features`` for ``dlib-face``: the 129 face features, then (with a fallback ``cnn``)
    that CNN's features of the whole image."""
    from spark_tasks.face import DIM, decode_rgb
    from spark_tasks.model_input import decode

    n = len(contents)
    errors = np.full(n, "", dtype=object)
    out = np.zeros((n, DIM + (cnn.dim if cnn else 0)), dtype=np.float32)
    pixels, ok = [], []
    for i, data in enumerate(contents):
        try:
            out[i, :DIM], _ = face.embed(decode_rgb(data))
            if cnn is not None:
                pixels.append(decode(data, cnn.size, resize))
                ok.append(i)
        except Exception as exc:  # undecodable: recorded, never fatal here
            errors[i] = error_text(exc)
    if ok:
        out[ok, DIM:] = np.asarray(infer(cnn.preprocess(np.stack(pixels))))
    return out, errors.astype(str)


def face_model():
    """dlib's detectors and encoder, once per process."""
    from spark_tasks.face import FaceModel

    key = ("dlib-face", "", "")
    if key not in _MODELS:
        _MODELS[key] = FaceModel.load()
        freeze_what_is_loaded()
    return _MODELS[key]
