"""The name rule, proven against Spark: every image name the downloader accepts is read by the
readers the jobs use (explicit paths: train, challenge; a folder: featurize, evaluate, predict),
and every name it refuses is one Spark would have skipped or misread."""

from __future__ import annotations

import hashlib
import io
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
    from spark_tasks.common import read_images

    _, files, _ = named
    rows = read_images(spark, [str(p) for p in files]).select("path", "label", "sha256").collect()
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in files)
    assert {r["label"] for r in rows} == {"messi"}
    assert {r["sha256"] for r in rows} == {SHA256}  # the bytes were read, not just listed


def test_every_accepted_name_is_read_from_a_folder(spark, named):
    """What featurize, evaluate and predict do: every image below a folder."""
    from spark_tasks.common import read_images_dir

    root, files, _ = named
    rows = read_images_dir(spark, root).select("path", "label", "sha256").collect()
    assert sorted(r["path"] for r in rows) == sorted(str(p.resolve()) for p in files)
    assert {r["sha256"] for r in rows} == {SHA256}


@pytest.mark.parametrize("name", ["_x.jpg", "[x].jpg", "a:b.jpg"])
def test_what_the_rule_refuses_spark_would_misread(spark, tmp_path, name):
    """Why the rule exists: without it the file is skipped, or the read fails."""
    from spark_tasks.common import read_images, read_images_dir

    (tmp_path / "messi").mkdir()
    (tmp_path / "messi" / "ok.jpg").write_bytes(_jpeg())
    (tmp_path / "messi" / name).write_bytes(_jpeg())
    try:  # the bytes are read (sha256), as the jobs do
        explicit = len(read_images(spark, [str(tmp_path / "messi" / name)]).collect())
    except Exception:  # PATH_NOT_FOUND, URISyntaxException: misread either way
        explicit = 0
    try:
        listed = len(read_images_dir(spark, tmp_path).collect())
    except Exception:
        listed = 0
    assert explicit == 0 or listed < 2  # one reader or the other misreads it
