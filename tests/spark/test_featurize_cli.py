"""``imgclf featurize``'s entry point (``spark_tasks/featurize.py main``) in the test session:
what it writes and what it prints. (The launcher it runs under, ``imgclf`` -> spark-submit, is
the predict DAG's and the CLI's one: tests/unit/test_cli.py, tests/dags.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spark_tasks import featurize

pytestmark = pytest.mark.spark


def _featurize(images: Path, model: Path, out: Path, capsys):
    argv = ["--images", str(images), "--model", str(model), "--out", str(out)]
    assert featurize.main(argv) == 0  # its session is the test session (getOrCreate)
    printed = capsys.readouterr()
    return json.loads(printed.out.strip().splitlines()[-1]), printed.out + printed.err


def _read(out: Path):
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pydict()
    return {p: (label, np.asarray(f)) for p, label, f in
            zip(table["path"], table["label"], table["features"], strict=True)}  # fmt: skip


def test_featurize_drops_and_lists_undecodable_images(spark, tiny_model, images, tmp_path, capsys):
    (images / "red" / "broken.jpg").write_bytes(b"definitely not an image")
    (images / "blue" / "empty.jpg").write_bytes(b"")  # Spark's file scan skips 0-byte files
    summary, output = _featurize(images, tiny_model, tmp_path / "f.parquet", capsys)
    assert summary["images"] == 14 and summary["featurized"] == 12
    failed = {Path(f["path"]).name: f["error"] for f in summary["failed"]}
    assert sorted(failed) == ["broken.jpg", "empty.jpg"]
    assert "empty file (0 bytes)" in failed["empty.jpg"]
    assert "empty file" not in failed["broken.jpg"]
    assert "undecodable, dropped: " in output
    assert "broken.jpg" in output
    assert f"empty.jpg ({failed['empty.jpg']})" in output
    rows = _read(tmp_path / "f.parquet")
    assert len(rows) == 12
    assert all(Path(p).is_absolute() and Path(p).exists() for p in rows)
    assert {label for label, _ in rows.values()} == {"red", "blue"}
