"""The catalogue of supported pretrained CNNs, as plain data.

Nothing here imports Keras: the DAG validates a ``model`` Param against this catalogue at trigger
time, and the Spark featurizer (``spark_tasks.keras_models``) turns a spec into a Keras model on
the executors. The checks of a ``.keras`` model file itself are ``imgclf.model_files``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from imgclf.model_files import check_keras_archive, file_sha256

POOLINGS = ("avg", "max", "flatten")
RESIZE_MODES = ("stretch", "pad")  # stretch = whole image to the input size (sparkdl's choice)
# How pixels (RGB, float 0..255) are scaled before a model file; "none": the file does it itself.
PREPROCESSINGS = ("none", "tf", "torch", "caffe")
# Where the CNN runs: TensorFlow (Keras 3), or the same model as OpenVINO IR on the CPU, in f32
# (features within 1e-4 of TensorFlow's) or in the CPU's reduced precision (bf16: faster again,
# features further from TensorFlow's; only when chosen). Speeds: docs/performance.md.
RUNTIMES = ("tensorflow", "openvino", "openvino-bf16")
# The featurizer's settings that are not run parameters (the model file decides its own
# scaling). Here, not in spark_tasks.featurizer, so that the CLI's parsers (imgclf featurize,
# evaluate) take them as defaults without importing pyspark: every `imgclf` command builds them.
PREPROCESSING = "none"
BATCH_SIZE = 32


@dataclass(frozen=True)
class AppSpec:
    """One ``keras.applications`` model: where it lives, its input size, its ImageNet weights.

    ``weights_file`` and ``weights_url`` are the ``include_top=False`` ImageNet weights exactly as
    the installed Keras names and fetches them (``keras/src/applications/<module>.py``:
    ``file_utils.get_file(weights_file, weights_url, cache_subdir="models", file_hash=...)``),
    so that a missing file is found at trigger time instead of on the Spark executors.
    """

    name: str
    module: str  # keras.applications.<module>
    size: int  # square input size in pixels
    weights_file: str  # the file name in the Keras cache, <keras home>/models/
    weights_url: str  # where keras.utils.get_file downloads it from


_GCS = "https://storage.googleapis.com/tensorflow/keras-applications/"
_GCS_EFFICIENTNET = "https://storage.googleapis.com/keras-applications/"  # B0..B7: other bucket


# name, keras.applications module, input size, ImageNet "notop" weights (under _GCS unless a URL)
_CATALOGUE = (
    # sparkdl's five, with the input sizes it used
    ("InceptionV3", "inception_v3", 299,
     "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("Xception", "xception", 299, "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("ResNet50", "resnet50", 224, "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("VGG16", "vgg16", 224, "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("VGG19", "vgg19", 224, "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    # modern ones (preprocessing is built into these models)
    ("EfficientNetB0", "efficientnet", 224, _GCS_EFFICIENTNET + "efficientnetb0_notop.h5"),
    ("EfficientNetV2B0", "efficientnet_v2", 224, "efficientnet_v2/efficientnetv2-b0_notop.h5"),
    ("EfficientNetV2S", "efficientnet_v2", 384, "efficientnet_v2/efficientnetv2-s_notop.h5"),
    ("MobileNetV3Small", "mobilenet_v3", 224,
     "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
    ("MobileNetV3Large", "mobilenet_v3", 224,
     "mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
    ("ConvNeXtTiny", "convnext", 224, "convnext/convnext_tiny_notop.h5"),
)  # fmt: skip
APPLICATIONS: dict[str, AppSpec] = {
    name: AppSpec(name, module, size, weights.rpartition("/")[2], urljoin(_GCS, weights))
    for name, module, size, weights in _CATALOGUE
}

WEIGHTS_TIMEOUT = 5.0  # seconds for the HEAD request that checks the weights can be fetched


def _writable_dir(path: str) -> bool:
    """``os.access(path, W_OK)`` once Keras has tried to create ``path`` (it does on import)."""
    if not path:
        return False
    if os.path.exists(path):
        return os.path.isdir(path) and os.access(path, os.W_OK)
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    return os.path.isdir(parent) and os.access(parent, os.W_OK)


def keras_cache_dir() -> Path:
    """The folder where Keras keeps application weights: ``<keras home>/models``.

    Keras 3's rules, without importing it: the home is ``$KERAS_HOME`` if that variable is set,
    else ``~/.keras`` (``/tmp/.keras`` if ``~`` is not writable; ``backend/config.py``);
    ``get_file`` then falls back to ``/tmp/.keras`` when that home is not writable
    (``utils/file_utils.py``).
    """
    if "KERAS_HOME" in os.environ:
        base = os.environ["KERAS_HOME"]
    else:
        home = os.path.expanduser("~")
        base = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    base = os.path.expanduser(base)
    if not _writable_dir(base):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return Path(base) / "models"


def _root_cause(exc: BaseException) -> str:
    """``ConnectionRefusedError: Connection refused`` from requests' nest of wrappers."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        err = todo.pop(0)
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError) and err.strerror:
            return f"{type(err).__name__}: {err.strerror}"
        reason = getattr(err, "reason", None)
        nested = [err.__cause__, err.__context__, reason, *err.args]
        todo.extend(e for e in nested if isinstance(e, BaseException))
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."


