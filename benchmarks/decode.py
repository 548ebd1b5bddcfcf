"""Benchmark: the featurizer's input, Spark's ``image`` data source vs ``binaryFile`` + Pillow.

``python -m benchmarks.decode --images N [--model NAME_OR_PATH]`` (``make bench``) reads the
same N images both ways in
one Spark session and turns each into the model's input in the Python worker (the image
source's decoded BGR pixels resized by Pillow; binaryFile's bytes decoded by Pillow as the
featurizer does). It prints one JSON object: steady-state images/s of each, their ratio, and,
on the distinct source images, how far the image source's pixels are from Pillow's (max and
mean absolute difference on the 0..255 scale, images with EXIF orientation it ignores) and,
with ``--model``, how far the resulting features are (max absolute difference).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

SIZE = (224, 224)


def _resize(rgb: np.ndarray, size: tuple[int, int] = SIZE) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def image_source_rgb(height: int, width: int, channels: int, data: bytes) -> np.ndarray:
    """An ``image`` data source row (OpenCV layout: BGR or BGRA, or gray) as RGB uint8."""
    arr = np.frombuffer(bytes(data), dtype=np.uint8).reshape(height, width, channels)
    if channels == 1:
        return np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped


def _binary_fn():
    from spark_tasks.model_input import decode

    def predict(content: np.ndarray) -> np.ndarray:
        return np.array([decode(b, SIZE).mean() for b in content], dtype=np.float32)

    return predict


def _image_fn():
    def predict(h: np.ndarray, w: np.ndarray, c: np.ndarray, data: np.ndarray) -> np.ndarray:
        rows = zip(h, w, c, data, strict=True)
        return np.array([_resize(image_source_rgb(*r)).mean() for r in rows], dtype=np.float32)

    return predict


def _timed(df) -> float:
    t0 = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - t0


def throughput(spark, folder: Path, partitions: int) -> dict:
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import FloatType

    from spark_tasks import image_files

    binary_udf = predict_batch_udf(_binary_fn, return_type=FloatType(), batch_size=32)
    image_udf = predict_batch_udf(_image_fn, return_type=FloatType(), batch_size=32)

    def binary():
        df = image_files.read_images_dir(spark, folder).repartition(partitions)
        return df.select(binary_udf("content"))

    def image():
        df = (
            spark.read.format("image")
            .option("dropInvalid", True)
            .option("recursiveFileLookup", "true")
            .load(str(folder))
            .select("image.*")
            .repartition(partitions)
        )
        return df.select(image_udf("height", "width", "nChannels", "data"))

    n_binary = binary().count()
    n_image = image().count()
    best = {"binaryFile": float("inf"), "image": float("inf")}
    for _ in range(2):  # the first pass also warms the workers up; keep each side's best
        best["binaryFile"] = min(best["binaryFile"], _timed(binary()))
        best["image"] = min(best["image"], _timed(image()))
    return {
        "images_read": {"binaryFile": n_binary, "image": n_image},
        "images_per_s": {k: round(n_binary / v, 1) for k, v in best.items()},
    }


def parity(spark, files: list[Path], model: str | None) -> dict:
    """Image source vs Pillow on each distinct file, computed in this process."""
    from PIL import Image

    from spark_tasks.model_input import decode

    loaded = infer = None
    size = SIZE
    if model:
        from spark_tasks.featurizer import cached_model

        loaded, infer = cached_model(model, "avg", "none")
        size = loaded.size
    rows = (
        spark.read.format("image")
        .option("dropInvalid", True)
        .load([str(p) for p in files])
        .select("image.origin", "image.height", "image.width", "image.nChannels", "image.data")
        .collect()
    )
    by_path = {str(Path(urlparse(r.origin).path).resolve()): r for r in rows}
    pillow, source, rotated = [], [], 0
    for path in files:
        row = by_path.get(str(path.resolve()))
        if row is None:
            continue
        with Image.open(path) as img:
            rotated += int(img.getexif().get(0x0112, 1) != 1)
        pillow.append(decode(path.read_bytes(), size))
        rgb = image_source_rgb(row.height, row.width, row.nChannels, row.data)
        source.append(_resize(rgb, size))
    if not source:
        return {"distinct_images": len(files), "image_source_read": 0}
    a, b = np.stack(pillow), np.stack(source)
    diff = np.abs(a - b)
    out = {
        "distinct_images": len(files),
        "image_source_read": len(rows),
        "pixel_max_abs_diff": float(diff.max()),
        "pixel_mean_abs_diff": round(float(diff.mean()), 4),
        "images_with_any_pixel_diff": int((diff.reshape(len(a), -1).max(axis=1) > 0).sum()),
        "images_with_exif_rotation": rotated,
    }
    if loaded is not None:
        fa = np.asarray(infer(loaded.preprocess(a)))
        fb = np.asarray(infer(loaded.preprocess(b)))
        out["feature_max_abs_diff"] = float(np.abs(fa - fb).max())
    return out


def odd_formats(spark) -> dict:
    """Per kind of image the pipeline must handle: does the image source read it, and how far
    are its pixels from Pillow's (which applies EXIF orientation and converts CMYK properly)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display", as phone cameras write it
    makers = {
        "exif_rotated.jpg": lambda p: base.save(p, exif=exif),
        "cmyk.jpg": lambda p: base.convert("CMYK").save(p),
        "grayscale.png": lambda p: base.convert("L").save(p),
        "rgba.png": lambda p: base.convert("RGBA").save(p),
        "palette.gif": lambda p: base.convert("P").save(p),
        "photo.webp": lambda p: base.save(p),
    }
    out = {}
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-") as tmp:
        for name, make in makers.items():
            path = Path(tmp) / name
            make(path)
            got = parity(spark, [path], None)
            out[name] = (
                {"read": True, "pixel_max_abs_diff": got["pixel_max_abs_diff"]}
                if got["image_source_read"]
                else {"read": False}
            )
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks import featurize as bench
    from spark_tasks import session

    p = argparse.ArgumentParser(prog="python -m benchmarks.decode", description=__doc__)
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--source", type=Path, help="folder of images to cycle (default ../shared)")
    p.add_argument("--model", help="also compare features of this model (name or .keras)")
    p.add_argument("--partitions", type=int, default=0, help="default: one per core")
    args = p.parse_args(argv)
    spark = session.spark_session("imgclf-bench-decode")
    spark.sparkContext.setLogLevel("ERROR")
    parts = args.partitions or spark.sparkContext.defaultParallelism
    files = bench._source_files(args.source)
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-") as tmp:
        origin = bench.make_images(args.images, Path(tmp), args.source)
        speed = throughput(spark, Path(tmp), parts)
    if not files:  # synthetic images: compare on a few of them
        with tempfile.TemporaryDirectory(prefix="imgclf-bench-") as tmp:
            bench.make_images(8, Path(tmp), args.source)
            files = sorted(Path(tmp).rglob("*.jpg"))
            same = parity(spark, files, args.model)
    else:
        same = parity(spark, files, args.model)
    rates = speed["images_per_s"]
    print(
        json.dumps(
            {
                "images": args.images,
                "source": origin,
                "partitions": parts,
                **speed,
                "ratio_image_to_binaryFile": round(rates["image"] / rates["binaryFile"], 3),
                "parity": same,
                "odd_formats": odd_formats(spark),
            }
        )
    )
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
