"""The train job's data checks and split: the stored features of this run's images collected
once to the driver, ``imgclf.datachecks`` run on them, the split joined back on.

Writes ``runs/<run>/datachecks.json``; raises ``DataCheckError`` (the job fails before any
model is fitted) when a check whose mode is ``fail`` found something.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from imgclf import datachecks, runs
from imgclf.datachecks import DataCheckError

log = logging.getLogger(__name__)

__all__ = ["DataCheckError", "check_and_split", "features_of"]


def features_of(df: DataFrame, columns: tuple[str, ...] = ("path", "label", "sha256")):
    """``(rows as dicts, features as an (n, dim) float32 array)``, ordered by path; through
    Arrow (no Python object per number)."""
    import numpy as np
    from pyspark.ml.functions import vector_to_array

    table = (
        df.select(*columns, vector_to_array(F.col("features"), "float32").alias("f"))
        .orderBy(*columns)
        .toArrow()
    )
    n = table.num_rows
    values = table.column("f").combine_chunks()
    flat = values.flatten().to_numpy(zero_copy_only=False) if n else np.zeros(0, np.float32)
    dim = len(flat) // n if n else 0
    values_by_column = [table.column(c).to_pylist() for c in columns]
    rows = [dict(zip(columns, r, strict=True)) for r in zip(*values_by_column, strict=True)]
    return rows, np.asarray(flat, dtype=np.float32).reshape(n, dim)


def champion_reference(spark: SparkSession, settings: Any, identity: str):
    """The champion's training features when they are comparable (same featurizer, its run's
    dataset still on disk): ``(array or None, a note saying why not)``."""
    from imgclf import registry

    try:
        champion = registry.champion(settings)
    except Exception as exc:  # an unreachable registry must not stop the checks
        return None, f"champion not looked up: {type(exc).__name__}"
    if champion is None:
        return None, "no champion to compare with"
    tags = champion["tags"]
    if tags.get("featurizer") != identity:
        return None, (
            f"champion version {champion['version']} used another featurizer "
            f"({tags.get('featurizer')}): features not comparable"
        )
    path = settings.run_dir(tags.get("airflow_run_id", "")) / "dataset.parquet"
    if not path.is_dir():
        return None, f"champion version {champion['version']}: its run's dataset is gone ({path})"
    train = spark.read.parquet(str(path)).filter(F.col("split") == "train")
    _, features = features_of(train, ("path",))
    return features, f"champion version {champion['version']}'s {len(features)} training images"


def check_and_split(ctx: Any, spark: SparkSession, dataset: DataFrame, identity: str):
    """``dataset`` (path, label, sha256, features) with ``split`` and ``fold`` columns, after
    the data checks; ``(dataset, outcome as a dict)``. ``DataCheckError`` on a ``fail``."""
    p, settings, run_dir = ctx.params, ctx.settings, ctx.run_dir
    rows, features = features_of(dataset)
    manifest = runs.read_json(settings.manifest_copy(ctx.run_id))
    _, previous_run = runs.last_fingerprint(settings)
    previous = (
        runs.read_json(settings.manifest_copy(previous_run))
        if previous_run and previous_run != ctx.run_id
        else None
    )
    reference, note = champion_reference(spark, settings, identity)
    split, outcome = datachecks.check(
        rows,
        features,
        datachecks.Settings.from_params(p),
        test_fraction=p["test_fraction"],
        seed=p["seed"],
        folds=p["cv_folds"],
        manifest=manifest,
        previous_manifest=previous,
        reference=reference,
        reference_note=note,
    )
    result = {
        **outcome.as_dict(),
        "previous_run": previous_run if previous is not None else None,
        "reference": note,
    }
    _write(run_dir / "datachecks.json", result)
    for message in outcome.warnings:
        log.warning("data check: %s", message)
    if outcome.failures:
        raise DataCheckError("data checks failed: " + "; ".join(outcome.failures))
    table = spark.createDataFrame(
        [(a.key, a.label, a.split, a.fold) for a in split],
        "sha256 string, label string, split string, fold int",
    )
    return dataset.join(F.broadcast(table), ["sha256", "label"]), result


def _write(path: Path, data: dict[str, Any]) -> None:
    from imgclf.files import atomic_write_json

    atomic_write_json(path, json.loads(json.dumps(data, default=float)))
