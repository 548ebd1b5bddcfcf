"""Names the downloader would store but Spark would skip or misread (``imgclf.names``): an
attacker who controls the remote names a file ``_x.jpg``, ``[x].jpg`` or ``a:b.jpg``, or a user
names a class ``_messi``. Each is refused where it enters, by name, and nothing is written;
every other odd name is stored (and read by Spark: tests/spark/test_names.py)."""

from __future__ import annotations

import subprocess

import pytest

from tests.attack.hostile_github import FakeRepo, HostileServer
from tests.attack.test_careless_local import CLASSES, MESSI, RONALDO, _files, _tree
from tests.attack.test_hostile_remote import _imgclf, _noise_png


def _download(repo: FakeRepo, dest, classes=CLASSES):
    cmd = [
        *_imgclf(),
        "download",
        "--api-url",
        repo.server.url,
        "--repo",
        repo.repo,
        "--ref",
        repo.ref,
        "--dest",
        str(dest),
        *[a for c in classes for a in ("--class", c)],
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("_x.jpg", "starts with '_' or '.', which Spark's file sources skip as hidden"),
        ("[x].jpg", "contains [ ], which Spark reads as a glob pattern"),
        ("{a,b}.jpg", "contains { }, which Spark reads as a glob pattern"),
        ("a*.png", "contains *, which Spark reads as a glob pattern"),
        ("a:b.jpg", "contains ':', which Spark's file listing reads as a URI scheme"),
    ],
)
def test_a_remote_name_spark_would_misread_is_refused_by_name(tmp_path, name, why):
    with HostileServer() as server:
        repo = FakeRepo(server)
        repo.set_files(MESSI, {**_files(3, 1), name: _noise_png(20, 7)})
        repo.set_files(RONALDO, _files(3, 2))
        out = _download(repo, tmp_path / "raw")
        fetched = repo.raw_requests()
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    line = [x for x in out.stderr.splitlines() if x.startswith("imgclf download:")]
    assert len(line) == 1 and f"{name!r} {why}" in line[0], out.stderr
    assert "nothing was changed" in line[0]
    written = [p for p in _tree(tmp_path) if not p.endswith(".lock")]
    assert fetched == [] and written == []  # not one file fetched or written


def test_a_class_spark_would_drop_whole_is_refused_by_name(tmp_path):
    with HostileServer() as server:
        repo = FakeRepo(server)
        repo.set_files(MESSI, _files(3, 1))
        repo.set_files(RONALDO, _files(3, 2))
        out = _download(repo, tmp_path / "raw", [f"_messi={MESSI}", f"ronaldo={RONALDO}"])
        assert server.requests == []
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "class name '_messi' starts with '_'" in out.stderr.strip().splitlines()[-1]
    assert _tree(tmp_path) == {}


def test_odd_names_spark_reads_are_stored_as_they_are(tmp_path):
    odd = ["a b.jpg", "100%.jpg", "#1.jpg", "a,b.jpg", "x=y.jpg", "l'été.jpg", "-x.jpg", "~x.jpg"]
    with HostileServer() as server:
        repo = FakeRepo(server)
        repo.set_files(MESSI, {n: _noise_png(20, i) for i, n in enumerate(odd)})
        repo.set_files(RONALDO, _files(3, 2))
        out = _download(repo, tmp_path / "raw")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "raw" / "messi").iterdir()) == sorted(odd)
