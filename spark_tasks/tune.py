"""spark-submit entry point: choose LR params by cross-validation on the training split.

Reads the features the train job stored (``runs/<run id>/dataset.parquet``): the CNN runs zero
times here. Cross-validation uses the deterministic stratified folds of the train split only;
the chosen model is refit on the whole train split by Spark ML and evaluated once on the test
split.

Two engines, one choice. Where the training split fits in one Python worker
(``REPLAY_MAX_VALUES``) and the fits are binomial, the grid's fits are Spark ML's, replayed step
for step in NumPy (``spark_tasks.local_lr``) by one Spark task that reads the cached split: the
same folds, the same accuracy, the same tie rule as ``CrossValidator``, in milliseconds instead
of a Spark job per L-BFGS step. The driver gets back the scores, the choice and the replay's fit
of it, never the features: it holds nothing that grows with the images. Spark's own refit of the
chosen point is then compared with the replay of it; if they disagree, or the replay declines
for another reason (``choose_by_replay``: data too big, not binomial, a held-out row on a
decision boundary, an error), ``CrossValidator`` runs as before and ``tuned.json`` says why.

Writes ``runs/<run id>/tuned/model/`` (featurizer + classifier) and ``tuned.json``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any, Literal, cast

from spark_tasks.job import JobContext, Phases, main

log = logging.getLogger(__name__)

CV_METRIC: Literal["accuracy"] = "accuracy"  # not logLoss or f1: the gate judges accuracy
# The replay's bound: rows x features of the training split held as float64 by the one Python
# worker that replays the grid, with a scaled copy per fold (6,000 images at 1,280 features:
# 4.6 M; at the bound ~0.5 GB in that worker, outside spark.executor.memory). A Python error in
# the task comes back as the reason to decline; a killed worker fails the task, which Spark
# retries (spark.task.maxFailures) before the job fails and CrossValidator runs.
REPLAY_MAX_VALUES = 16_000_000
# The replay of the chosen point against Spark's refit: relative difference of
# the coefficients (measured: below 1e-10 on the real features; a different optimizer path
# would differ in the second digit).
REFIT_AGREEMENT = 1e-6
# ... and how near a held-out row may come to a replayed fit's decision boundary (min |margin|
# over the size of its terms) before a ~1e-11 difference between the engines could flip it.
CLOSE_CALL = 1e-8
# Fits in flight per core. On tuning-sized data an LR fit is a chain of tiny Spark jobs (one or
# more per L-BFGS iteration) whose cost is scheduling, not arithmetic: one thread per core
# leaves the cores waiting between jobs (measured on 2 cores, 48 fits: 2 threads 21.5 s,
# 8 threads 14.6 s, 16 no better).
FITS_PER_CORE = 4


def cv_parallelism(cores: int, grid_size: int) -> int:
    """CrossValidator's ``parallelism``: enough fits in flight to hide each job's latency."""
    return max(1, min(grid_size, FITS_PER_CORE * max(1, cores)))


def cv_data(train, indexer):
    """The cross-validation's input: labels indexed once (not per fit: each fit of a Pipeline
    re-plans every stage), in one cached partition, so each L-BFGS step is a one-task job.
    A different partitioning may change a float's last bits, never the choice: a test compares
    the choice with CrossValidator over the Pipeline on the split as written."""
    return indexer.transform(train).coalesce(1).cache()


@dataclass(frozen=True)
class ReplayCV:
    """The replay's result: ``CrossValidator``'s means, stds and choice (the first best, as its
    ``argmax``), how near a held-out row came to a decision boundary, and the replay's fit of
    the chosen point on the whole split (to check against Spark's)."""

    means: list[float]
    stds: list[float]
    best: int
    closeness: float
    coefficients: list[float]
    intercept: float

    def disagreement(self, spark_model) -> float:
        """Relative difference of Spark's fit of the chosen point and the replay of it."""
        import numpy as np

        ours = np.append(self.coefficients, self.intercept)
        theirs = np.append(spark_model.coefficients.toArray(), spark_model.intercept)
        return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-300))


_REPLAY_SCHEMA = (
    "declined string, means array<double>, stds array<double>, best int, closeness double, "
    "coefficients array<double>, intercept double"
)


