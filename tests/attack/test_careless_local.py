"""Careless local state and a hostile local user: ``imgclf download`` never deletes, truncates
or moves what it did not write, and every refusal is one line.

Black-box: the real command line in a subprocess against a scripted GitHub on 127.0.0.1
(``hostile_github``), with the local mess made by hand the way a user (or another user of a
shared machine) would make it. Each test asserts the outcome on disk, not only the exit code.
Everything is bounded (subprocess timeouts, server-side waits).
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.attack.hostile_github import FakeRepo, HostileServer, Reply
from tests.attack.test_hostile_remote import _imgclf, _noise_png

MESSI, RONALDO = "data/messi", "data/ronaldo"
CLASSES = [f"messi={MESSI}", f"ronaldo={RONALDO}"]


def _files(n: int, seed: int) -> dict[str, bytes]:
    return {f"p{seed}_{i}.png": _noise_png(24, seed * 100 + i) for i in range(n)}


@pytest.fixture
def remote():
    with HostileServer() as server:
        repo = FakeRepo(server)
        repo.set_files(MESSI, _files(3, 1))
        repo.set_files(RONALDO, _files(3, 2))
        yield repo


def _env(**extra: str) -> dict[str, str]:
    """This process's environment but a GitHub connection another test left set (the DAG
    tests' ``first_run`` keeps one for the session: a worker of ``-n`` may run both)."""
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_GITHUB_DEFAULT"}
    return {**env, "IMGCLF_GITHUB_BACKOFF": "0", **extra}


def _download_cmd(repo: FakeRepo, dest: Path, extra=()) -> list[str]:
    return [*_imgclf(), "download", "--api-url", repo.server.url, "--repo", repo.repo,
            "--ref", repo.ref, "--dest", str(dest), *[a for c in CLASSES for a in ("--class", c)],
            *extra]  # fmt: skip


def _download(repo: FakeRepo, dest: Path, *, env=None, timeout=60, preexec=None, extra=()):
    return subprocess.run(
        _download_cmd(repo, dest, extra), capture_output=True, text=True, timeout=timeout,
        check=False, env=_env(**(env or {})), preexec_fn=preexec,
    )  # fmt: skip


def _one_line_failure(out: subprocess.CompletedProcess, *needles: str) -> str:
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = [x for x in out.stderr.splitlines() if x.startswith("imgclf download:")]
    assert len(lines) == 1, out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every file (content) and symlink (target) under ``root``, not following links."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            found[rel] = path.read_bytes()
    return found


# --- adopting an "old layout" --------------------------------------------------------------
@pytest.mark.parametrize(
    "manifest",
    [
        "{}",  # any file called manifest.json
        json.dumps({"version": 1, "classes": {}, "files": "x"}),  # wrong schema
        None,  # a real manifest of a real dataset, but the folder holds the user's files too
    ],
)
def test_a_users_folder_with_a_manifest_json_is_never_adopted(remote, tmp_path, manifest):
    dest = tmp_path / "photos"
    if manifest is None:
        assert _download(remote, tmp_path / "real").returncode == 0
        dest.mkdir()
        for path, data in _tree((tmp_path / "real").resolve()).items():
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            (dest / path).write_bytes(data)  # type: ignore[arg-type]
    else:
        (dest / "messi").mkdir(parents=True)
        (dest / "manifest.json").write_text(manifest)
    (dest / "messi" / "holiday.jpg").write_bytes(b"my own photo")
    before = _tree(tmp_path)
    out = _download(remote, dest)
    _one_line_failure(out, "refusing to adopt", str(dest))
    after = _tree(tmp_path)
    assert after == before  # nothing moved, deleted or created (no snapshot store either)