def _head_problem(url: str, timeout: float) -> str | None:
    """``None`` if a HEAD request to ``url`` answers 200 (one try, no retries), else why not."""
    import requests  # only here: the catalogue itself stays import-light

    try:
        response = requests.head(url, timeout=timeout, allow_redirects=True)
    except requests.Timeout:
        return f"no answer within {timeout:g} s"
    except requests.RequestException as exc:
        return _root_cause(exc)
    if response.status_code == 200:
        return None
    return f"HTTP {response.status_code} {response.reason or ''}".rstrip()


def require_weights(spec: AppSpec, timeout: float = WEIGHTS_TIMEOUT) -> str:
    """Check that Keras will find ``spec``'s ImageNet notop weights; say where from.

    In the Keras cache: fine, without any network. Otherwise a HEAD request to the URL Keras
    downloads from must answer 200. Raises ``ValueError`` naming the model, the cache path, the
    URL and the cause. (A cached file is not hash-checked: Keras re-downloads a corrupt one.)
    """
    cached = keras_cache_dir() / spec.weights_file
    if cached.is_file() and cached.stat().st_size > 0:
        return f"cached at {cached}"
    cause = _head_problem(spec.weights_url, timeout)
    if cause is None:
        return f"fetchable from {spec.weights_url}"
    raise ValueError(
        f"model {spec.name!r}: its ImageNet weights are not in the Keras cache ({cached}) and "
        f"could not be fetched from {spec.weights_url} ({cause}): pre-download them, or give "
        "a .keras file (make run-offline uses one)"
    )


# Featurizers that are not keras.applications: dlib's 128-D face-identity embedding (+ face_found).
FACE_MODELS = ("dlib-face",)
# "dlib-face+<CNN>": the face features, and a generic CNN's features of the whole image alongside
# (the other no-face fallback; plain "dlib-face" gives a face-less image zeros + face_found 0).
FALLBACK_SEP = "+"


def split_face_model(model: str) -> tuple[str, str | None]:
    """``"dlib-face+X"`` -> ``("dlib-face", "X")``; anything else -> ``(model, None)``."""
    for face in FACE_MODELS:
        if model.startswith(face + FALLBACK_SEP):
            return face, model[len(face) + len(FALLBACK_SEP) :]
    return model, None


def is_model_file(model: str) -> bool:
    return model.endswith(".keras") or "/" in model or model.startswith(".")


MODEL_KINDS = ("application", "file", "face")