def replay_task(num_folds: int, points: list[dict]):
    """``mapInPandas``'s function over the one partition of the training split: the grid's
    cross-validation and the chosen point's fit on the whole split, replayed; one row out.
    Whatever goes wrong comes back as ``declined`` (a bug or an input the replay cannot take),
    not as a failed task that Spark would retry."""

    def replay(batches):
        import numpy as np
        import pandas as pd

        from spark_tasks import local_lr

        def row(declined="", means=(), stds=(), best=-1, closeness=0.0, coef=(), icpt=0.0):
            return pd.DataFrame({
                "declined": [declined], "means": [list(means)], "stds": [list(stds)],
                "best": [best], "closeness": [closeness], "coefficients": [list(coef)],
                "intercept": [icpt],
            })  # fmt: skip

        try:
            parts = list(batches)
            frame = pd.concat(parts) if parts else pd.DataFrame(columns=["x", "y", "fold"])
            features = np.stack(frame["x"].to_numpy()) if len(frame) else np.zeros((0, 0))
            labels = frame["y"].to_numpy(dtype=np.float64)
            folds = frame["fold"].to_numpy()
            del parts, frame
            if not local_lr.supports(labels, folds, num_folds):
                yield row("not two classes in every fold's training part, or folds not 0..k-1")
                return
            cv = local_lr.cross_validate(features, labels, folds, num_folds, points)
            means, stds = np.mean(cv.metrics, axis=0), np.std(cv.metrics, axis=0)  # as CV
            best = int(np.argmax(means))
            point = points[best]
            fit = local_lr.fit(
                features, labels, point["regParam"], point["elasticNetParam"], point["maxIter"]
            )
            yield row("", means, stds, best, cv.closeness, fit.coefficients, fit.intercept)
        except Exception as exc:
            yield row(f"the replay failed: {type(exc).__name__}: {exc}"[:2000])

    return replay


