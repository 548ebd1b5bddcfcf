"""The run's Spark jobs in-session (train, tune, challenge): the logic the DAG tests need not
re-prove. One local session, a tiny real Keras model, images made here; the data root and the
pinned params are exactly what the DAG's tasks leave for the jobs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from imgclf import dag_tasks, registry, runs, tracking
from imgclf.files import atomic_write_json
from imgclf.settings import Settings
from spark_tasks import challenge, local_lr, train, tune
from spark_tasks.job import JobContext, context
from tests.fixtures_images import make_images

pytestmark = pytest.mark.spark

CLASSES = {"red": "data/red", "blue": "data/blue"}


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_model, seed_mlflow_store):
    """A data root with 8+8 images in raw/ and their manifest, as the download leaves it."""
    home = seed_mlflow_store(tmp_path_factory.mktemp("home"))
    raw = make_images(home / "raw", per_class=8)
    files = [{"path": f"{p.parent.name}/{p.name}"} for p in sorted(raw.glob("*/*"))]
    atomic_write_json(raw / "manifest.json", {"files": files, "fingerprint": "f"})
    return home


def start(home, run_id: str, model, **params) -> JobContext:
    settings = dataclasses.replace(Settings.from_env(), home=home)
    conf = {
        "model": str(model), "classes": CLASSES, "min_images_per_class": 8,
        "test_fraction": 0.25, "cv_folds": 2, "min_accuracy": 0.5,
        "tune_grid": {"reg_param": [0.0, 0.5], "elastic_net_param": [0.0, 1.0], "max_iter": [20]},
        **params,
    }  # fmt: skip
    checked = runs.save_params(settings, run_id, conf)
    runs.open_run(settings, "football_classifier", run_id, checked)
    manifest = settings.manifest_copy(run_id)
    manifest.write_bytes((settings.raw_dir / "manifest.json").read_bytes())
    return context(run_id, home)


def test_train_featurizes_each_image_once_per_featurizer_and_fits(spark, home, tiny_model):
    ctx = start(home, "r1", tiny_model)
    m = train.run(ctx, spark)
    assert m["featurized_images"] == 16 and (m["n_train"], m["n_test"]) == (12, 4)
    assert m["params"] == {"maxIter": 30, "regParam": 0.0, "elasticNetParam": 0.0}
    assert m["accuracy"] >= 0.75  # red vs blue: better than chance even for a tiny random CNN
    assert json.loads((ctx.run_dir / "baseline.json").read_text())["model"] == str(tiny_model)
    assert (ctx.run_dir / "baseline" / "model" / "metadata").is_dir()
    # features never repeat: no Parquet dictionary tried for them (spark_conf)
    import pyarrow.parquet as pq

    stored = pq.ParquetFile(next((home / "features").rglob("*.parquet"))).metadata.row_group(0)
    encodings = {e for i in range(stored.num_columns) for e in stored.column(i).encodings}
    assert encodings and not encodings & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}, encodings
    again = train.run(start(home, "r2", tiny_model, seed=5), spark)
    assert again["featurized_images"] == 0  # the store had them: the CNN does not run again
    assert again["featurizer"] == m["featurizer"]
    assert {p["path"] for p in again["predictions"]} != {p["path"] for p in m["predictions"]}


def test_tune_reuses_features_and_chooses_what_crossvalidator_over_the_pipeline_chooses(
    spark, home, tiny_model, monkeypatch
):
    """Both engines against the plain reference: CrossValidator over the whole Pipeline, one
    fit at a time, on the split as the train job wrote it. Same folds, same seed: same scores,
    same choice, whether the fits were replayed (local_lr, in one Spark task) or ran as Spark
    jobs (the fallback, here forced by the replay's fence: "another" pyspark)."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
    from pyspark.sql import functions as F

    from spark_tasks import classification

    # both of the replay's optimizers (L-BFGS for L2 alone, OWL-QN once there is an L1 part),
    # each cut off and run longer, all short: each iteration of the fallback's and the
    # reference's Spark fits is a Spark job; nor is the baseline what this is about
    grid_values = {"reg_param": [0.5], "elastic_net_param": [0.0, 0.5], "max_iter": [3, 10]}
    ctx = start(home, "r3", tiny_model, tune_grid=grid_values, max_iter=5)
    train.run(ctx, spark)
    spark.catalog.clearCache()
    fast = tune.run(ctx, spark)
    # nothing cached is left: the split is read from its file, and the cross-validation's one
    # cached partition is dropped once it is done (a cache of the whole split would hold all
    # its features on the driver's heap for the rest of the job)
    assert spark.sparkContext._jsc.getPersistentRDDs().isEmpty()
    assert fast["featurized_images"] == 0  # the stored features: the CNN does not run
    cv = fast["cv"]
    assert (cv["folds"], cv["metric"], len(cv["grid"])) == (2, "accuracy", 4)
    assert cv["engine"] == "replay" and cv["refit_disagreement"] < 1e-9 and cv["closeness"] > 1e-8
    assert fast["cv"]["best_mean"] == max(g["mean"] for g in fast["cv"]["grid"])
    monkeypatch.setattr(local_lr, "REPLAYED_PYSPARK", ("0.0.0",))  # another pyspark: no replay
    jobs = tune.run(ctx, spark)
    assert jobs["cv"]["engine"] == "spark"
    assert "replays the LogisticRegression of pyspark 0.0.0" in jobs["cv"]["replay_declined"]
    assert tune.cv_parallelism(2, 8) == 8 and tune.cv_parallelism(2, 48) == 8  # 4 per core

    data = spark.read.parquet(str(ctx.run_dir / "dataset.parquet"))
    split = data.filter(F.col("split") == "train")
    lr = LogisticRegression()
    grid = (
        ParamGridBuilder()
        .addGrid(lr.regParam, grid_values["reg_param"])
        .addGrid(lr.elasticNetParam, grid_values["elastic_net_param"])
        .addGrid(lr.maxIter, grid_values["max_iter"])
        .build()
    )
    reference = CrossValidator(
        estimator=classification.classifier_pipeline(classification.fit_label_indexer(split), lr),
        estimatorParamMaps=grid,
        evaluator=MulticlassClassificationEvaluator(
            labelCol=classification.LABEL_INDEX, metricName="accuracy"
        ),
        numFolds=2, foldCol="fold", seed=ctx.params["seed"], parallelism=1,
    ).fit(split)  # fmt: skip
    best = max(range(len(grid)), key=lambda i: reference.avgMetrics[i])
    for result in (fast, jobs):
        assert [g["mean"] for g in result["cv"]["grid"]] == pytest.approx(reference.avgMetrics)
        assert result["params"] == {p.name: v for p, v in grid[best].items()}
        assert result["accuracy"] == fast["accuracy"]  # the same refit model on the test split


def test_face_identity_features_reach_100_percent_on_the_real_images(spark, football, face_rows,
                                                                     tmp_path):  # fmt: skip
    """dlib-face on the 60 real images, the default split (seed 12, 24 test images):
    1.000, and the one image without a detectable face listed (classified right anyway). The
    store holds their features already (``face_rows``, checked against dlib in test_face): the
    job reads them, as a retrain does."""
    home = tmp_path / "home"
    (home / "raw").mkdir(parents=True)
    files = []
    for image in sorted(football.glob("*/*")):
        (home / "raw" / image.parent.name).mkdir(exist_ok=True)
        (home / "raw" / image.parent.name / image.name).symlink_to(image)
        files.append({"path": f"{image.parent.name}/{image.name}"})
    atomic_write_json(home / "raw" / "manifest.json", {"files": files, "fingerprint": "f"})
    classes = {"messi": "CH13/football/messi", "ronaldo": "CH13/football/ronaldo"}
    ctx = start(home, "face", "dlib-face", classes=classes, min_images_per_class=30,
                test_fraction=0.4, cv_folds=3, min_accuracy=0.8)  # fmt: skip
    stored = spark.createDataFrame(face_rows).select("sha256", "features")
    stored.coalesce(1).write.parquet(str(ctx.settings.features_dir / "dlib-face-v1"))
    m = train.run(ctx, spark)
    assert (m["featurizer"], m["featurized_images"]) == ("dlib-face-v1", 0)
    assert (m["n_train"], m["n_test"]) == (36, 24) and m["accuracy"] == 1.0
    assert [Path(p).name for p in m["no_face_images"]] == ["messi20.jpeg"]


def test_challenge_logs_the_candidate_and_scores_the_champion_on_the_same_images(
    spark, home, tiny_model
):
    ctx = start(home, "r4", tiny_model)
    first = train.run(ctx, spark)
    dag_tasks.gate(ctx.settings, "r4", ctx.params, {"fingerprint": "f"})
    out = challenge.run(ctx, spark)
    assert out["champion"] is None and out["candidate_accuracy"] == first["accuracy"]
    logged = tracking.load_model(ctx.settings, out["candidate_model_uri"])  # MLflow's Spark flavor
    assert type(logged.stages[0]).__name__ == "DeepImageFeaturizer"
    assert dag_tasks.promote(ctx.settings, "r4", 0.0)["version"] == "1"

    worse = start(home, "r5", tiny_model, reg_param=100, elastic_net_param=1.0, min_accuracy=0)
    m = train.run(worse, spark)
    assert m["accuracy"] == 0.5  # every coefficient zero: one class for all
    dag_tasks.gate(worse.settings, "r5", worse.params, {"fingerprint": "f"})
    out = challenge.run(worse, spark)
    assert out["comparable"] and out["reused_features"]  # same featurizer: stored features
    assert out["champion_accuracy"] == first["accuracy"] and out["n_test"] == 4
    decision = dag_tasks.promote(worse.settings, "r5", 0.0)
    assert (decision["version"], decision["registered"]) == (None, "2")  # a version, not champion
    assert registry.champion(worse.settings)["version"] == "1"
    assert "not promoted" in registry.version(worse.settings, "2")["tags"]["challenge_decision"]


def test_a_rejected_approval_registers_the_version_tagged_and_promotes_nothing(
    spark, tiny_model, tmp_path, seed_mlflow_store
):
    """approval=always: the request (body, report ready), then a person's Reject: promote
    registers the version with who and why, and no alias moves. (The wait itself, through a
    real scheduler: tests/dags/test_approval_server.py.)"""
    from imgclf import approval

    home = seed_mlflow_store(tmp_path / "home")
    raw = make_images(home / "raw", per_class=8)
    files = [{"path": f"{p.parent.name}/{p.name}"} for p in sorted(raw.glob("*/*"))]
    atomic_write_json(raw / "manifest.json", {"files": files, "fingerprint": "f"})
    ctx = start(home, "a1", tiny_model, approval="always", max_iter=5)  # the fit is not the point
    train.run(ctx, spark)
    dag_tasks.gate(ctx.settings, "a1", ctx.params, {"fingerprint": "f"})
    challenge.run(ctx, spark)
    request = dag_tasks.approval_request(ctx.settings, "a1", "http://127.0.0.1:9/report")
    assert request["ask"] and request["timeout_hours"] == 24.0
    assert (
        "no champion yet" in request["body"]
        and "[Run report](http://127.0.0.1:9/report)" in (request["body"])
    )
    assert (ctx.run_dir / "report.html").is_file()  # the approver can open it now
    answer = approval.answered(["Reject"], {"id": "bob", "name": "bob"},
                               "2026-12-05T10:00:00+00:00", "the kit", timed_out=False)  # fmt: skip
    dag_tasks.record_approval(ctx.settings, "a1", answer)
    out = dag_tasks.promote(ctx.settings, "a1", 0.0)
    assert (out["version"], out["registered"]) == (None, "1")
    assert registry.champion(ctx.settings) is None
    tags = registry.version(ctx.settings, "1")["tags"]
    assert (tags["approval"], tags["approval_by"], tags["approval_comment"]) == (
        "rejected", "bob", "the kit",
    )  # fmt: skip
    runs.record(ctx.settings, "a1")
    page = (ctx.run_dir / "report.html").read_text()
    assert "human approval: <b class='fail'>rejected</b>" in page and "the kit" in page
    assert "not promoted: rejected by bob" in page
    run = tracking.client(ctx.settings).get_run(
        json.loads((ctx.run_dir / "mlflow.json").read_text())["mlflow_run_id"]
    )
    assert run.data.tags["approval"] == "rejected" and run.data.tags["approval_by"] == "bob"


def test_every_featurizer_identity_is_a_feature_store_folder(tiny_model, tmp_path):
    """dlib-face+<CNN> once made a '+' identity that the store refused, mid-run."""
    from imgclf.models import model_identity
    from spark_tasks.feature_store import FeatureStore

    for model in ("InceptionV3", "dlib-face", f"dlib-face+{tiny_model}", str(tiny_model)):
        for pooling in ("avg", "max", "flatten"):
            identity = model_identity(model, pooling)
            assert FeatureStore(None, tmp_path, identity).path.name == identity


def test_a_failing_data_check_stops_the_train_job_before_any_fit(spark, home, tiny_model):
    """The tiny random CNN sees every red and blue image alike: near-duplicates everywhere,
    so leakage_check=fail stops the job, and the reason reaches the run's failure record."""
    from spark_tasks.data_checks import DataCheckError

    ctx = start(home, "leaky", tiny_model, leakage_check="fail", near_duplicate_similarity=0.9)
    with pytest.raises(DataCheckError, match=r"leakage: .* test images"):
        train.run(ctx, spark)
    assert not (ctx.run_dir / "baseline.json").exists()
    assert not (ctx.run_dir / "baseline" / "model").exists()
    checks = json.loads((ctx.run_dir / "datachecks.json").read_text())
    assert checks["failures"] and checks["metrics"]["leaked_test_images"] >= 1
    runs.record_failure(ctx.settings, "leaky", "train", RuntimeError("spark-submit exited 1"))
    failure = json.loads((ctx.run_dir / "failure.json").read_text())
    assert failure["error"].startswith("data checks failed: leakage:")
    # the run's record still writes a report: which check stopped it, and the files it names
    out = runs.record(ctx.settings, "leaky")
    page = (ctx.run_dir / "report.html").read_text()
    assert out["report"] == str(ctx.run_dir / "report.html")
    assert "STOPPED before training" in page and "leakage:" in page and "(task train)" in page
    pair = checks["findings"]["leakage"]["examples"][0]
    assert "/".join(Path(pair["test"]).parts[-2:]) in page
    assert "/".join(Path(pair["train"]).parts[-2:]) in page
