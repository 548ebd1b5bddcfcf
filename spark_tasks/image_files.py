"""Image files into DataFrames: ``(path, label, sha256, content)``, label = the parent folder.

Exactly the files of a manifest (``read_images``), or every image below a folder
(``read_images_dir``, 0-byte files included); ``image_keys`` is the cached, pixel-free view
every later step reads instead of the files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from imgclf.github import IMAGE_EXTENSIONS
from imgclf.names import GLOB_CHARS

_GLOB_CHAR_RE = re.compile("[" + re.escape("".join(sorted(GLOB_CHARS))) + "]")
_IMAGE_RE = "(?i).*\\.(" + "|".join(e.lstrip(".") for e in sorted(IMAGE_EXTENSIONS)) + ")$"


def _with_label_and_hash(df: DataFrame) -> DataFrame:
    return df.select(
        F.regexp_replace("path", "^file:", "").alias("path"),
        F.element_at(F.split("path", "/"), -2).alias("label"),
        F.sha2("content", 256).alias("sha256"),
        "content",
    )


def literal_path(path: str) -> str:
    """``path`` as a Hadoop glob that matches only itself.

    Spark globs every load path holding one of ``{}[]*?\\``; the names inside a dataset are
    refused at download (``imgclf.names``), but the folder above them is the user's (a data root
    or a predict folder such as ``/data/shoot[2]``), and a backslash escapes each character.
    """
    return _GLOB_CHAR_RE.sub(r"\\\g<0>", path)


def read_images(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Exactly these image files as ``(path, label, sha256, content)``; label = parent folder.

    Listed by the driver: past ``parallelPartitionDiscovery.threshold`` (32) paths Spark lists
    them in a Spark job with a task per path, far slower than listing them here.
    """
    if not paths:
        raise ValueError("no image files to read")
    key = "spark.sql.sources.parallelPartitionDiscovery.threshold"
    before = spark.conf.get(key) or "32"
    spark.conf.set(key, str(len(paths) + 1))
    try:
        df = spark.read.format("binaryFile").load([literal_path(p) for p in paths])
    finally:
        spark.conf.set(key, before)
    return _with_label_and_hash(df)


def manifest_files(manifest_path: Path, raw_dir: Path) -> list[str]:
    """The absolute paths of a manifest's images (its paths are relative to ``raw_dir``)."""
    from imgclf.names import check_spark_name

    manifest = json.loads(Path(manifest_path).read_text())
    files = []
    for entry in manifest["files"]:
        for part in Path(entry["path"]).parts:  # a dataset synced before the rule existed
            try:
                check_spark_name(part, f"dataset file {entry['path']!r}: name")
            except ValueError as exc:
                raise ValueError(f"{exc} (imgclf download now refuses it: sync again)") from None
        files.append(str(raw_dir / entry["path"]))
    if not files:
        raise ValueError(f"manifest {manifest_path} lists no files")
    return files


