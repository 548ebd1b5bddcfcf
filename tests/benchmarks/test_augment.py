"""The dataset generator of the benchmarks: deterministic, distinct, decodable, counted right."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from benchmarks import augment
from imgclf.image_acceptance import verify_image
from tests.fixtures_images import make_images


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_images(tmp_path / "source", per_class=4)  # every colour mode, JPEG and PNG


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_call_same_bytes_distinct_decodable_images(source, tmp_path):
    a = augment.make_dataset(source, tmp_path / "a", 150, seed=3)
    b = augment.make_dataset(source, tmp_path / "b", 150, seed=3, workers=1)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert files_a == files_b  # byte for byte, whatever the number of processes
    assert len(files_a) == 150
    assert len({hashlib.sha256(d).digest() for d in files_a.values()}) == 150
    for data in files_a.values():
        verify_image(data, 10_000_000)
    assert a["images"] == 150 and a["classes"] == {"blue": 75, "red": 75}
    assert (a["originals"], a["augmented"], a["noisy"]) == (8, 142, 0)
    assert a["bytes"] == sum(len(d) for d in files_a.values())
    assert {k: v for k, v in a.items() if k not in ("dest", "seconds")} == {
        k: v for k, v in b.items() if k not in ("dest", "seconds")
    }
    augment.make_dataset(source, tmp_path / "c", 150, seed=4)
    files_c = _files(tmp_path / "c")
    assert files_c.keys() == files_a.keys()
    assert sum(files_c[k] != files_a[k] for k in files_a) == 142  # originals stay themselves


def test_small_n_is_the_originals_unchanged_split_evenly(source, tmp_path):
    got = augment.make_dataset(source, tmp_path / "d", 5)
    assert got["classes"] == {"blue": 3, "red": 2}
    assert (got["originals"], got["augmented"]) == (5, 0)
    for rel, data in _files(tmp_path / "d").items():
        assert data == (source / rel).read_bytes()
    assert sorted(p.name for p in (tmp_path / "d" / "red").iterdir()) == ["red0.jpg", "red1.png"]


def test_label_noise_moves_a_seeded_fraction_to_the_other_class(source, tmp_path):
    got = augment.make_dataset(source, tmp_path / "n", 100, seed=1, noisy_fraction=0.2)
    assert got["noisy"] == 20
    counts = {c: len(list((tmp_path / "n" / c).iterdir())) for c in ("blue", "red")}
    assert counts == got["classes"] and sum(counts.values()) == 100
    # an augmented file is named after its source image, which says its true class
    misplaced = [
        p
        for c in ("blue", "red")
        for p in (tmp_path / "n" / c).iterdir()
        if not p.name.startswith(c)
    ]
    assert len(misplaced) == 20
    assert len({hashlib.sha256(p.read_bytes()).digest() for p in misplaced}) == 20
    again = augment.make_dataset(source, tmp_path / "n2", 100, seed=1, noisy_fraction=0.2)
    assert again["classes"] == got["classes"]
    assert _files(tmp_path / "n") == _files(tmp_path / "n2")


def test_rejects_bad_arguments(source, tmp_path):
    with pytest.raises(ValueError, match="noisy_fraction"):
        augment.make_dataset(source, tmp_path / "x", 10, noisy_fraction=1.5)
    with pytest.raises(ValueError, match="no sub-folder"):
        augment.make_dataset(tmp_path / "source" / "red", tmp_path / "x", 10)


def test_cli_prints_one_json_line(source, tmp_path, capsys):
    argv = ["--dest", str(tmp_path / "cli"), "--images", "12", "--source", str(source)]
    assert augment.main([*argv, "--seed", "2", "--noisy-fraction", "0.25"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert (out["images"], out["noisy"], out["seed"]) == (12, 3, 2)


@pytest.mark.shared
def test_the_real_images_by_default(football, tmp_path):
    got = augment.make_dataset(None, tmp_path / "f", 70)
    assert got["source"] == str(augment.DEFAULT_SOURCE)
    assert got["classes"] == {"messi": 35, "ronaldo": 35}
    assert (got["originals"], got["augmented"]) == (60, 10)
    assert (tmp_path / "f" / "messi" / "messi1.jpeg").read_bytes() == (
        football / "messi" / "messi1.jpeg"
    ).read_bytes()
