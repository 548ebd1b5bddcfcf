"""The catalogue of supported pretrained CNNs, as plain data.

Nothing here imports Keras: the DAG validates a ``model`` Param against this catalogue at trigger
time, and the Spark featurizer (``spark_tasks.keras_models``) turns a spec into a Keras model on
the executors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

POOLINGS = ("avg", "max", "flatten")
RESIZE_MODES = ("stretch", "pad")  # stretch = whole image to the input size (sparkdl's choice)
# How pixels (RGB, float 0..255) are scaled before a model file; "none": the file does it itself.
PREPROCESSINGS = ("none", "tf", "torch", "caffe")


@dataclass(frozen=True)
class AppSpec:
    """One ``keras.applications`` model: where it lives, its input size, its preprocessing."""

    name: str
    module: str  # keras.applications.<module>
    size: int  # square input size in pixels


APPLICATIONS: dict[str, AppSpec] = {
    spec.name: spec
    for spec in (
        # sparkdl's five, with the input sizes it used
        AppSpec("InceptionV3", "inception_v3", 299),
        AppSpec("Xception", "xception", 299),
        AppSpec("ResNet50", "resnet50", 224),
        AppSpec("VGG16", "vgg16", 224),
        AppSpec("VGG19", "vgg19", 224),
        # modern ones (preprocessing is built into these models)
        AppSpec("EfficientNetB0", "efficientnet", 224),
        AppSpec("EfficientNetV2B0", "efficientnet_v2", 224),
        AppSpec("EfficientNetV2S", "efficientnet_v2", 384),
        AppSpec("MobileNetV3Small", "mobilenet_v3", 224),
        AppSpec("MobileNetV3Large", "mobilenet_v3", 224),
        AppSpec("ConvNeXtTiny", "convnext", 224),
    )
}


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


def check_model(model: str) -> str:
    """Return ``model`` if it names a supported application or an existing ``.keras`` file.

    Raises ``ValueError`` naming the input and what is accepted.
    """
    model = (model or "").strip()
    if not model:
        raise ValueError("model is empty: give a Keras application name or a .keras file path")
    if model in APPLICATIONS or model in FACE_MODELS:
        return model
    face, fallback = split_face_model(model)
    if fallback is not None:
        if (
            not fallback.strip()
            or split_face_model(fallback)[1] is not None
            or fallback in FACE_MODELS
        ):
            raise ValueError(f"model {model!r}: after {face}+ give a CNN name or .keras file")
        try:
            return f"{face}{FALLBACK_SEP}{check_model(fallback)}"
        except ValueError as exc:
            raise ValueError(f"model {model!r}: its fallback CNN: {exc}") from None
    if is_model_file(model):
        path = Path(model).expanduser()
        if not path.is_absolute():
            raise ValueError(f"model file {model!r} must be an absolute path")
        if path.suffix != ".keras":
            raise ValueError(f"model file {model!r} must end in .keras (Keras 3 format)")
        if not path.is_file():
            raise ValueError(f"model file {model!r} does not exist")
        return str(path)
    close = [n for n in (*APPLICATIONS, *FACE_MODELS) if n.lower() == model.lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"unknown model {model!r}{hint}: supported are "
        f"{', '.join(sorted(APPLICATIONS) + list(FACE_MODELS))}, "
        "an absolute path to a .keras file, or dlib-face+<one of those CNNs>"
    )


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_identity(
    model: str, pooling: str = "avg", preprocessing: str = "none", resize: str = "stretch"
) -> str:
    """A stable key for "these exact features": model (name or file content), pooling, pixels.

    Two runs with the same identity produce the same features for the same image, so features
    stored under this key are reused instead of running the CNN again.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize {resize!r} is not one of {RESIZE_MODES}")
    if model in FACE_MODELS:
        return f"{model}-v1"  # pooling and resizing do not apply: faces are found at full size
    face, fallback = split_face_model(model)
    if fallback is not None:
        # a folder name of the feature store: no "+"
        return f"{face}-v1_with_{model_identity(fallback, pooling, preprocessing, resize)}"
    if model in APPLICATIONS:
        base = model
    else:
        base = "file-" + file_sha256(model)[:16]
        if preprocessing not in PREPROCESSINGS:
            raise ValueError(f"preprocessing {preprocessing!r} is not one of {PREPROCESSINGS}")
        if preprocessing != "none":
            base += f"-{preprocessing}"
    key = f"{base}-{pooling}"
    return key if resize == "stretch" else f"{key}-{resize}"
