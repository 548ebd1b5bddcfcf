"""modelName="dlib-face": detection fallback, the no-face path, the Transformer contract, and
parity with calling dlib directly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from spark_tasks import face
from spark_tasks.featurizer import DeepImageFeaturizer

pytestmark = pytest.mark.spark


class _Rect:
    def __init__(self, w):
        self._w = w

    def width(self):
        return self._w

    def height(self):
        return self._w


class _Det:
    def __init__(self, rect):
        self.rect = rect


def test_detectors_are_tried_in_order_and_the_largest_face_wins():
    calls = []

    def hog(img, upsample):
        calls.append(f"hog{upsample}")
        return [_Rect(10), _Rect(30)] if upsample == 2 else []

    model = face.FaceModel(hog=hog, cnn=lambda img, up: calls.append("cnn") or [],
                           landmarks=None, encoder=None)  # fmt: skip
    rect, how = model.detect(np.zeros((8, 8, 3), np.uint8))
    assert (how, rect.width()) == ("hog2", 30)
    assert calls == ["hog1", "hog2"]  # the CNN detector is not reached

    calls.clear()
    model.hog = lambda img, up: calls.append(f"hog{up}") or []
    model.cnn = lambda img, up: calls.append("cnn") or [_Det(_Rect(5))]
    assert model.detect(np.zeros((8, 8, 3), np.uint8))[1] == "cnn1"
    assert calls == ["hog1", "hog2", "cnn"]


def test_an_image_without_a_face_gets_zeros_and_face_found_0():
    model = face.FaceModel.load()
    features, how = model.embed(np.full((120, 160, 3), 128, np.uint8))
    assert how is None
    assert features.shape == (face.DIM,) and not features.any()


def _jpeg(color):
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, format="JPEG")
    return buf.getvalue()


def test_dlib_face_in_a_saved_pipeline(spark, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel

    df = spark.createDataFrame(
        [("a", bytearray(_jpeg((200, 0, 0)))), ("b", bytearray(b"not an image"))],
        "path string, content binary",
    )
    featurizer = DeepImageFeaturizer(modelName="dlib-face", handleInvalid="keep")
    assert featurizer.identity() == "dlib-face-v1"
    model = Pipeline(stages=[featurizer]).fit(df)
    model.write().overwrite().save(str(tmp_path / "m"))
    rows = {r["path"]: r for r in PipelineModel.load(str(tmp_path / "m")).transform(df).collect()}
    assert rows["a"]["features"].size == face.DIM and rows["a"]["features"][128] == 0.0
    assert (
        rows["b"]["features"] is None and "UnidentifiedImageError" in rows["b"]["featurizer_error"]
    )


def test_parity_with_dlib_called_directly_and_detector_use(face_rows, football):
    """The session's dlib-face features of the 60 real images (``face_rows``, what the other
    tests on real faces use) against dlib's own calls: where dlib's first detector (HOG,
    upsampled once) finds a face, the descriptor of the largest is the features' face block."""
    import dlib

    files = sorted(football.rglob("*.jp*g"))
    got = {r["path"]: r["features"].toArray() for r in face_rows}
    assert len(got) == 60 and set(got) == {str(f) for f in files}
    d = face.model_files()
    hog = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(d / "shape_predictor_5_face_landmarks.dat"))
    rec = dlib.face_recognition_model_v1(str(d / "dlib_face_recognition_resnet_model_v1.dat"))
    model = face.FaceModel.load()
    assert face.DETECTORS[0] == "hog1"  # what the model tries first, as called here
    used = {}
    for f in files:
        img = face.decode_rgb(f.read_bytes())
        found = hog(img, 1)
        how = "hog1" if found else model.detect(img)[1]  # the fallbacks: only where HOG missed
        used[how] = used.get(how, 0) + 1
        if how != "hog1":
            continue
        rect = max(found, key=lambda r: r.width() * r.height())
        direct = np.asarray(rec.compute_face_descriptor(img, sp(img, rect), 1))
        assert np.abs(got[str(f)][:128] - direct).max() < 1e-5
        assert got[str(f)][128] == 1.0
    assert sum(used.values()) == 60
    assert used.get("hog1", 0) >= 40 and used.get("hog2", 0) >= 1  # upsampling finds more


def test_cnn_fallback_puts_the_cnn_features_alongside_in_a_saved_pipeline(
    spark, tiny_model, tmp_path
):
    from pyspark.ml import Pipeline, PipelineModel

    df = spark.createDataFrame(
        [("a", bytearray(_jpeg((200, 0, 0)))), ("b", bytearray(_jpeg((0, 0, 200))))],
        "path string, content binary",
    )
    both = DeepImageFeaturizer(modelName="dlib-face", fallbackModel=str(tiny_model))
    cnn = DeepImageFeaturizer(modelPath=str(tiny_model))
    assert both.model() == f"dlib-face+{tiny_model}"
    assert both.identity() == f"dlib-face-v1_with_{cnn.identity()}"
    Pipeline(stages=[both]).fit(df).write().overwrite().save(str(tmp_path / "m"))
    loaded = PipelineModel.load(str(tmp_path / "m"))
    got = {r["path"]: r["features"].toArray() for r in loaded.transform(df).collect()}
    alone = {r["path"]: r["features"].toArray() for r in cnn.transform(df).collect()}
    for path, vec in got.items():
        assert not vec[: face.DIM].any()  # no face in a flat colour: zeros, face_found 0
        assert vec.size == face.DIM + alone[path].size
        assert np.abs(vec[face.DIM :] - alone[path]).max() < 1e-5
    assert np.abs(got["a"][face.DIM :] - got["b"][face.DIM :]).max() > 0  # really per image


def test_fallback_model_is_validated(tiny_model):
    with pytest.raises(ValueError, match="only goes with modelName"):
        DeepImageFeaturizer(modelName="InceptionV3", fallbackModel=str(tiny_model))
    with pytest.raises(ValueError, match=r"fallback CNN.*does not exist"):
        DeepImageFeaturizer(modelName="dlib-face", fallbackModel="/nope/x.keras")
