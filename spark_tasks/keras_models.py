"""Build a headless pretrained Keras model (features, not classes) from a name or a file.

Application weights come through Keras' own cache (``$KERAS_HOME/models``, default
``~/.keras/models``): downloaded on first use where there is internet. Air-gapped clusters put
the ``*_notop.h5`` files in that folder on every host (or point ``KERAS_HOME`` at a shared one).
"""

from __future__ import annotations

import importlib
import importlib.abc
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.models import APPLICATIONS, POOLINGS, PREPROCESSINGS, ModelSpec

# Keras imports its scikit-learn wrapper (with scipy.stats) and its matplotlib plotting helper
# whenever those are installed, and MLflow installs them: a noticeable part of every Spark
# worker's TensorFlow import, for code never called here.
OPTIONAL_INTEGRATIONS = ("sklearn", "scipy", "matplotlib")


class _Hidden(importlib.abc.MetaPathFinder):
    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{name} is hidden while Keras loads", name=name)
        return None


def import_keras():
    """``keras`` (and TensorFlow under it), imported without those of its optional
    integrations this process has not imported already (a Spark worker has SciPy: pyspark.ml
    loads it). Only the import is affected: the process can import any of them afterwards,
    as usual (keras' own wrappers for them stay off)."""
    hidden = tuple(m for m in OPTIONAL_INTEGRATIONS if m not in sys.modules)
    if "keras" in sys.modules or not hidden:
        import keras

        return keras
    finder = _Hidden(hidden)
    sys.meta_path.insert(0, finder)
    try:
        import keras
    finally:
        sys.meta_path.remove(finder)
    return keras


def tf_threads() -> int | None:
    """TensorFlow threads for this process.

    ``IMGCLF_TF_THREADS`` if set; inside a Spark task, the task's CPUs (``spark.task.cpus``,
    default 1): an executor runs one Python worker per concurrent task, so TensorFlow's default
    of one thread per core in every worker oversubscribes the cores. Outside Spark (a serving
    process, which need not have pyspark imported) ``None``: TensorFlow decides. OpenVINO's
    ``INFERENCE_NUM_THREADS`` follows the same rule.
    """
    raw = os.environ.get("IMGCLF_TF_THREADS", "").strip()
    if raw:
        return max(1, int(raw))
    if "pyspark" not in sys.modules:  # a Spark worker has it; a serving process need not
        return None
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return max(1, int(ctx.cpus())) if ctx is not None else None


def configure_tensorflow() -> None:
    """Import TensorFlow for this process (``import_keras``) and give it ``tf_threads()``
    threads: the one thread rule of every runtime (the featurizer, the OpenVINO conversion)."""
    import_keras()  # the first TensorFlow import of this worker: without what it never uses
    threads = tf_threads()
    if threads is None:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialised in this worker
        pass


@dataclass
class LoadedModel:
    model: Any  # keras.Model: (batch, h, w, 3) float32 RGB 0..255 in, (batch, dim) out
    size: tuple[int, int]  # (width, height) the images are resized to
    dim: int
    preprocess: Callable[[np.ndarray], np.ndarray]


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _named_preprocess(name: str) -> Callable[[np.ndarray], np.ndarray]:
    if name == "none":
        return _identity
    from keras.applications import imagenet_utils

    def fn(x: np.ndarray) -> np.ndarray:
        return imagenet_utils.preprocess_input(x.copy(), mode=name)

    return fn


def _weights_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _pool(features, pooling: str):
    import keras

    inputs = features.inputs
    x = features.output
    if len(x.shape) == 4:
        if pooling == "avg":
            x = keras.layers.GlobalAveragePooling2D()(x)
        elif pooling == "max":
            x = keras.layers.GlobalMaxPooling2D()(x)
        else:
            x = keras.layers.Flatten()(x)
    return keras.Model(inputs, x)


def load(model: str, pooling: str = "avg", preprocessing: str = "none") -> LoadedModel:
    """The feature extractor for ``model`` (an application name or a ``.keras`` path)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
    parsed = ModelSpec.parse(model)
    if parsed.is_face:
        raise ValueError(f"model {model!r} is a face model: spark_tasks.face loads it, not this")
    model = parsed.name
    import keras

    if parsed.is_application:
        spec = APPLICATIONS[model]
        module = importlib.import_module(f"keras.applications.{spec.module}")
        # MobileNetV3Small/Large live on keras.applications only, not in their module
        ctor = getattr(module, model, None) or getattr(keras.applications, model)
        try:
            base = ctor(
                include_top=False, weights="imagenet", input_shape=(spec.size, spec.size, 3)
            )
        except Exception as exc:  # Keras raises a bare Exception with the URL on fetch errors
            raise RuntimeError(
                f"could not get the ImageNet weights of {model}: {exc}. Keras looks for them in "
                f"{_weights_cache()} and downloads them on first use; offline, copy the "
                "'..._notop.h5' file named in this message into that folder "
                "(or set KERAS_HOME), or pass a .keras model file instead"
            ) from exc
        net = _pool(base, pooling)
        preprocess = module.preprocess_input
        size = (spec.size, spec.size)
    else:
        if preprocessing not in PREPROCESSINGS:
            raise ValueError(f"preprocessing {preprocessing!r} is not one of {PREPROCESSINGS}")
        try:  # safe_mode (the default): a serialized lambda is refused, never run
            loaded = keras.saving.load_model(model, compile=False, safe_mode=True)
        except (ValueError, TypeError, KeyError, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(
                f"model file {model!r}: Keras refused to load it: {first[:300]}"
            ) from None
        shape = loaded.input_shape
        if isinstance(shape, list):
            raise ValueError(f"model file {model} has {len(shape)} inputs; one image input needed")
        if len(shape) != 4 or shape[-1] != 3 or shape[1] is None or shape[2] is None:
            raise ValueError(
                f"model file {model} takes input {shape}; need (batch, height, width, 3)"
            )
        net = _pool(loaded, pooling)
        preprocess = _named_preprocess(preprocessing)
        size = (int(shape[2]), int(shape[1]))
    out = net.output_shape
    if len(out) != 2:
        raise ValueError(f"{model} gives outputs of shape {out}; expected (batch, features)")
    return LoadedModel(net, size, int(out[-1]), preprocess)
