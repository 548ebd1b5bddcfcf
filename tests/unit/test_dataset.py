"""Dataset sync against the local GitHub stand-in (real HTTP on 127.0.0.1): stage, verify, swap."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from PIL import Image

from imgclf.dataset import fingerprint, snapshots_dir, sync_dataset
from imgclf.github import (
    DownloadError,
    GitHubClient,
    NotFoundError,
    RateLimitError,
    git_blob_sha,
)
from imgclf.testing.github_stub import GitHubStub

REPO, REF = "owner/repo", "main"
CLASSES = {"messi": "data/messi", "ronaldo": "data/ronaldo"}


def _img(mode, fmt, color, size=(40, 30)):
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def remote(tmp_path):
    """A small remote tree: mixed formats, upper-case extensions, a README and a sub-folder."""
    root = tmp_path / "remote"
    (root / "messi" / "nested").mkdir(parents=True)
    (root / "ronaldo").mkdir()
    (root / "messi" / "a.JPG").write_bytes(_img("RGB", "JPEG", (200, 10, 10)))
    (root / "messi" / "b.png").write_bytes(_img("RGBA", "PNG", (10, 200, 10, 128)))
    (root / "messi" / "c.jpeg").write_bytes(_img("CMYK", "JPEG", (10, 20, 200, 0)))
    (root / "messi" / "README.md").write_text("not an image")
    (root / "messi" / "nested" / "d.jpg").write_bytes(_img("RGB", "JPEG", (1, 2, 3)))
    (root / "ronaldo" / "e.jpeg").write_bytes(_img("L", "JPEG", 90))
    (root / "ronaldo" / "f.Png").write_bytes(_img("P", "PNG", 3))
    (root / "ronaldo" / "g.webp").write_bytes(_img("RGB", "WEBP", (5, 5, 250)))
    return root


@pytest.fixture
def stub(remote):
    with GitHubStub(remote, repo=REPO, ref=REF, prefix="data") as s:
        yield s


def _client(stub, **kw):
    kw.setdefault("backoff", 0.01)
    return GitHubClient(stub.url, **kw)


def _download(stub, dest, **kw):
    client = kw.pop("client", None) or _client(stub)
    return sync_dataset(client, REPO, REF, CLASSES, dest, **kw)


def test_downloads_only_images_verified_with_manifest(stub, remote, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    dest = tmp_path / "raw"
    r = _download(stub, dest, min_images_per_class=3)
    assert (r.downloaded, r.unchanged, r.failed) == (6, 0, [])
    assert r.counts == {"messi": 3, "ronaldo": 3}
    for label, name in [("messi", "a.JPG"), ("messi", "b.png"), ("ronaldo", "f.Png")]:
        assert (dest / label / name).read_bytes() == (remote / label / name).read_bytes()
    assert not (dest / "messi" / "README.md").exists()
    assert "skipping file 'README.md'" in caplog.text
    assert "skipping dir 'nested'" in caplog.text
    manifest = json.loads((dest / "manifest.json").read_text())
    entry = next(e for e in manifest["files"] if e["name"] == "a.JPG")
    data = (remote / "messi" / "a.JPG").read_bytes()
    assert entry["blob_sha"] == git_blob_sha(data)
    assert entry["size"] == len(data)
    assert entry["source_url"].endswith("/data/messi/a.JPG")
    assert manifest["fingerprint"] == r.fingerprint
    assert not list(dest.rglob("*.part"))


def test_blob_sha_is_gits():
    assert git_blob_sha(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object


def test_rerun_downloads_nothing_and_fixes_corrupted_or_deleted_files(stub, tmp_path):
    dest = tmp_path / "raw"
    first = _download(stub, dest)
    n = len(stub.requests)
    again = _download(stub, dest)
    assert (again.downloaded, again.unchanged) == (0, 6)
    assert all("/raw/" not in r["path"] for r in stub.requests[n:])  # only listings
    assert again.fingerprint == first.fingerprint
    (dest / "messi" / "a.JPG").write_bytes(b"corrupted")
    (dest / "ronaldo" / "e.jpeg").unlink()
    fixed = _download(stub, dest)
    assert (fixed.downloaded, fixed.unchanged) == (2, 4)
    assert fixed.fingerprint == first.fingerprint


def test_file_removed_upstream_leaves_the_dataset_and_changes_the_fingerprint(
    stub, remote, tmp_path
):
    dest = tmp_path / "raw"
    first = _download(stub, dest)
    (remote / "ronaldo" / "g.webp").unlink()
    second = _download(stub, dest)
    assert second.removed == 1
    assert not (dest / "ronaldo" / "g.webp").exists()
    assert second.fingerprint != first.fingerprint
    names = [e["name"] for e in json.loads((dest / "manifest.json").read_text())["files"]]
    assert "g.webp" not in names


def test_fingerprint_changes_exactly_with_content():
    a = fingerprint([("m", "1"), ("r", "2")])
    assert a == fingerprint([("r", "2"), ("m", "1")])
    assert a != fingerprint([("m", "1"), ("r", "3")])
    assert a != fingerprint([("r", "1"), ("r", "2")])  # a label change is a content change


@pytest.mark.parametrize(
    "faults",
    [["500", "503"], ["reset"], ["short"], ["html"], ["garbage"], ["retry-after"]],
)
def test_transient_faults_are_retried(stub, tmp_path, faults):
    stub.add_faults(r"/raw/.*/a\.JPG$", faults)
    r = _download(stub, tmp_path / "raw")
    assert r.downloaded == 6 and not r.failed
    fetches = [q for q in stub.requests if q["path"].endswith("/a.JPG")]
    assert len(fetches) >= len(faults) + 1


def test_a_file_that_never_verifies_changes_nothing_and_the_rest_is_kept_for_next_time(
    stub, tmp_path
):
    stub.add_faults(r"/raw/.*/b\.png$", ["garbage"] * 4)  # one per attempt
    dest = tmp_path / "raw"
    with pytest.raises(DownloadError, match=r"messi/b\.png. failed verification.*blob SHA") as err:
        _download(stub, dest)
    assert err.value.retryable and err.value.result.failed == ["messi/b.png"]
    assert not dest.exists()  # no half dataset, no manifest saying otherwise
    n = len(stub.requests)
    again = _download(stub, dest)  # the fault queue is used up: b.png verifies now
    assert (again.downloaded, again.unchanged) == (1, 5)
    assert [q["path"] for q in stub.requests[n:] if "/raw/" in q["path"]] == [
        "/raw/owner/repo/main/data/messi/b.png"
    ]
    assert json.loads((dest / "manifest.json").read_text())["complete"] is True


def test_near_rate_limit_reset_is_waited_out(stub, tmp_path):
    stub.state.ratelimit_reset = 1.0
    stub.add_faults(r"/contents/data/messi$", ["ratelimit"])
    waits = []
    client = _client(stub, sleep=lambda s: (waits.append(s), time.sleep(min(s, 2.5))))
    r = _download(stub, tmp_path / "raw", client=client)
    assert r.downloaded == 6
    assert waits and 0 < waits[0] <= 3.5


def test_far_rate_limit_reset_fails_clearly(stub, tmp_path):
    stub.state.ratelimit_reset = 3000
    stub.add_faults(r"/contents/data/messi$", ["ratelimit"])
    with pytest.raises(RateLimitError, match=r"resets at \d\d:\d\d:\d\d UTC.*token"):
        _download(stub, tmp_path / "raw", client=_client(stub, max_rate_limit_wait=5))


def test_404_names_repo_ref_and_path(stub, tmp_path):
    client = _client(stub)
    with pytest.raises(NotFoundError, match=r"'data/zidane' of 'owner/repo' at ref 'main'"):
        sync_dataset(client, REPO, REF, {"zidane": "data/zidane", **CLASSES}, tmp_path / "r")
    with pytest.raises(NotFoundError, match="ref 'nope'"):
        sync_dataset(client, REPO, "nope", CLASSES, tmp_path / "r")


def test_empty_folder_fails_min_images_with_counts(stub, remote, tmp_path):
    (remote / "empty").mkdir()
    with pytest.raises(DownloadError, match=r"min_images_per_class=1.*zidane=0"):
        sync_dataset(
            _client(stub), REPO, REF, {**CLASSES, "zidane": "data/empty"}, tmp_path / "r",
            min_images_per_class=1,
        )  # fmt: skip


def test_too_few_images_fails_with_counts(stub, tmp_path):
    with pytest.raises(DownloadError, match="messi=3, ronaldo=3"):
        _download(stub, tmp_path / "raw", min_images_per_class=30)


def test_same_content_in_two_classes_is_a_label_conflict(stub, remote, tmp_path):
    (remote / "ronaldo" / "copy.jpg").write_bytes((remote / "messi" / "a.JPG").read_bytes())
    with pytest.raises(
        DownloadError, match=r"label conflict: .messi/a\.JPG. and .ronaldo/copy\.jpg"
    ):
        _download(stub, tmp_path / "raw")


def test_large_folders_are_listed_through_the_trees_api(stub, tmp_path, monkeypatch):
    import imgclf.github.listing as gh

    monkeypatch.setattr(gh, "CONTENTS_API_LIMIT", 3)  # our folders have 4-5 entries
    r = _download(stub, tmp_path / "raw")
    assert r.downloaded == 6
    assert any("/git/trees/" in q["path"] for q in stub.requests)


def test_token_is_sent_but_never_logged_or_stored(stub, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "ghp_s3cr3tTOKENvalue"
    stub.add_faults(r"/raw/.*/a\.JPG$", ["500", "reset"])
    client = _client(stub, token=secret)
    _download(stub, tmp_path / "raw", client=client)
    assert all(q["headers"].get("Authorization") == f"Bearer {secret}" for q in stub.requests)
    assert secret not in caplog.text
    assert secret not in repr(client)
    assert secret not in (tmp_path / "raw" / "manifest.json").read_text()
    with pytest.raises(DownloadError) as err:
        sync_dataset(client, REPO, "nope", CLASSES, tmp_path / "x")
    assert secret not in str(err.value)


def _tree(root):
    """Every file under ``root`` (symlinks followed) as relative path -> bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_dest_is_swapped_atomically_and_an_unchanged_rerun_touches_nothing(stub, remote, tmp_path):
    dest = tmp_path / "raw"
    _download(stub, dest)
    assert dest.is_symlink() and dest.resolve().parent == snapshots_dir(dest)
    first = dest.resolve()
    _download(stub, dest)
    assert dest.resolve() == first  # nothing changed: no new snapshot
    (remote / "ronaldo" / "h.png").write_bytes(_img("RGB", "PNG", (9, 9, 9)))
    r = _download(stub, dest)
    assert (r.downloaded, r.unchanged) == (1, 6)
    assert dest.resolve() != first and first.is_dir()  # the previous one is kept for readers
    assert (dest / "ronaldo" / "h.png").stat().st_nlink == 1
    assert (dest / "messi" / "a.JPG").stat().st_nlink == 2  # reused by hard link, not copied
    (remote / "ronaldo" / "h.png").unlink()
    _download(stub, dest)
    assert not first.exists()  # two back: pruned
    assert len([p for p in snapshots_dir(dest).iterdir() if p.name != ".lock"]) == 2


