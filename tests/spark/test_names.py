"""The name rule, proven against Spark: every image name the downloader accepts is read by the
readers the jobs use (explicit paths: train, challenge; a folder: featurize, evaluate, predict),
and every name it refuses is one Spark would have skipped or misread."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from imgclf.github import check_name
from imgclf.names import spark_problem

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 20, 20)).save(buf, format="JPEG")
    return buf.getvalue()


SHA256 = hashlib.sha256(_jpeg()).hexdigest()


def _candidates() -> list[str]:
    """A name with each printable ASCII character first, inside and last (before the suffix),
    and a few beyond ASCII: every character class a remote name may hold."""
    names = []
    for code in range(0x20, 0x7F):
        c = chr(code)
        names += [f"{c}a.jpg", f"a{c}b.jpg", f"ab{c}.jpg"]
    names += ["é.jpg", "日本語.jpg", "a\u00a0b.jpg", "ß😀.jpg", "Ünïcödé name.jpeg", "x.JPG"]
    return sorted(set(names))


def _accepted(name: str) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def named(tmp_path_factory) -> tuple[Path, list[Path], list[str]]:
    root = tmp_path_factory.mktemp("names")
    (root / "messi").mkdir()
    data = _jpeg()
    accepted = [n for n in _candidates() if _accepted(n)]
    files = []
    for name in accepted:
        path = root / "messi" / name
        path.write_bytes(data)
        files.append(path)
    return root, files, [n for n in _candidates() if not _accepted(n)]


def test_the_rule_refuses_what_spark_misreads_and_nothing_else_of_note(named):
    _, files, refused = named
    assert len(files) > 250  # the rule leaves almost every character to be read
    for name in ("_x.jpg", ".x.jpg", "[x].jpg", "{a,b}.jpg", "a:b.jpg", "a*b.jpg", "a?b.jpg"):
        assert not _accepted(name), name
    for name in refused:  # each refused image name is refused for a reason the rule names
        assert spark_problem(name) or "/" in name or "\\" in name or name.startswith(".")


def test_every_accepted_name_is_read_from_explicit_paths(spark, named):
    """What train and challenge do: the manifest's paths, given to Spark one by one."""
    from spark_tasks.image_files import read_images

    _, files, _ = named
    rows = read_images(spark, [str(p) for p in files]).select("path", "label", "sha256").collect()
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in files)
    assert {r["label"] for r in rows} == {"messi"}
    assert {r["sha256"] for r in rows} == {SHA256}  # the bytes were read, not just listed


def test_every_accepted_name_is_read_from_a_folder(spark, named):
    """What featurize, evaluate and predict do: every image below a folder."""
    from spark_tasks.image_files import read_images_dir

    root, files, _ = named
    rows = read_images_dir(spark, root).select("path", "label", "sha256").collect()
    assert sorted(r["path"] for r in rows) == sorted(str(p.resolve()) for p in files)
    assert {r["sha256"] for r in rows} == {SHA256}


@pytest.mark.parametrize(
    ("root", "decoy"),
    [("shoot [2]", "shoot 2"), ("a{b,c}", "ab"), ("any*?", "anyxy"), ("back\\slash", "backslash")],
)
def test_a_folder_above_the_dataset_may_hold_glob_characters(spark, tmp_path, root, decoy):
    """The names inside a dataset follow the rule; the folders above them are the user's (a data
    root, a predict folder): both readers take such a folder literally, not as a pattern (which
    would fail, or read ``decoy``, a folder the pattern matches)."""
    from spark_tasks.image_files import read_images, read_images_dir

    files = []
    for folder in (root, decoy):
        for label in ("messi", "ronaldo"):
            (tmp_path / folder / label).mkdir(parents=True)
            (tmp_path / folder / label / "x.jpg").write_bytes(_jpeg())
            if folder == root:
                files.append(str(tmp_path / folder / label / "x.jpg"))
    explicit = read_images(spark, files).select("path", "label", "sha256").collect()
    assert sorted((r["path"], r["label"]) for r in explicit) == [
        (files[0], "messi"),
        (files[1], "ronaldo"),
    ]
    assert {r["sha256"] for r in explicit} == {SHA256}
    listed = read_images_dir(spark, tmp_path / root).select("path").collect()
    assert sorted(r["path"] for r in listed) == files