# --- the snapshot store --------------------------------------------------------------------
def test_a_symlinked_snapshot_store_is_refused_and_its_target_untouched(remote, tmp_path):
    shared = tmp_path / "shared"  # someone else's folders, one even named like a snapshot
    for name in ("team-a", "20250101T000000-0123456789ab", "partial"):
        (shared / name).mkdir(parents=True)
        (shared / name / "keep.txt").write_text(name)
    dest = tmp_path / "raw"
    (tmp_path / "raw.snapshots").symlink_to(shared)
    before = _tree(shared)
    _one_line_failure(_download(remote, dest), "raw.snapshots", "symbolic link")
    assert _tree(shared) == before and not dest.exists()


def test_pruning_removes_only_snapshots_the_sync_made(remote, tmp_path):
    dest = tmp_path / "raw"
    assert _download(remote, dest).returncode == 0
    store = tmp_path / "raw.snapshots"
    mine = {  # a user's things in the store: a folder, one named like a snapshot, a link
        "notes": store / "notes",
        "fake": store / "20240101T000000-aaaaaaaaaaaa",
    }
    for path in mine.values():
        path.mkdir()
        (path / "keep.txt").write_text("keep")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.txt").write_text("keep")
    (store / "20240101T000000-bbbbbbbbbbbb").symlink_to(tmp_path / "elsewhere")
    for round_ in range(3):  # three changes of the remote: three syncs that prune
        remote.set_files(MESSI, _files(3 + round_ + 1, 1))
        out = _download(remote, dest)
        assert out.returncode == 0, out.stderr
    snapshots = [p for p in store.iterdir() if p.name[:2] == "20" and p.name[8] == "T"]
    ours = [p for p in snapshots if (p / "manifest.json").is_file() and not p.is_symlink()]
    assert len(ours) == 2  # the new one and the one it replaced: older ones pruned
    for path in mine.values():
        assert (path / "keep.txt").read_text() == "keep"
    assert (tmp_path / "elsewhere" / "keep.txt").read_text() == "keep"


# --- the lock ------------------------------------------------------------------------------
def test_a_symlinked_lock_is_refused_and_its_target_not_truncated(remote, tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("do not truncate me")
    (tmp_path / "raw.snapshots").mkdir()
    (tmp_path / "raw.snapshots" / ".lock").symlink_to(victim)
    _one_line_failure(_download(remote, tmp_path / "raw"), ".lock", "symbolic link")
    assert victim.read_text() == "do not truncate me"


def test_a_second_sync_says_it_waits_for_whom_and_gives_up_in_time(remote, tmp_path):
    store = tmp_path / "raw.snapshots"
    store.mkdir()
    with open(store / ".lock", "w") as held:  # another sync, mid-way
        held.write("pid 4242 on otherhost since 2026-01-01T00:00:00+00:00\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        started = time.monotonic()
        out = _download(remote, tmp_path / "raw", env={"IMGCLF_SYNC_LOCK_WAIT": "2"}, timeout=60)
        took = time.monotonic() - started
    assert "waiting for another sync" in out.stderr and "pid 4242 on otherhost" in out.stderr
    _one_line_failure(out, "gave up after 2 s", "pid 4242 on otherhost since 2026-01-01")
    assert took < 20, took
    assert remote.raw_requests() == []  # it never started


def test_the_second_sync_proceeds_once_the_first_is_done(remote, tmp_path):
    store = tmp_path / "raw.snapshots"
    store.mkdir()
    held = open(store / ".lock", "w")  # noqa: SIM115 (released once the sync says it waits)
    fcntl.flock(held, fcntl.LOCK_EX)
    # released when the second sync says it waits, not after a fixed delay: a slow start
    # (a loaded machine) must not let it find the lock already free
    cmd = _download_cmd(remote, tmp_path / "raw")
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=_env(IMGCLF_SYNC_LOCK_WAIT="30")) as proc:  # fmt: skip
        try:
            seen = []
            for line in proc.stderr:  # ends when the child exits (its lock wait is bounded)
                seen.append(line)
                if "waiting for another sync" in line:
                    break
        finally:
            held.close()
        out, err = proc.communicate(timeout=60)
    err = "".join(seen) + err
    assert proc.returncode == 0, err
    assert "waiting for another sync" in err
    assert "downloaded=6" in out  # it went on once the lock was free


# --- corrupt manifest ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "corrupt", ['{"version": 1, "classes": {}, "files": "x"}', "[1, 2]", "not json", ""]
)
def test_a_corrupt_manifest_is_treated_as_absent_and_rebuilt(remote, tmp_path, corrupt):
    dest = tmp_path / "raw"
    assert _download(remote, dest).returncode == 0
    manifest = dest / "manifest.json"
    manifest.write_text(corrupt)  # what a careless edit leaves
    out = _download(remote, dest)
    assert out.returncode == 0, out.stderr
    assert "treated as absent" in out.stderr and "Traceback" not in out.stderr
    rebuilt = json.loads((dest / "manifest.json").read_text())
    assert len(rebuilt["files"]) == 6 and rebuilt["complete"] is True
    assert "unchanged=6" in out.stdout  # its files were reused (blob SHA), not fetched again