@pytest.mark.parametrize("kept", [0, 1])
def test_a_shrunken_listing_below_the_minimum_changes_nothing(stub, remote, tmp_path, kept):
    dest = tmp_path / "raw"
    _download(stub, dest, min_images_per_class=3)
    before = _tree(dest)
    for p in sorted((remote / "messi").glob("*.*[gG]"))[kept:]:
        p.unlink()
    with pytest.raises(DownloadError, match=rf"min_images_per_class=3.*messi={kept}.*nothing was"):
        _download(stub, dest, min_images_per_class=3)
    assert _tree(dest) == before
    assert not any("/raw/" in q["path"] for q in stub.requests[-2:])


def test_a_legacy_plain_folder_is_migrated_only_when_proven_and_kept(stub, remote, tmp_path):
    import shutil

    first = tmp_path / "first"
    _download(stub, first)
    legacy = tmp_path / "legacy"  # what an older version left: a plain folder, same layout
    shutil.copytree(first.resolve(), legacy)
    (remote / "ronaldo" / "new.jpg").write_bytes(_img("RGB", "JPEG", (7, 7, 7)))
    r = _download(stub, legacy)
    assert legacy.is_symlink() and r.unchanged == 6 and r.downloaded == 1
    kept = [p for p in snapshots_dir(legacy).iterdir() if p.name.startswith("legacy-")]
    assert len(kept) == 1 and (kept[0] / "manifest.json").is_file()  # not deleted the same run
    fake = tmp_path / "fake"  # a user's folder that merely holds a file called manifest.json
    (fake / "messi").mkdir(parents=True)
    (fake / "manifest.json").write_text("{}")
    (fake / "messi" / "mine.jpg").write_bytes(b"my photo")
    with pytest.raises(DownloadError, match=r"^refusing to adopt .*fake as an existing dataset: "
                       r"its manifest.json is not an imgclf dataset manifest"):  # fmt: skip
        _download(stub, fake)
    assert (fake / "messi" / "mine.jpg").read_bytes() == b"my photo"
    assert not snapshots_dir(fake).exists() or not any(
        p.name != ".lock" for p in snapshots_dir(fake).iterdir()
    )
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DownloadError, match=r"refusing to replace .*mine.*not a dataset"):
        _download(stub, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_a_decompression_bomb_is_refused_at_download_with_the_pixel_limit(stub, remote, tmp_path):
    bomb = remote / "messi" / "bomb.png"
    Image.new("1", (9000, 8000)).save(bomb)  # 72 MP in a few KB
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DownloadError, match=r"messi/bomb\.png.: 9000x8000 = 72,000,000 pixels .*"
                       r"over the limit of 64,000,000"):  # fmt: skip
        _download(stub, tmp_path / "raw")
    with pytest.raises(
        DownloadError, match=r"bomb\.png.: 72,000,000 pixels is over the limit of 30,"
    ):
        _download(stub, tmp_path / "raw", max_image_pixels=30_000_000)  # Pillow's own guard first
    r = _download(stub, tmp_path / "raw2", max_image_pixels=80_000_000)
    assert r.counts["messi"] == 4