def replay_cross_validation(data, num_folds: int, points: list[dict]) -> ReplayCV | str:
    """Cross-validate by replaying the fits in one Spark task over the cached split, or say why
    not: these fits are not ones ``local_lr`` replays, or the split is too big for one worker."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    from spark_tasks import classification

    first = data.select("features").head()
    width = first["features"].size if first is not None else 0
    count = data.count()
    if count * width > REPLAY_MAX_VALUES:
        return f"{count} rows x {width} features is over {REPLAY_MAX_VALUES:,} values"
    rows = data.select(
        vector_to_array(F.col("features")).alias("x"),
        F.col(classification.LABEL_INDEX).alias("y"),
        F.col("fold"),
    ).coalesce(1)  # the whole split in one task (cv_data keeps it in one partition already)
    out = rows.mapInPandas(replay_task(num_folds, points), _REPLAY_SCHEMA).collect()
    if len(out) != 1:
        return f"the replay returned {len(out)} results, not 1"
    r = out[0]
    if r["declined"]:
        return str(r["declined"])
    return ReplayCV(
        [float(m) for m in r["means"]], [float(s) for s in r["stds"]], int(r["best"]),
        float(r["closeness"]), [float(c) for c in r["coefficients"]], float(r["intercept"]),
    )  # fmt: skip


@dataclass(frozen=True)
class Choice:
    """The cross-validation's outcome, whichever engine ran it: ``model`` is Spark ML's fit of
    the best point on the whole split; ``engine`` goes into ``tuned.json`` as it is."""

    means: list[float]
    stds: list[float]
    best: int
    model: Any
    engine: dict[str, Any]


def choose_by_replay(data, lr, grid, points: list[dict], num_folds: int) -> Choice | str:
    """The replay's choice, checked: Spark ML refits the chosen point and must agree with the
    replay of it; no held-out row may sit on a fit's decision boundary. Else why not (the
    caller runs ``CrossValidator``)."""
    try:
        result = replay_cross_validation(data, num_folds, points)
    except Exception as exc:  # a bug or an input the replay cannot take: Spark's own path
        return f"the replay failed: {type(exc).__name__}: {exc}"
    if isinstance(result, str):
        return result
    if not result.closeness >= CLOSE_CALL:
        return f"a held-out row within {result.closeness:.1g} of a fit's decision boundary"
    model = lr.fit(data, grid[result.best])
    point = points[result.best]
    disagreement = result.disagreement(model)
    if not disagreement <= REFIT_AGREEMENT:
        return f"the replay of {point} differs from Spark's refit by {disagreement:.2g}"
    engine = {"engine": "replay", "refit_disagreement": disagreement, "closeness": result.closeness}
    return Choice(result.means, result.stds, result.best, model, engine)


def run(ctx: JobContext, spark=None) -> dict:
    from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
    from pyspark.sql import functions as F

    from imgclf.files import atomic_write_json
    from spark_tasks import classification, session
    from spark_tasks.featurizer import run_featurizer

    phases = Phases()
    p, run_dir = ctx.params, ctx.run_dir
    grid_values, folds = p["tune_grid"], p["cv_folds"]
    spark = spark or session.spark_session(ctx.app_name("tune"))
    phases.lap("session")
    data_path = run_dir / "dataset.parquet"
    if not data_path.exists():
        raise FileNotFoundError(f"{data_path} is missing: the train job writes it first")
    # Not cached: the indexer, the cross-validation's partition and the scoring each read the
    # file once (a cache held the whole split's features on the heap: at 6,000 images the tune
    # job's JVM peaked at 683/713/691 MB with it, 613/621/609 without, its steps as fast).
    dataset = spark.read.parquet(str(data_path))
    train = dataset.filter(F.col("split") == "train")
    test = dataset.filter(F.col("split") == "test")
    indexer = classification.fit_label_indexer(train)
    data = cv_data(train, indexer)
    lr = LogisticRegression(featuresCol="features", labelCol=classification.LABEL_INDEX)
    grid = (
        ParamGridBuilder()
        .addGrid(lr.regParam, [float(v) for v in grid_values["reg_param"]])
        .addGrid(lr.elasticNetParam, [float(v) for v in grid_values["elastic_net_param"]])
        .addGrid(lr.maxIter, [int(v) for v in grid_values["max_iter"]])
        .build()
    )
    points = [{param.name: v for param, v in pm.items()} for pm in grid]
    choice = choose_by_replay(data, lr, grid, points, folds)
    if isinstance(choice, str):
        log.warning("cross-validating with CrossValidator: %s", choice)
        cv = CrossValidator(
            estimator=lr,
            estimatorParamMaps=grid,
            evaluator=MulticlassClassificationEvaluator(
                labelCol=classification.LABEL_INDEX,
                predictionCol="prediction",
                metricName=CV_METRIC,
            ),
            numFolds=folds,
            foldCol="fold",
            seed=p["seed"],
            parallelism=cv_parallelism(spark.sparkContext.defaultParallelism, len(grid)),
        )
        cv_model = cv.fit(data)
        means = list(cv_model.avgMetrics)
        first_best = max(range(len(means)), key=means.__getitem__)  # accuracy: larger is better
        engine = {"engine": "spark", "replay_declined": choice}
        choice = Choice(means, list(cv_model.stdMetrics), first_best, cv_model.bestModel, engine)
    means, stds, best = choice.means, choice.stds, choice.best
    data.unpersist()
    phases.lap("cross_validate")
    best_params = points[best]
    # the best params, refit on the whole train split, behind the same indexer and label names
    classifier = classification.classifier_model(
        indexer, cast(LogisticRegressionModel, choice.model)
    )
    report = classification.evaluate(classifier, test, list(indexer.labels))
    featurizer = run_featurizer(p)
    model_path = ctx.settings.stage_dir(ctx.run_id, "tuned") / "model"
    classification.full_model(featurizer, classifier).write().overwrite().save(str(model_path))
    phases.lap("score_and_save")
    metrics = {
        **report,
        "stage": "tuned",
        "model": p["model"],
        "featurizer": featurizer.identity(),
        "params": best_params,
        "cv": {
            "metric": CV_METRIC,
            "folds": folds,
            **choice.engine,
            "best_mean": means[best],
            "best_std": stds[best],
            "grid": [
                {**point, "mean": m, "std": s}
                for point, m, s in zip(points, means, stds, strict=True)
            ],
        },
        "n_train": train.count(),
        "n_test": test.count(),
        "featurized_images": 0,
        "model_path": str(model_path),
        **phases.timing(),
    }
    atomic_write_json(run_dir / "tuned.json", metrics)
    log.warning(
        "tuned %s -> test accuracy %.4f (cv %s %.4f +- %.4f)",
        best_params,
        report["accuracy"],
        CV_METRIC,
        means[best],
        stds[best],
    )
    return metrics


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