# --- kill -9 mid-way, then again -----------------------------------------------------------
def test_a_sync_killed_mid_way_reuses_the_files_it_had_verified(tmp_path):
    release = threading.Event()
    with HostileServer() as server:
        repo = FakeRepo(server)
        files = _files(6, 3)
        repo.set_files(MESSI, files)
        repo.set_files(RONALDO, _files(2, 4))
        stuck = sorted(files)[-1]
        data = files[stuck]

        def hang(_req):  # this one file never comes (until the test says so)
            release.wait(60)
            return Reply.fixed(200, data)

        server.route(repo.raw_path(MESSI, stuck), hang)
        cmd = [*_imgclf(), "download", "--api-url", server.url, "--repo", repo.repo,
               "--ref", repo.ref, "--dest", str(tmp_path / "raw"), "--workers", "2",
               *[a for c in CLASSES for a in ("--class", c)]]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        store = tmp_path / "raw.snapshots"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the 7 other files verified and written
                done = list(store.glob(".staging-*/*/*.png"))
                if len(done) == 7:
                    break
                time.sleep(0.05)
            assert len(done) == 7, done
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        release.set()
        assert not (tmp_path / "raw").exists()  # nothing swapped in
        server.clear_log()
        out = _download(repo, tmp_path / "raw")
    assert out.returncode == 0, out.stderr
    assert "downloaded=1 unchanged=7" in out.stdout, out.stdout
    assert [r.path.rsplit("/", 1)[1] for r in repo.raw_requests()] == [stuck]
    assert not list(store.glob(".staging-*"))  # the killed sync's leftovers are gone


# --- disk full -----------------------------------------------------------------------------
def _small_files() -> None:
    """The child may write files of at most 2 KB: each image write fails (EFBIG), as on a full
    disk (Python ignores SIGXFSZ, so the write raises OSError)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


def test_a_full_disk_while_staging_is_one_line_and_loses_nothing(remote, tmp_path):
    dest = tmp_path / "raw"
    assert _download(remote, dest).returncode == 0
    before = _tree(dest.resolve())
    remote.set_files(RONALDO, _files(4, 9))  # new files to write
    out = _download(remote, dest, preexec=_small_files)
    _one_line_failure(out, "File too large")
    assert _tree(dest.resolve()) == before  # the dataset as it was, manifest included
    assert json.loads((dest / "manifest.json").read_text())["complete"] is True


def test_the_helpers_are_real():
    """The rlimit really makes writes fail in the child (so the test above tests something)."""
    code = ("import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT); "
            "os.write(fd, b'x' * 2048); os.write(fd, b'x')")  # fmt: skip
    target = Path(os.environ.get("TMPDIR", "/tmp")) / f"imgclf-fsize-{os.getpid()}"
    out = subprocess.run([sys.executable, "-c", code, str(target)], preexec_fn=_small_files,
                         capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    target.unlink(missing_ok=True)
    assert out.returncode != 0 and "File too large" in out.stderr
