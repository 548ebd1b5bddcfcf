"""The decode benchmark's own logic: what it compares must be compared right (its numbers are
read by people, not asserted)."""

from __future__ import annotations

import numpy as np

from benchmarks import decode as bench_decode
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
