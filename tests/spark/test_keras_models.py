"""Building feature extractors: model files, application names, and weights missing offline."""

from __future__ import annotations

import urllib.error

import pytest

from spark_tasks import keras_models


def test_model_file_input_size_and_pooled_dim(tiny_model):
    loaded = keras_models.load(str(tiny_model), pooling="avg")
    assert loaded.size == (32, 32)
    assert loaded.dim == 6
    assert keras_models.load(str(tiny_model), pooling="flatten").dim == 14 * 14 * 6


def test_missing_imagenet_weights_offline_name_the_file_and_the_cache(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", offline)
    with pytest.raises(RuntimeError) as err:
        keras_models.load("VGG16")
    text = str(err.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in text
    assert str(tmp_path / "keras" / "models") in text
    assert "ImageNet weights of VGG16" in text


def test_unknown_names_and_bad_files_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"unknown model 'vgg16'.*did you mean 'VGG16'"):
        keras_models.load("vgg16")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(Exception, match=r"bad\.keras|zip|File"):
        keras_models.load(str(bad))
