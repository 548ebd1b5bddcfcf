"""The OpenVINO runtime: numpy preprocessing as Keras', the IR converted once and cached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spark_tasks import keras_models, openvino_models

ROOT = Path(__file__).resolve().parents[2]


def test_numpy_preprocessing_is_keras_bit_for_bit():
    from keras.applications import imagenet_utils

    batch = np.random.default_rng(1).uniform(0, 255, (3, 5, 4, 3)).astype(np.float32)
    for mode in ("tf", "torch", "caffe"):
        want = imagenet_utils.preprocess_input(batch.copy(), mode=mode)
        got = openvino_models.preprocess_numpy(batch, mode)
        assert got.dtype == np.float32 and np.array_equal(got, want), mode
    assert openvino_models.preprocess_numpy(batch, "none") is batch
    with pytest.raises(ValueError, match="preprocessing 'raw' is not one of"):
        openvino_models.preprocess_numpy(batch, "raw")


def test_the_preprocessing_of_each_application_is_found_by_probing():
    import importlib

    from imgclf.models import APPLICATIONS

    expected = {"InceptionV3": "tf", "Xception": "tf", "ResNet50": "caffe", "VGG16": "caffe",
                "VGG19": "caffe"}  # fmt: skip
    for name, spec in APPLICATIONS.items():
        module = importlib.import_module(f"keras.applications.{spec.module}")
        got = openvino_models.preprocessing_mode(module.preprocess_input)
        assert got == expected.get(name, "none"), name
    with pytest.raises(ValueError, match="preprocessing is none of"):
        openvino_models.preprocessing_mode(lambda x: x / 2)


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in [folder, *folder.iterdir()]}


def test_the_ir_is_converted_once_then_read_from_the_cache(tiny_model, tmp_path):
    root = tmp_path / "cache"
    key = openvino_models.cache_key(str(tiny_model))
    assert key.startswith("file-") and key.count("-") == 3  # file-<sha16>-avg-<toolchain>
    # a staging folder left by a crashed conversion an hour ago is cleared; a recent one (maybe
    # another host's conversion in progress) is left alone
    root.mkdir()
    stale, recent = root / f".{key}.crashed.part", root / f".{key}.running.part"
    stale.mkdir()
    recent.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    before = openvino_models.conversions

    _, infer = openvino_models.load(str(tiny_model), root=root)
    assert openvino_models.conversions == before + 1
    folder = root / key
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.bin", "model.xml"]
    meta = json.loads((folder / "meta.json").read_text())
    assert (meta["size"], meta["dim"], meta["preprocessing"]) == ([32, 32], 6, "none")
    assert not stale.exists() and recent.exists()
    assert (folder.stat().st_mode & 0o777, (folder / "meta.json").stat().st_mode & 0o777) == (
        0o755, 0o644,
    )  # fmt: skip
    snapshot = _snapshot(folder)

    # the second load (and the bf16 runtime: a compile option) read the same IR
    again, infer_again = openvino_models.load(str(tiny_model), root=root, threads=1)
    _, infer_bf16 = openvino_models.load(str(tiny_model), runtime="openvino-bf16", root=root)
    assert openvino_models.conversions == before + 1
    assert _snapshot(folder) == snapshot
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == [
        recent.name, key,
    ]  # fmt: skip
    assert again.model.get_property("INFERENCE_NUM_THREADS") == 1

    keras_model = keras_models.load(str(tiny_model))
    batch = np.random.default_rng(2).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    want = keras_model.model.predict_on_batch(batch)
    for fn in (infer, infer_again):
        assert np.abs(fn(batch) - want).max() < 1e-4
    assert infer(batch[:1]).shape == (1, 6)  # any batch size
    assert np.isfinite(infer_bf16(batch)).all()


def test_a_runtime_that_is_not_openvino_is_refused(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="runtime 'tensorflow' is not one of the OpenVINO"):
        openvino_models.load(str(tiny_model), runtime="tensorflow", root=tmp_path)
    with pytest.raises(ValueError, match="dlib runs it, not OpenVINO"):
        openvino_models.cache_key("dlib-face")


CHILD = """
import json, sys
import numpy as np
from pathlib import Path
from spark_tasks import openvino_models as om
loaded, infer = om.load(sys.argv[1], root=Path(sys.argv[2]))
x = np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
print(json.dumps({"conversions": om.conversions, "features": infer(x).tolist()}))
"""


def test_two_processes_loading_a_new_model_at_once_convert_it_once(tiny_model, tmp_path):
    root = tmp_path / "cache"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tiny_model), str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(o["conversions"] for o in outputs) == [0, 1]
    assert outputs[0]["features"] == outputs[1]["features"]
    entries = sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock"))
    assert entries == [openvino_models.cache_key(str(tiny_model))]  # no staging folder left
