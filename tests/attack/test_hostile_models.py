"""Hostile model files: a ``.keras`` is a zip archive a user hands us by path, as untrusted as an
image. A zip bomb is refused from its directory alone (fast, in little memory); a model that
would run Python code on load is refused in one line, before Spark, and again by Keras' safe
mode where the jobs load it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.attack.test_hostile_remote import _imgclf

GIB = 1 << 30

MEASURE = """
import json, sys, time
started = time.perf_counter()
from imgclf import params
try:
    params.validate({"model": sys.argv[1]}, check_weights=False)
    outcome = "accepted"
except ValueError as exc:
    outcome = str(exc)
# VmHWM, not ru_maxrss: the latter survives exec, so it would report pytest's own peak
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - started, "outcome": outcome,
                  "max_rss_mb": peak_kb / 1024}))
"""


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A real zip bomb in the shape of a Keras archive: a ~9 MB file whose ``config.json``
    inflates to 2 GiB (what Keras' loader would read into memory and parse)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        with archive.open("config.json", "w", force_zip64=True) as fh:
            block = b" " * (16 << 20)
            for _ in range(2 * GIB // len(block)):
                fh.write(block)
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
    assert path.stat().st_size < 16 << 20
    return path


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory) -> Path:
    """A real Keras model with a Lambda layer: loading it unsafely runs its Python code."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="doubler")(inputs)
    x = keras.layers.Conv2D(4, 3)(x)
    path = tmp_path_factory.mktemp("lambda") / "lambda.keras"
    keras.Model(inputs, x).save(path)
    return path


def test_a_zip_bomb_model_is_refused_in_under_a_second_and_little_memory(bomb):
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(bomb)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"zip bomb refused: {result}")
    assert result["outcome"].startswith("invalid run parameters: model file "), result
    assert "'config.json' declares 2,147,483,648 bytes" in result["outcome"]
    assert "refused before extracting" in result["outcome"] and "\n" not in result["outcome"]
    assert result["seconds"] < 1.0, result  # the interpreter's imports included
    assert result["max_rss_mb"] < 300, result


def test_the_total_declared_size_is_a_setting(tiny_model, monkeypatch):
    from imgclf.models import check_model

    assert check_model(str(tiny_model)) == str(tiny_model)
    monkeypatch.setenv("IMGCLF_MAX_MODEL_BYTES", "1000")
    with pytest.raises(ValueError, match=r"over the limit of 1,000 \(IMGCLF_MAX_MODEL_BYTES\)"):
        check_model(str(tiny_model))


def test_a_zip_bomb_is_refused_by_the_command_line_before_spark(bomb, tmp_path):
    (tmp_path / "images").mkdir()
    cmd = [*_imgclf(), "featurize", "--images", str(tmp_path / "images"), "--model", str(bomb),
           "--out", str(tmp_path / "f.parquet")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "declares 2,147,483,648 bytes" in out.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "f.parquet").exists()


def test_a_lambda_model_is_one_line_at_trigger_time(lambda_model):
    from imgclf import params

    with pytest.raises(ValueError, match=r"^invalid run parameters: model file") as err:
        params.validate({"model": str(lambda_model)}, check_weights=False)
    message = str(err.value)
    assert message == (
        f"invalid run parameters: model file {str(lambda_model)!r}: layer 'doubler' holds Python "
        "code (a serialized lambda), which Keras' safe mode refuses to load (arbitrary code "
        "execution)"
    )


def test_a_lambda_model_is_one_line_on_the_command_line(lambda_model, tmp_path):
    (tmp_path / "images").mkdir()
    cmd = [*_imgclf(), "featurize", "--images", str(tmp_path / "images"),
           "--model", str(lambda_model), "--out", str(tmp_path / "f.parquet")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "layer 'doubler' holds Python code" in out.stderr.strip().splitlines()[-1]


def test_where_the_jobs_load_it_keras_safe_mode_refuses_in_one_line(lambda_model, monkeypatch):
    """Behind the archive check (switched off here), the executors' loader keeps Keras' safe
    mode on and turns its refusal into one line naming the file."""
    from imgclf import model_files
    from spark_tasks import keras_models

    monkeypatch.setattr(model_files, "_python_code_in", lambda path: None)
    with pytest.raises(ValueError, match="Keras refused to load it") as err:
        keras_models.load(str(lambda_model))
    message = str(err.value)
    assert message.startswith(f"model file {str(lambda_model)!r}: Keras refused to load it: ")
    assert "Lambda" in message and "\n" not in message and len(message) < 500


def test_a_deeply_nested_config_is_refused_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", "[" * 200_000 + "]" * 200_000)
        archive.writestr("model.weights.h5", b"x")
    from imgclf.models import check_model

    with pytest.raises(ValueError, match=r"its config.json is not readable JSON \(RecursionError"):
        check_model(str(path))