@pytest.mark.parametrize("name", ["_x.jpg", "[x].jpg", "a:b.jpg"])
def test_what_the_rule_refuses_spark_would_misread(spark, tmp_path, name):
    """Why the rule exists: a plain Spark reader given the path (a user's notebook on the data;
    the jobs' readers escape glob characters, ``literal_path``) or a folder listing skips the
    file, or the read fails."""
    from spark_tasks.image_files import read_images_dir

    (tmp_path / "messi").mkdir()
    (tmp_path / "messi" / "ok.jpg").write_bytes(_jpeg())
    (tmp_path / "messi" / name).write_bytes(_jpeg())
    try:  # the bytes are read, as a reader would
        raw = spark.read.format("binaryFile").load(str(tmp_path / "messi" / name))
        explicit = len(raw.select("content").collect())
    except Exception:  # PATH_NOT_FOUND, URISyntaxException: misread either way
        explicit = 0
    try:
        listed = len(read_images_dir(spark, tmp_path).collect())
    except Exception:
        listed = 0
    assert explicit == 0 or listed < 2  # one reader or the other misreads it


def _manifest(tmp_path: Path, paths: list[str]) -> Path:
    import json

    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"files": [{"path": p} for p in paths]}))
    return path


def test_a_dataset_synced_before_the_rule_fails_the_job_naming_the_file(tmp_path):
    """An older dataset may hold such a name: the train job says which, before Spark reads."""
    from spark_tasks.image_files import manifest_files

    good = _manifest(tmp_path, ["messi/a b.jpg", "ronaldo/x.jpg"])
    assert manifest_files(good, tmp_path) == [str(tmp_path / "messi/a b.jpg"),
                                              str(tmp_path / "ronaldo/x.jpg")]  # fmt: skip
    for bad in ("messi/[x].jpg", "_messi/x.jpg", "messi/a:b.jpg"):
        with pytest.raises(
            ValueError, match=rf"^dataset file {re.escape(repr(bad))}: name .* sync again\)$"
        ):
            manifest_files(_manifest(tmp_path, ["ronaldo/x.jpg", bad]), tmp_path)


def test_a_file_spark_did_not_read_fails_the_job_naming_it(spark, tmp_path):
    from spark_tasks.image_files import check_all_read, image_keys, read_images
    from spark_tasks.job import JobCheckError

    (tmp_path / "messi").mkdir()
    files = []
    for name in ("ok.jpg", "_hidden.jpg"):  # as if an older version had stored it
        (tmp_path / "messi" / name).write_bytes(_jpeg())
        files.append(str(tmp_path / "messi" / name))
    keys = image_keys(read_images(spark, files))
    with pytest.raises(JobCheckError, match=r"Spark read 1 of the manifest's 2 files; not read: "
                       r"'.*/messi/_hidden\.jpg'$"):  # fmt: skip
        check_all_read(files, keys)
    check_all_read(files[:1], keys)


def test_trained_plus_failed_is_the_manifest_or_the_job_says_so(spark):
    from spark_tasks.image_files import account_for_every_file
    from spark_tasks.job import JobCheckError

    keys = spark.createDataFrame(
        [("/d/a.jpg", "s1"), ("/d/b.jpg", "s2"), ("/d/c.jpg", "s2"), ("/d/e.jpg", "s3")],
        "path string, sha256 string",
    )
    features = spark.createDataFrame([("s1",), ("s3",)], "sha256 string")
    failed = [{"path": "/d/b.jpg", "error": "not a decodable image"}]  # one path per content
    listed = account_for_every_file(4, keys, features, failed, {"train": 1, "test": 1})
    assert listed == [  # both files of the failed content, with its error
        {"path": "/d/b.jpg", "error": "not a decodable image"},
        {"path": "/d/c.jpg", "error": "not a decodable image"},
    ]
    with pytest.raises(JobCheckError, match=r"^counts do not add up: the manifest lists 5 files, "
                       r"2 were split for training and test and 2 failed$"):  # fmt: skip
        account_for_every_file(5, keys, features, failed, {"train": 1, "test": 1})