@dataclass(frozen=True)
class ModelSpec:
    """A ``model`` string, parsed once: the only place that knows its syntax.

    ``kind`` is ``"application"`` (``name`` a ``keras.applications`` name from
    ``APPLICATIONS``), ``"file"`` (``name`` the absolute path of a ``.keras`` file) or
    ``"face"`` (``name`` one of ``FACE_MODELS``; ``fallback`` optionally the CNN whose features
    of the whole image go alongside, written ``dlib-face+<CNN>``). ``str(spec)`` is the
    canonical string and ``ModelSpec.parse(str(spec)) == spec``.
    """

    kind: str
    name: str
    fallback: ModelSpec | None = None

    def __post_init__(self) -> None:
        # structure only (no file access): parse() does the checks with the user-facing messages
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model kind {self.kind!r} is not one of {MODEL_KINDS}")
        if self.kind == "application" and self.name not in APPLICATIONS:
            raise ValueError(f"{self.name!r} is not a keras.applications model")
        if self.kind == "face" and self.name not in FACE_MODELS:
            raise ValueError(f"{self.name!r} is not one of {FACE_MODELS}")
        if self.kind == "file" and not (
            Path(self.name).is_absolute() and self.name.endswith(".keras")
        ):
            raise ValueError(f"model file {self.name!r} must be an absolute path to a .keras file")
        if self.fallback is not None and (self.kind != "face" or self.fallback.is_face):
            raise ValueError(
                f"only {list(FACE_MODELS)} take a fallback CNN, and it is no face model"
            )

    @classmethod
    def parse(
        cls, text: str, *, check_weights: bool = False, relative_to: str | Path | None = None
    ) -> ModelSpec:
        """Parse and check ``text``: an application name, a ``.keras`` file, ``dlib-face[+CNN]``.

        A ``.keras`` path (``~`` expanded) must be absolute and a Keras 3 archive (checked from
        the zip directory, without Keras); with ``relative_to`` a relative path is taken from
        that folder instead (and resolved). With ``check_weights`` an application's ImageNet
        weights must be in the Keras cache or fetchable (``require_weights``, a HEAD request);
        this applies to the CNN of ``dlib-face+<CNN>`` too. Raises ``ValueError`` naming the
        input and what is accepted.
        """
        model = (text or "").strip()
        if not model:
            raise ValueError("model is empty: give a Keras application name or a .keras file path")
        if model in APPLICATIONS:
            if check_weights:
                require_weights(APPLICATIONS[model])  # looked up at call time: tests replace it
            return cls("application", model)
        if model in FACE_MODELS:
            return cls("face", model)
        face, fallback = split_face_model(model)
        if fallback is not None:
            return cls("face", face).with_fallback(
                fallback, check_weights=check_weights, relative_to=relative_to
            )
        if is_model_file(model):
            if relative_to is not None:
                model = str((Path(relative_to) / Path(model).expanduser()).resolve())
            path = Path(model).expanduser()
            if not path.is_absolute():
                raise ValueError(f"model file {model!r} must be an absolute path")
            if path.suffix != ".keras":
                raise ValueError(f"model file {model!r} must end in .keras (Keras 3 format)")
            if not path.exists():
                raise ValueError(f"model file {model!r} does not exist")
            if not path.is_file():
                raise ValueError(f"model file {model!r} is not a file")
            check_keras_archive(path, model)
            return cls("file", str(path))
        close = [n for n in (*APPLICATIONS, *FACE_MODELS) if n.lower() == model.lower()]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown model {model!r}{hint}: supported are "
            f"{', '.join(sorted(APPLICATIONS) + list(FACE_MODELS))}, "
            "an absolute path to a .keras file, or dlib-face+<one of those CNNs>"
        )

    def with_fallback(
        self, text: str, *, check_weights: bool = False, relative_to: str | Path | None = None
    ) -> ModelSpec:
        """This face model with the CNN ``text`` (parsed and checked) alongside."""
        shown = f"{self.name}{FALLBACK_SEP}{text}"
        if not self.is_face:
            raise ValueError(
                f"model {shown!r}: only {list(FACE_MODELS)} take a fallback CNN, not {self.name!r}"
            )
        wrong = ValueError(f"model {shown!r}: after {self.name}+ give a CNN name or .keras file")
        cnn = (text or "").strip()
        if not cnn or cnn in FACE_MODELS or split_face_model(cnn)[1] is not None:
            raise wrong
        try:
            spec = ModelSpec.parse(cnn, check_weights=check_weights, relative_to=relative_to)
        except ValueError as exc:
            raise ValueError(f"model {shown!r}: its fallback CNN: {exc}") from None
        if spec.is_face:
            raise wrong
        return ModelSpec(self.kind, self.name, spec)

    @property
    def is_face(self) -> bool:
        return self.kind == "face"

    @property
    def is_file(self) -> bool:
        return self.kind == "file"

    @property
    def is_application(self) -> bool:
        return self.kind == "application"

    def __str__(self) -> str:
        if self.fallback is not None:
            return f"{self.name}{FALLBACK_SEP}{self.fallback}"
        return self.name

    def identity(
        self,
        pooling: str = "avg",
        preprocessing: str = "none",
        resize: str = "stretch",
        runtime: str = "tensorflow",
    ) -> str:
        """A stable key for "these exact features": model (name or file content), pooling, pixels.

        Two runs with the same identity produce the same features for the same image, so
        features stored under this key are reused instead of running the CNN again. A
        ``runtime`` other than ``tensorflow`` ends the key (``...-openvino``): its features
        differ slightly, so they get their own store; TensorFlow's keys are as they always were.
        """
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize {resize!r} is not one of {RESIZE_MODES}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime {runtime!r} is not one of {RUNTIMES}")
        if self.is_face:
            # pooling and resizing do not apply to faces: they are found at full size; the
            # runtime only runs the fallback CNN (dlib runs the face part)
            key = f"{self.name}-v1"
            if self.fallback is not None:  # a folder name of the feature store: no "+"
                key += f"_with_{self.fallback.identity(pooling, preprocessing, resize, runtime)}"
            return key
        if self.is_application:
            base = self.name
        else:
            base = "file-" + file_sha256(self.name)[:16]
            if preprocessing not in PREPROCESSINGS:
                raise ValueError(f"preprocessing {preprocessing!r} is not one of {PREPROCESSINGS}")
            if preprocessing != "none":
                base += f"-{preprocessing}"
        key = f"{base}-{pooling}"
        if resize != "stretch":
            key += f"-{resize}"
        return key if runtime == "tensorflow" else f"{key}-{runtime}"


def check_model(model: str, *, check_weights: bool = False) -> str:
    """Return ``model``, normalised, if it names a usable application or ``.keras`` file.

    ``str(ModelSpec.parse(model, check_weights=check_weights))``: see ``ModelSpec.parse``.
    """
    return str(ModelSpec.parse(model, check_weights=check_weights))


def model_identity(
    model: str | ModelSpec,
    pooling: str = "avg",
    preprocessing: str = "none",
    resize: str = "stretch",
    runtime: str = "tensorflow",
) -> str:
    """``ModelSpec.identity`` of ``model`` (a model string is parsed and checked first)."""
    spec = model if isinstance(model, ModelSpec) else ModelSpec.parse(model)
    return spec.identity(pooling, preprocessing, resize, runtime)
