"""The serving flavor (``spark_tasks.serving``): a pyfunc with no Spark that predicts what the
Spark pipeline predicts, from the model's own artifacts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.serving.conftest import TOLERANCE, parity_on_real_and_augmented

pytestmark = [pytest.mark.spark, pytest.mark.shared]


def test_served_probabilities_equal_the_pipelines_on_real_and_augmented_images(champion):
    """The OpenVINO runtime (the TensorFlow one: test_flavor_tf.py; dlib: test_flavor_face.py)."""
    parity_on_real_and_augmented(champion, "openvino")


def test_the_champion_loads_in_a_fresh_process_without_its_cnn_file_a_jvm_or_tensorflow(
    champion, tmp_path
):
    """The .keras file the run read is gone; an empty data root has no IR cache either: the
    model version's own artifacts are all it has. Neither pyspark nor TensorFlow is imported."""
    assert not champion.cnn_copy.exists()
    name = "messi/messi1.jpeg"
    script = textwrap.dedent(f"""
        import json, sys
        import mlflow.pyfunc
        import psutil
        m = mlflow.pyfunc.load_model("models:/football_classifier@champion")
        out = m.predict({{"content": [open({str(champion.images[name])!r}, "rb").read()]}})
        row = out.to_dict("records")[0]
        row["heavy"] = [k for k in ("pyspark.ml", "tensorflow", "keras") if k in sys.modules]
        row["children"] = [p.name() for p in psutil.Process().children(recursive=True)]
        spark = sys.modules.get("pyspark")
        row["spark"] = bool(spark and spark.SparkContext._active_spark_context)
        print(json.dumps(row))
    """)
    env = {
        **{k: v for k, v in __import__("os").environ.items() if k != "IMGCLF_CACHE_DIR"},
        "IMGCLF_HOME": str(tmp_path / "empty-home"),
        "MLFLOW_TRACKING_URI": champion.settings.mlflow_tracking_uri,
        "MLFLOW_REGISTRY_URI": champion.settings.mlflow_registry_uri,
    }
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
        check=False, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])
    want_class, want = champion.spark[name]
    assert row["class"] == want_class and row["error"] == ""
    got = [row["probabilities"][label] for label in champion.labels]
    assert np.allclose(got, want, rtol=0, atol=TOLERANCE)
    # MLflow imports the pyspark package when it is installed; no Spark ML, no JVM, no Spark
    assert (row["spark"], row["children"]) == (False, [])
    assert row["heavy"] == []  # the OpenVINO IR came with the model: no TensorFlow to convert
    assert not (tmp_path / "empty-home" / "cache" / "openvino").exists()


def test_the_logged_model_carries_both_flavors_its_cnn_and_what_it_needs(champion, tmp_path):
    import mlflow.artifacts
    import yaml

    from imgclf import tracking

    with tracking._fluent(champion.settings):
        local = mlflow.artifacts.download_artifacts(champion.model_uri, dst_path=str(tmp_path))
    from pathlib import Path

    root = Path(local)
    mlmodel = yaml.safe_load((root / "MLmodel").read_text())
    assert set(mlmodel["flavors"]) == {"spark", "python_function"}
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "spark_tasks.serving"
    served = root / "serving"
    assert (served / "cnn" / "lite0.keras").stat().st_size > 10_000_000
    assert {p.name for p in (served / "openvino").iterdir()} >= {"model.xml", "model.bin"}
    featurizer = json.loads((served / "featurizer.json").read_text())
    assert (featurizer["model"], featurizer["runtime"]) == ("lite0.keras", "openvino")
    requirements = (root / "requirements.txt").read_text().split()
    for dist in ("mlflow", "pyspark", "tensorflow-cpu", "keras", "pillow", "openvino"):
        assert any(r.startswith(f"{dist}==") for r in requirements), (dist, requirements)
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert inputs == [{"type": "binary", "name": "content", "required": True}]


def test_the_spark_flavor_reads_the_cnn_logged_with_it_not_the_deleted_one(champion, spark):
    from spark_tasks import classification, image_files, serving

    assert not champion.cnn_copy.exists()
    model = serving.load_pipeline(champion.settings, "models:/football_classifier@champion")
    path = model.stages[0].getModelPath()
    assert path.startswith(str(champion.settings.cache_dir / "models")) and Path(path).is_file()
    names = ["messi/messi1.jpeg", "ronaldo/ronaldo1.jpeg"]
    rows = model.transform(image_files.read_images(spark, [str(champion.images[n]) for n in names]))
    scored = rows.select("path", classification.PREDICTED, "probability").collect()
    got = {r["path"].rsplit("/", 2)[-2] + "/" + r["path"].rsplit("/", 1)[-1]: r
           for r in scored}  # fmt: skip
    for name in names:
        want_class, want = champion.spark[name]
        assert got[name][classification.PREDICTED] == want_class
        assert np.allclose(list(got[name]["probability"]), want, rtol=0, atol=TOLERANCE)
    again = serving.load_pipeline(champion.settings, "models:/football_classifier@champion")
    assert again.stages[0].getModelPath() == path  # downloaded once