def test_each_worker_keeps_its_connection_and_progress_is_logged_by_time(
    stub, remote, tmp_path, caplog, monkeypatch
):
    import imgclf.dataset as ds

    for i in range(40):
        (remote / "ronaldo" / f"many{i:02d}.jpg").write_bytes(_img("RGB", "JPEG", (i, 9, 9)))
    monkeypatch.setattr(ds, "PROGRESS_SECONDS", 3600.0)
    caplog.set_level(logging.INFO, logger="imgclf.dataset")
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")  # the handler too: last
    r = _download(stub, tmp_path / "raw", workers=4)
    assert r.downloaded == 46
    new_connections = caplog.text.count("Starting new HTTP connection")
    assert 1 < new_connections <= 4 + 1  # one per worker, one for the listings: none per file
    progress = [m for m in caplog.messages if " files (" in m]
    assert progress == [f"46/46 files (100%), {r.bytes} bytes"]  # by time, not per N files


def test_the_stand_in_answers_at_loopback_speed(stub, tmp_path):
    """No 40 ms stall per keep-alive request (Nagle's algorithm against a delayed ACK)."""
    client = _client(stub)
    files = client.list_folder(REPO, REF, "data/messi", "messi")
    started = time.monotonic()
    for _ in range(20):
        for f in files:
            client.fetch(f)
    assert time.monotonic() - started < 2.0  # 60 requests: >= 2.4 s with a stall each


def test_a_sync_is_retried_only_when_every_failed_file_is_worth_it(stub, remote, tmp_path):
    """A file that never verifies (retryable) beside a file that is not an image (refused):
    a retry cannot fix the second, so the whole sync is not retryable."""
    stub.add_faults(r"/raw/.*/b\.png$", ["garbage"] * 4)
    (remote / "ronaldo" / "z.jpg").write_bytes(b"not an image")
    with pytest.raises(DownloadError, match=r"2 of 7 files failed") as err:
        _download(stub, tmp_path / "raw")
    assert not err.value.retryable