def check_all_read(files: list[str], keys: DataFrame) -> None:
    """Raise ``JobCheckError`` unless Spark read every one of ``files`` (``keys``' paths): a file
    it skipped or misread would otherwise be left out of training without a word."""
    from spark_tasks.job import JobCheckError

    read = {r["path"] for r in keys.select("path").collect()}
    missing = sorted(set(files) - read)
    if missing:
        shown = ", ".join(repr(p) for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise JobCheckError(
            f"Spark read {len(files) - len(missing)} of the manifest's {len(files)} files; "
            f"not read: {shown}"
        )


def account_for_every_file(
    manifest_count: int,
    keys: DataFrame,
    features: DataFrame,
    failed: list[dict[str, str]],
    split_counts: dict[str, int],
) -> list[dict[str, str]]:
    """Every file of the manifest is trained on or listed as failed: the list of those without
    features (``{"path", "error"}``, by path; a file whose content failed in an earlier run too),
    after checking ``train + test + failed == manifest`` (``JobCheckError`` otherwise)."""
    from spark_tasks.job import JobCheckError

    errors = {f["path"]: f["error"] for f in failed}
    rows = keys.join(features.select("sha256"), "sha256", "left_anti").select("path", "sha256")
    missing = rows.orderBy("path").collect()
    by_sha = {r["sha256"]: errors[r["path"]] for r in missing if r["path"] in errors}
    listed = [
        {
            "path": r["path"],
            "error": errors.get(r["path"]) or by_sha.get(r["sha256"], "no features"),
        }
        for r in missing
    ]
    trained = sum(split_counts.values())
    if trained + len(listed) != manifest_count:
        raise JobCheckError(
            f"counts do not add up: the manifest lists {manifest_count} files, {trained} were "
            f"split for training and test and {len(listed)} failed"
        )
    return listed


def image_keys(images: DataFrame) -> DataFrame:
    """``(path, label, sha256)`` of ``images``, hashed once and cached: rows without pixels
    that every later step (store lookup, split, join) reads instead of the files.

    In as many partitions as the cores (merged, not shuffled): a scan of many small files has
    one partition per ~30 files, and every shuffle over the keys (the store lookup's
    deduplication, the split's join) then moves a block from each of them to each of 200
    reducers: many small blocks for a few short rows.
    """
    cores = images.sparkSession.sparkContext.defaultParallelism
    keys = images.select("path", "label", "sha256").coalesce(max(1, cores)).cache()
    keys.count()
    return keys


def read_images_dir(
    spark: SparkSession, images_dir: Path, also: Sequence[tuple[str, bytes]] = ()
) -> DataFrame:
    """Every image file below ``images_dir`` (any depth); label = the file's parent folder.

    0-byte files are rows too, with empty ``content`` (the featurizer reports them as empty):
    ``binaryFile`` alone yields no row for them, see ``zero_byte_files``. ``also``: more
    ``(path, content)`` rows read by the driver (``hidden_images``: files Spark skips).
    """
    images_dir = Path(images_dir).resolve()
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images folder {images_dir} does not exist")
    files = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .load(literal_path(str(images_dir)))
    )
    df = files.select("path", "content")
    extra = [(p, bytearray()) for p in zero_byte_files(files)]
    extra += [(p, bytearray(content)) for p, content in also]
    if extra:
        df = df.unionByName(spark.createDataFrame(extra, "path string, content binary"))
    return _with_label_and_hash(df.filter(F.col("path").rlike(_IMAGE_RE)))


def hidden_images(
    images_dir: Path, max_bytes: int
) -> tuple[list[tuple[str, bytes]], list[dict[str, str]]]:
    """The image files below ``images_dir`` that Spark's listing skips as hidden (a name, or a
    folder on the way, starting with ``_`` or ``.``: ``imgclf.names``), read here instead.

    Returns ``(read, refused)``: ``(path, content)`` rows spelt as ``binaryFile`` spells them,
    and ``{"path", "error"}`` for files over ``max_bytes`` (never read into the driver) or
    unreadable. Symlinked folders are not followed (as a folder listing would not leave it).
    """
    from imgclf.names import HIDDEN_PREFIXES

    root = Path(images_dir).resolve()
    read, refused = [], []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        rel_hidden = any(
            part.startswith(HIDDEN_PREFIXES) for part in Path(folder).relative_to(root).parts
        )
        for name in sorted(names):
            path = Path(folder) / name
            if not (rel_hidden or name.startswith(HIDDEN_PREFIXES)):
                continue
            if not re.match(_IMAGE_RE, str(path)) or not path.is_file():
                continue
            try:
                size = path.stat().st_size
                if size > max_bytes:
                    refused.append(
                        {
                            "path": str(path),
                            "error": (
                                f"hidden name (Spark skips it) and {size:,} bytes, over the "
                                f"{max_bytes:,} a file may have (IMGCLF_MAX_FILE_BYTES): not read"
                            ),
                        }
                    )
                    continue
                read.append((f"file:{path}", path.read_bytes()))
            except OSError as exc:
                refused.append({"path": str(path), "error": f"cannot read: {exc.strerror}"})
    return read, refused


def zero_byte_files(files: DataFrame) -> list[str]:
    """The 0-byte files a ``binaryFile`` DataFrame lists but never reads, spelt as its ``path``.

    Spark plans a file scan over files of length > 0 only (``FileSourceScanExec``:
    ``partition.files.filter(_.getLen > 0)``), so an empty file silently has no row, whatever
    the format; its file listing (``inputFiles()``: URIs, same hidden-file rules) still has it.
    """
    empty = []
    for uri in files.inputFiles():
        parsed = urlparse(uri)
        if parsed.scheme not in ("", "file"):
            continue  # not on this machine's file system: cannot tell
        local = unquote(parsed.path)
        if not re.match(_IMAGE_RE, local):
            continue
        try:
            if os.stat(local).st_size == 0:
                empty.append(f"file:{local}")  # as binaryFile's path column spells it
        except OSError:  # gone since the listing
            continue
    return sorted(empty)
