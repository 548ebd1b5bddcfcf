"""DeepImageFeaturizer's contract: params, parity with plain Keras, bad images, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from imgclf.models import ModelSpec
from spark_tasks.featurizer import DeepImageFeaturizer

pytestmark = pytest.mark.spark


def plain_keras_features(model_path, files, pooling="avg"):
    """Independent reference: Pillow bilinear resize of the whole image, RGB, float 0..255."""
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    _, h, w, _ = model.input_shape
    batch = []
    for f in files:
        with Image.open(f) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "P", "LA"):
                img = img.convert("RGBA")
                white = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, img)
            img = img.convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
        batch.append(np.asarray(img, dtype=np.float32))
    maps = model.predict(np.stack(batch), verbose=0)
    if maps.ndim == 2:
        return maps
    return maps.mean(axis=(1, 2)) if pooling == "avg" else maps.max(axis=(1, 2))


def _rows(spark, folder):
    from spark_tasks.image_files import read_images_dir

    return read_images_dir(spark, folder)


def test_params_are_validated_like_sparkdl():
    with pytest.raises(ValueError, match="modelName 'ResNet51' is not supported"):
        DeepImageFeaturizer(modelName="ResNet51")
    with pytest.raises(ValueError, match="pooling='sum'"):
        DeepImageFeaturizer(modelName="ResNet50", pooling="sum")
    with pytest.raises(ValueError, match="does not exist"):
        DeepImageFeaturizer(modelPath="/nowhere/model.keras")
    with pytest.raises(ValueError, match="batchSize=0"):
        DeepImageFeaturizer(modelName="VGG16", batchSize=0)
    f = DeepImageFeaturizer(modelName="InceptionV3")
    assert (f.getInputCol(), f.getOutputCol(), f.getPooling()) == (
        "content", "features", "avg",
    )  # fmt: skip
    assert f.identity() == "InceptionV3-avg"


def test_every_param_has_a_getter_and_a_setter(tiny_model):
    f = DeepImageFeaturizer(modelName="InceptionV3")
    assert (f.getModelName(), f.getModelPath(), f.getFallbackModel()) == ("InceptionV3", None, None)
    assert (f.getPreprocessing(), f.getPooling(), f.getResize()) == ("none", "avg", "stretch")
    assert (f.getBatchSize(), f.getHandleInvalid()) == (32, "skip")
    assert f.getErrorCol() == "featurizer_error"
    same = (
        f.setInputCol("bytes")
        .setOutputCol("vec")
        .setPooling("max")
        .setResize("pad")
        .setPreprocessing("tf")
        .setBatchSize(8)
        .setHandleInvalid("keep")
        .setErrorCol("why")
    )
    assert same is f
    assert (f.getInputCol(), f.getOutputCol(), f.getPooling(), f.getResize()) == (
        "bytes", "vec", "max", "pad",
    )  # fmt: skip
    assert (f.getPreprocessing(), f.getBatchSize(), f.getHandleInvalid(), f.getErrorCol()) == (
        "tf", 8, "keep", "why",
    )  # fmt: skip
    assert f.handleInvalid.name == "handleInvalid"  # pyspark's HasHandleInvalid
    assert f.identity() == "InceptionV3-max-pad"
    f.setModelName("dlib-face").setFallbackModel(str(tiny_model))
    assert f.modelSpec() == ModelSpec.parse(f"dlib-face+{tiny_model}")
    assert f.model() == f"dlib-face+{tiny_model}"
    g = DeepImageFeaturizer().setModelPath(str(tiny_model))
    assert g.getModelPath() == str(tiny_model) and g.modelSpec().is_file
    for setter, bad, message in [
        (f.setHandleInvalid, "ignore", "handleInvalid='ignore' is not one of"),
        (f.setPooling, "sum", "pooling='sum' is not one of"),
        (f.setResize, "crop", "resize='crop' is not one of"),
        (f.setPreprocessing, "raw", "preprocessing='raw' is not one of"),
        (f.setBatchSize, 0, "batchSize=0 must be >= 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            setter(bad)
    assert (f.getHandleInvalid(), f.getBatchSize()) == ("keep", 8)  # refused: unchanged
    with pytest.raises(ValueError, match="handleInvalid='ignore'"):
        DeepImageFeaturizer(modelName="VGG16", handleInvalid="ignore")
    with pytest.raises(ValueError, match="modelName 'dlib-face\\+VGG16' is not supported"):
        DeepImageFeaturizer(modelName="dlib-face+VGG16")  # fallbackModel says that
    with pytest.raises(ValueError, match="needs modelName or modelPath"):
        DeepImageFeaturizer().identity()


# As DefaultParamsWritable wrote it before the featurizer took HasHandleInvalid (Spark 4.2.0).
SAVED_BEFORE = {
    "class": "spark_tasks.featurizer.DeepImageFeaturizer",
    "timestamp": 1795924809362,
    "sparkVersion": "4.2.0",
    "uid": "DeepImageFeaturizer_5524795a1307",
    "paramMap": {
        "modelName": "dlib-face",
        "fallbackModel": "InceptionV3",
        "pooling": "max",
        "batchSize": 8,
        "handleInvalid": "keep",
        "errorCol": "why",
    },
    "defaultParamMap": {
        "outputCol": "features",
        "inputCol": "content",
        "preprocessing": "none",
        "pooling": "avg",
        "resize": "stretch",
        "batchSize": 32,
        "handleInvalid": "skip",
        "errorCol": "featurizer_error",
    },
}


def _check_loaded(g: DeepImageFeaturizer) -> None:
    assert g.uid == "DeepImageFeaturizer_5524795a1307"
    assert (g.getModelName(), g.getFallbackModel(), g.getModelPath()) == (
        "dlib-face", "InceptionV3", None,
    )  # fmt: skip
    assert (g.getPooling(), g.getBatchSize(), g.getHandleInvalid(), g.getErrorCol()) == (
        "max", 8, "keep", "why",
    )  # fmt: skip
    assert g.isSet(g.handleInvalid) and g.getOrDefault(g.handleInvalid) == "keep"
    unset = g.copy()
    unset.clear(unset.handleInvalid)
    assert unset.getHandleInvalid() == "skip"  # the default came back too
    assert g.identity() == "dlib-face-v1_with_InceptionV3-max"


def test_a_featurizer_saved_before_and_after_loads_with_its_params(spark, tmp_path):
    before = tmp_path / "before"
    (before / "metadata").mkdir(parents=True)
    (before / "metadata" / "part-00000").write_text(json.dumps(SAVED_BEFORE) + "\n")
    old = DeepImageFeaturizer.load(str(before))
    _check_loaded(old)
    old.write().save(str(tmp_path / "after"))
    saved = json.loads(spark.sparkContext.textFile(str(tmp_path / "after" / "metadata")).first())
    assert saved["paramMap"] == SAVED_BEFORE["paramMap"]
    assert saved["defaultParamMap"] == SAVED_BEFORE["defaultParamMap"]
    _check_loaded(DeepImageFeaturizer.load(str(tmp_path / "after")))
    fresh = DeepImageFeaturizer(modelName="VGG16").setHandleInvalid("error")
    fresh.save(str(tmp_path / "fresh"))
    loaded = DeepImageFeaturizer.load(str(tmp_path / "fresh"))
    assert (loaded.getModelName(), loaded.getHandleInvalid()) == ("VGG16", "error")


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_features_match_plain_keras(spark, tiny_model, images, pooling):
    f = DeepImageFeaturizer(modelPath=str(tiny_model), pooling=pooling, batchSize=4)
    rows = f.transform(_rows(spark, images)).select("path", "features").collect()
    assert len(rows) == 12
    got = {r["path"]: r["features"].toArray() for r in rows}
    paths = sorted(got)
    want = plain_keras_features(tiny_model, paths, pooling)
    diff = np.abs(np.stack([got[p] for p in paths]) - want).max()
    assert diff < 1e-4, diff


def test_workers_load_tensorflow_lean_and_out_of_the_garbage_collectors_way(
    spark, tiny_model, images
):
    """Keras imports scikit-learn (with scipy.stats) and matplotlib when installed; the workers
    that ran the featurizer never loaded them (seconds of each worker's TensorFlow import). And
    what they loaded is frozen (``gc.freeze``): TensorFlow and Keras alone are ~300,000 objects
    that each full collection would walk again (a third of the workers' CPU, measured)."""
    f = DeepImageFeaturizer(modelPath=str(tiny_model), batchSize=4)
    assert len(f.transform(_rows(spark, images)).select("features").collect()) == 12

    def loaded(batches):
        import gc
        import sys

        hidden = ("sklearn", "scipy.stats", "matplotlib")
        for batch in batches:
            extra = ",".join(m for m in hidden if m in sys.modules)
            yield batch.assign(
                keras="keras" in sys.modules, extra=extra, frozen=gc.get_freeze_count()
            )

    # Arrow-evaluated like the featurizer: the same (reused) Python workers
    seen = [
        (r["keras"], r["extra"], r["frozen"])
        for r in spark.range(4)
        .repartition(2)
        .mapInPandas(loaded, "id long, keras boolean, extra string, frozen long")
        .collect()
    ]
    with_keras = [(extra, frozen) for has_keras, extra, frozen in seen if has_keras]
    assert with_keras and all(extra == "" for extra, _ in with_keras), seen
    assert all(frozen > 200_000 for _, frozen in with_keras), seen


def test_flatten_keeps_every_spatial_feature(spark, tiny_model, images):
    f = DeepImageFeaturizer(modelPath=str(tiny_model), pooling="flatten")
    row = f.transform(_rows(spark, images)).select("features").first()
    assert row["features"].size == 14 * 14 * 6  # 32 -> conv3 30 -> stride-2 conv3 14


def test_corrupt_images_are_dropped_or_kept_with_the_reason(spark, tiny_model, images):
    (images / "red" / "broken.jpg").write_bytes(b"this is not an image at all")
    (images / "blue" / "truncated.jpg").write_bytes(
        (images / "blue" / "blue0.jpg").read_bytes()[:200]
    )
    df = _rows(spark, images)
    skip = DeepImageFeaturizer(modelPath=str(tiny_model)).transform(df)
    assert skip.count() == 12
    keep = DeepImageFeaturizer(modelPath=str(tiny_model), handleInvalid="keep").transform(df)
    bad = {r["path"].rsplit("/", 1)[1]: r for r in keep.filter("featurizer_error != ''").collect()}
    assert set(bad) == {"broken.jpg", "truncated.jpg"}
    assert bad["broken.jpg"]["features"] is None
    assert "UnidentifiedImageError" in bad["broken.jpg"]["featurizer_error"]
    with pytest.raises(Exception, match="undecodable image"):
        DeepImageFeaturizer(modelPath=str(tiny_model), handleInvalid="error").transform(df).count()


@pytest.mark.shared
def test_lite0_features_match_plain_keras_on_the_real_images(lite0_rows, lite0):
    rows = lite0_rows  # DeepImageFeaturizer(modelPath=lite0, batchSize=16) on ../shared
    assert len(rows) == 60
    assert {r["label"] for r in rows} == {"messi", "ronaldo"}
    got = {r["path"]: r["features"].toArray() for r in rows}
    paths = sorted(got)
    want = plain_keras_features(lite0, paths)
    assert want.shape == (60, 1280)
    assert np.abs(np.stack([got[p] for p in paths]) - want).max() < 1e-4


def test_the_runtime_is_a_checked_param_that_keys_its_own_features():
    f = DeepImageFeaturizer(modelName="InceptionV3")
    assert f.getRuntime() == "tensorflow" and not f.isDefined(f.runtime)
    assert f.setRuntime("openvino") is f
    assert (f.getRuntime(), f.identity()) == ("openvino", "InceptionV3-avg-openvino")
    f.setRuntime("openvino-bf16")
    assert f.identity() == "InceptionV3-avg-openvino-bf16"
    refused = "runtime='onnx' is not one of \\('tensorflow', 'openvino', 'openvino-bf16'\\)"
    with pytest.raises(ValueError, match=refused):
        f.setRuntime("onnx")
    assert f.getRuntime() == "openvino-bf16"  # refused: unchanged
    with pytest.raises(ValueError, match="runtime='OpenVINO' is not one of"):
        DeepImageFeaturizer(modelName="VGG16", runtime="OpenVINO")
    # tensorflow is the unset state: the identity and the saved params are as before the param
    f.setRuntime("tensorflow")
    assert (f.isSet(f.runtime), f.identity()) == (False, "InceptionV3-avg")
    g = DeepImageFeaturizer(modelName="VGG16", runtime="tensorflow")
    assert not g.isSet(g.runtime) and g.identity() == "VGG16-avg"
    face = DeepImageFeaturizer(modelName="dlib-face", fallbackModel="VGG16", runtime="openvino")
    assert face.identity() == "dlib-face-v1_with_VGG16-avg-openvino"


def test_an_openvino_featurizer_saves_loads_and_matches_keras(spark, tiny_model, images, tmp_path):
    f = DeepImageFeaturizer(modelPath=str(tiny_model), runtime="openvino", batchSize=4)
    f.save(str(tmp_path / "ov"))
    saved = json.loads(spark.sparkContext.textFile(str(tmp_path / "ov" / "metadata")).first())
    assert saved["paramMap"]["runtime"] == "openvino"
    g = DeepImageFeaturizer.load(str(tmp_path / "ov"))
    assert (g.getRuntime(), g.identity(), g.getModelPath()) == (
        "openvino", f.identity(), str(tiny_model),
    )  # fmt: skip
    assert g.identity().endswith("-avg-openvino")
    rows = g.transform(_rows(spark, images)).select("path", "features").collect()
    got = {r["path"]: r["features"].toArray() for r in rows}
    paths = sorted(got)
    assert len(paths) == 12
    want = plain_keras_features(tiny_model, paths)
    assert np.abs(np.stack([got[p] for p in paths]) - want).max() < 1e-4
    # a TensorFlow featurizer records no runtime at all (older code loads it)
    DeepImageFeaturizer(modelName="VGG16", runtime="tensorflow").save(str(tmp_path / "tf"))
    saved = json.loads(spark.sparkContext.textFile(str(tmp_path / "tf" / "metadata")).first())
    assert "runtime" not in saved["paramMap"] and "runtime" not in saved["defaultParamMap"]


@pytest.mark.shared
def test_lite0_openvino_features_match_tensorflow_on_the_real_images(spark, lite0, football):
    df = _rows(spark, football)
    features = {}
    for runtime in ("openvino", "openvino-bf16"):
        f = DeepImageFeaturizer(modelPath=str(lite0), batchSize=16, runtime=runtime)
        rows = f.transform(df).select("path", "features").collect()
        features[runtime] = {r["path"]: r["features"].toArray() for r in rows}
    paths = sorted(features["openvino"])
    assert len(paths) == 60 and sorted(features["openvino-bf16"]) == paths
    want = plain_keras_features(lite0, paths)
    f32 = np.abs(np.stack([features["openvino"][p] for p in paths]) - want).max()
    bf16 = np.abs(np.stack([features["openvino-bf16"][p] for p in paths]) - want).max()
    assert f32 < 1e-4, f32
    assert bf16 < 2.0, bf16  # reduced precision (measured 0.47 with bf16; 0 where f32 is used)


def test_the_cnn_beside_the_face_features_runs_on_openvino(spark, tiny_model, images):
    from spark_tasks.face import DIM

    f = DeepImageFeaturizer(
        modelName="dlib-face", fallbackModel=str(tiny_model), runtime="openvino"
    )
    rows = f.transform(_rows(spark, images)).select("path", "features").collect()
    got = {r["path"]: r["features"].toArray() for r in rows}
    paths = sorted(got)
    vectors = np.stack([got[p] for p in paths])
    assert not vectors[:, :DIM].any()  # flat colours: no face, zeros and face_found 0
    assert np.abs(vectors[:, DIM:] - plain_keras_features(tiny_model, paths)).max() < 1e-4
