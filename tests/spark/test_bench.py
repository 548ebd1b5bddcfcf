"""The benchmarks run and report what they claim (their numbers are read, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from spark_tasks import bench_decode
from tests.fixtures_images import make_images


def test_image_source_rows_become_rgb():
    bgr = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8)
    assert bench_decode.image_source_rgb(1, 2, 3, bgr.tobytes()).tolist() == [
        [[3, 2, 1], [6, 5, 4]]
    ]
    bgra = np.array([[[1, 2, 3, 9]]], dtype=np.uint8)
    assert bench_decode.image_source_rgb(1, 1, 4, bgra.tobytes()).tolist() == [[[3, 2, 1]]]
    gray = np.array([[[7]]], dtype=np.uint8)
    assert bench_decode.image_source_rgb(1, 1, 1, gray.tobytes()).tolist() == [[[7, 7, 7]]]


def test_why_the_featurizer_reads_binary_files(spark):
    """Spark's image source ignores EXIF orientation, misreads CMYK and cannot read WebP."""
    odd = bench_decode.odd_formats(spark)
    assert odd["exif_rotated.jpg"]["pixel_max_abs_diff"] > 100
    assert odd["cmyk.jpg"]["pixel_max_abs_diff"] > 10
    assert odd["photo.webp"] == {"read": False}
    assert odd["grayscale.png"] == {"read": True, "pixel_max_abs_diff": 0.0}


def test_decode_throughput_reads_every_image_both_ways(spark, tmp_path):
    make_images(tmp_path / "imgs", per_class=4)
    got = bench_decode.throughput(spark, tmp_path / "imgs", partitions=2)
    assert got["images_read"] == {"binaryFile": 8, "image": 8}
    assert all(rate > 0 for rate in got["images_per_s"].values())


def test_featurize_bench_prints_both_sides(tiny_model, tmp_path):
    make_images(tmp_path / "src", per_class=4)
    done = subprocess.run(
        [sys.executable, "-m", "spark_tasks.bench", "--images", "24", "--model",
         str(tiny_model), "--source", str(tmp_path / "src"), "--master", "local[2]"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["images"] == 24 and out["source"].startswith("8 real images")
    rates = out["spark_images_per_s"] / out["plain_images_per_s"]
    assert out["ratio"] == pytest.approx(rates, abs=0.002)
    overhead = out["spark_fixed_overhead_s"] - out["plain_fixed_overhead_s"]
    assert out["overhead_difference_s"] == pytest.approx(overhead, abs=0.011)
    assert "spark_jvm_archive" in out
