"""The downloader against the local GitHub stand-in (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from PIL import Image

from imgclf.download import (
    DownloadError,
    GitHubClient,
    NotFoundError,
    RateLimitError,
    download_dataset,
    fingerprint,
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
    return download_dataset(client, REPO, REF, CLASSES, dest, **kw)


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


def test_garbage_that_never_verifies_fails_naming_the_file_and_keeps_the_rest(stub, tmp_path):
    stub.add_faults(r"/raw/.*/b\.png$", ["garbage"] * 10)
    dest = tmp_path / "raw"
    with pytest.raises(DownloadError, match=r"messi/b\.png failed verification.*blob SHA"):
        _download(stub, dest)
    assert (dest / "messi" / "a.JPG").exists()  # verified files stay
    assert not (dest / "messi" / "b.png").exists()
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["complete"] is False and len(manifest["files"]) == 5


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
        download_dataset(client, REPO, REF, {"zidane": "data/zidane", **CLASSES}, tmp_path)
    with pytest.raises(NotFoundError, match="ref 'nope'"):
        download_dataset(client, REPO, "nope", CLASSES, tmp_path)


def test_empty_folder_fails_min_images_with_counts(stub, remote, tmp_path):
    (remote / "empty").mkdir()
    with pytest.raises(DownloadError, match=r"min_images_per_class=1.*zidane=0"):
        download_dataset(
            _client(stub), REPO, REF, {**CLASSES, "zidane": "data/empty"}, tmp_path,
            min_images_per_class=1,
        )  # fmt: skip


def test_too_few_images_fails_with_counts(stub, tmp_path):
    with pytest.raises(DownloadError, match="messi=3, ronaldo=3"):
        _download(stub, tmp_path / "raw", min_images_per_class=30)


def test_same_content_in_two_classes_is_a_label_conflict(stub, remote, tmp_path):
    (remote / "ronaldo" / "copy.jpg").write_bytes((remote / "messi" / "a.JPG").read_bytes())
    with pytest.raises(DownloadError, match=r"label conflict: messi/a\.JPG and ronaldo/copy\.jpg"):
        _download(stub, tmp_path / "raw")


def test_large_folders_are_listed_through_the_trees_api(stub, tmp_path, monkeypatch):
    import imgclf.download as dl

    monkeypatch.setattr(dl, "CONTENTS_API_LIMIT", 3)  # our folders have 4-5 entries
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
        download_dataset(client, REPO, "nope", CLASSES, tmp_path / "x")
    assert secret not in str(err.value)


def test_token_is_not_sent_to_third_party_hosts():
    client = GitHubClient("https://api.github.com", token="t")
    assert client._trusted("https://raw.githubusercontent.com/a/b/c")
    assert not client._trusted("https://evil.example.com/a.jpg")
