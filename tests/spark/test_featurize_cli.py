"""``imgclf featurize`` end to end (spark-submit), checked against an independent computation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.spark
IMGCLF = str(Path(sys.executable).parent / "imgclf")


def _featurize(images: Path, model: Path, out: Path):
    proc = subprocess.run(
        [IMGCLF, "featurize", "--images", str(images), "--model", str(model), "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    # spark-submit's PythonRunner merges the driver's stderr into stdout: read both
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout + proc.stderr


def _read(out: Path):
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pydict()
    return {p: (label, np.asarray(f)) for p, label, f in
            zip(table["path"], table["label"], table["features"], strict=True)}  # fmt: skip


def test_featurize_drops_and_lists_undecodable_images(tiny_model, images, tmp_path):
    (images / "red" / "broken.jpg").write_bytes(b"definitely not an image")
    (images / "blue" / "empty.jpg").write_bytes(b"")  # Spark's file scan skips 0-byte files
    summary, output = _featurize(images, tiny_model, tmp_path / "f.parquet")
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
