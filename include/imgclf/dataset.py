"""Dataset sync: stage, verify, check, then swap. The local copy changes only as a whole.

Layout: ``<dest>`` is a symlink to ``<dest>.snapshots/<id>/``, a complete dataset with
``<class>/<name>`` files and its ``manifest.json``. A sync

1. lists every class through ``GitHubClient`` (which validates every entry) and checks the
   listing itself: label conflicts, and ``min_images_per_class`` on what is listed;
2. stages the new dataset in ``<dest>.snapshots/.staging-*``: files whose blob SHA is unchanged
   are hard-linked from the current snapshot (or a failed sync's leftovers), the others fetched
   (size-capped, SHA-verified) and checked by the one image rule (``imgclf.image_acceptance``);
3. only when every file passed, writes the manifest (``complete: true``), fsyncs, and swaps the
   ``<dest>`` symlink atomically (``rename(2)``). Files gone upstream are simply not in the new
   snapshot. The previous snapshot is kept for a run that may still read it; older ones go.

A crash at any point leaves ``<dest>`` pointing at the old snapshot with its manifest, or at the
new one with its manifest. A failed sync changes nothing under ``<dest>``. One sync at a time per
destination (an ``flock``). The store's own rules (its layout and manifests, what may be adopted
or pruned) are ``imgclf.snapshots``.

One job, one file (a little over 400 lines): listing checks, staging, fetching and the swap are
the steps of one transaction, and each step's failure handling refers to the others' state.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imgclf.files import LockError, atomic_write_json, fsync_dir, locked
from imgclf.github import (
    DownloadError,
    GitHubClient,
    RemoteFile,
    UntrustedListingError,
    git_blob_sha,
    shown,
)
from imgclf.image_acceptance import ImageRejectedError, verify_image
from imgclf.snapshots import (
    PARTIAL,
    STAGING_NAME,
    current_snapshot,
    legacy_problem,
    load_manifest,
    prune,
    snapshots_dir,
)

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
DEFAULT_LOCK_WAIT = 600.0  # Settings.sync_lock_wait
PROGRESS_SECONDS = 5.0


def fingerprint(pairs: list[tuple[str, str]]) -> str:
    """Dataset fingerprint over sorted ``(class, blob_sha)``: changes exactly with the content."""
    digest = hashlib.sha256()
    for label, sha in sorted(pairs):
        digest.update(f"{label}\t{sha}\n".encode())
    return digest.hexdigest()


@dataclass
class DownloadResult:
    downloaded: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[str] = field(default_factory=list)
    bytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""
    manifest_path: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"downloaded={self.downloaded} unchanged={self.unchanged} removed={self.removed} "
            f"failed={len(self.failed)}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "downloaded": self.downloaded,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": list(self.failed),
            "bytes": self.bytes,
            "counts": dict(self.counts),
            "fingerprint": self.fingerprint,
            "manifest_path": self.manifest_path,
            "seconds": round(self.seconds, 3),
        }


def list_remote(
    client: GitHubClient, repo: str, ref: str, classes: dict[str, str]
) -> list[RemoteFile]:
    """Every class's validated image files; ``DownloadError`` on a label conflict."""
    remote: list[RemoteFile] = []
    with client.download():  # one deadline for all the listings
        for label, folder in sorted(classes.items()):
            files = client.list_folder(repo, ref, folder, label)
            log.info("class %r: %d image files listed in %s", label, len(files), folder)
            remote.extend(files)
    by_sha: dict[str, RemoteFile] = {}
    for f in remote:
        other = by_sha.setdefault(f.sha, f)
        if other.label != f.label:
            raise UntrustedListingError(
                f"label conflict: {other.what} and {f.what} have the "
                f"same content (blob {f.sha}); an image cannot be in two classes; "
                "nothing was changed"
            )
    return remote


def _inside(folder: Path, name: str) -> Path:
    """``folder/name``, checked after resolution to lie directly in ``folder`` (second line of
    defence behind the listing's name check). ``folder`` is resolved already (once per class,
    not per file): an unresolved one fails the check."""
    target = (folder / name).resolve()
    if target.parent != folder:
        raise UntrustedListingError(f"{shown(name)} resolves outside {folder}; nothing was changed")
    return target


def _reuse(sources: list[Path], f: RemoteFile, target: Path) -> bool:
    """Hard-link (or copy) an already-verified local file with ``f``'s blob SHA to ``target``."""
    for source in sources:
        path = source / f.label / f.name
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size != f.size:
                continue
            if git_blob_sha(path.read_bytes()) != f.sha:
                continue
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
            return True
        except OSError:
            continue
    return False


def _write(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:  # "x": never follow or overwrite anything already there
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _swap(dest: Path, snapshot: Path) -> Path | None:
    """Point ``dest`` at ``snapshot`` with one atomic rename of a symlink. An older version's
    plain folder (proven by ``legacy_problem``) becomes a snapshot of its own first: returned."""
    parent = dest.parent
    link = parent / f".{dest.name}.swap-{os.getpid()}"
    link.unlink(missing_ok=True)
    os.symlink(os.path.relpath(snapshot, parent), link)
    adopted = None
    if dest.is_dir() and not dest.is_symlink():
        if any(dest.iterdir()):
            adopted = snapshots_dir(dest) / f"legacy-{int(time.time())}"
            if adopted.exists():
                adopted = adopted.with_name(adopted.name + f"-{uuid.uuid4().hex[:6]}")
            os.rename(dest, adopted)
        else:
            dest.rmdir()
    os.replace(link, dest)
    fsync_dir(parent)
    return adopted


def sync_dataset(
    client: GitHubClient,
    repo: str,
    ref: str,
    classes: dict[str, str],
    dest: Path,
    *,
    min_images_per_class: int = 1,
    workers: int = 4,
    max_image_pixels: int | None = None,
    lock_wait: float | None = DEFAULT_LOCK_WAIT,
) -> DownloadResult:
    """Make ``dest`` the verified copy of the remote folders, or change nothing and raise.

    Raises ``DownloadError`` naming what is wrong: a bad listing entry, a class below
    ``min_images_per_class``, the same content in two classes, a file that does not verify,
    a local folder that is not provably ours, another sync of ``dest`` holding the lock for
    longer than ``lock_wait`` seconds (``None``: wait as long as it takes), a write that fails.
    """
    from imgclf.params import check_classes

    started = time.monotonic()
    try:
        classes = check_classes(classes)
    except ValueError as exc:
        raise DownloadError(str(exc)) from None
    dest = Path(dest).absolute()
    store = snapshots_dir(dest)
    if store.is_symlink():
        raise DownloadError(
            f"refusing to use {store}: the snapshot store is a symbolic link (the sync deletes "
            "old snapshots in it); make it a real folder or choose another --dest"
        )
    current = current_snapshot(dest)
    if current is None and dest.exists() and not dest.is_symlink():
        if not dest.is_dir() or any(dest.iterdir()):
            raise DownloadError(
                f"refusing to replace {dest}: it is not a dataset made by imgclf download "
                "(no manifest.json); choose an empty or new folder"
            )
    elif current == dest:  # a real folder with a manifest.json: adopted only if proven
        problem = legacy_problem(dest)
        if problem is not None:
            raise DownloadError(
                f"refusing to adopt {dest} as an existing dataset: {problem}; "
                "nothing was changed (choose an empty or new folder)"
            )

    def waiting(holder: str) -> None:
        log.warning(
            "waiting for another sync of %s (%s); giving up after %g s (IMGCLF_SYNC_LOCK_WAIT)",
            dest, holder, lock_wait,
        )  # fmt: skip

    try:
        with locked(store / ".lock", wait=lock_wait, on_wait=waiting), client.download():
            remote = list_remote(client, repo, ref, classes)
            counts = {label: 0 for label in classes}
            for f in remote:
                counts[f.label] += 1
            small = {k: v for k, v in counts.items() if v < min_images_per_class}
            if small:
                raise DownloadError(
                    f"classes with fewer than min_images_per_class={min_images_per_class} "
                    "images in the remote listing: "
                    + ", ".join(f"{k}={v}" for k, v in sorted(small.items()))
                    + "; nothing was changed"
                )
            return _stage_and_swap(
                client, repo, ref, classes, dest, store, remote, counts, workers,
                max_image_pixels, started,
            )  # fmt: skip
    except LockError as exc:
        raise DownloadError(f"sync of {dest}: {exc}; nothing was changed") from None
    except OSError as exc:  # disk full, permissions, ... while staging: nothing good is lost
        what = f" ({exc.filename})" if exc.filename else ""
        raise DownloadError(
            f"cannot write the dataset under {store}{what}: {exc.strerror or exc}; "
            f"{dest} is unchanged"
        ) from None


def _stage_and_swap(
    client, repo, ref, classes, dest, store, remote, counts, workers, max_pixels, started
) -> DownloadResult:
    result = DownloadResult(counts=counts)
    current = current_snapshot(dest)
    partial = store / PARTIAL  # a failed sync's verified files, reused by blob SHA
    killed = sorted(  # a killed sync's staging: its finished files verified too (blob SHA again)
        p for p in store.iterdir() if STAGING_NAME.fullmatch(p.name) and not p.is_symlink()
    )
    sources = [p for p in (current, partial, *killed) if p is not None and p.is_dir()]
    staging = store / f".staging-{uuid.uuid4().hex[:12]}"
    listed = {(f.label, f.name) for f in remote}
    if current is not None:
        old = {(p.parent.name, p.name) for p in current.glob("*/*") if p.is_file()}
        result.removed = len(old - listed)
    for label in classes:
        (staging / label).mkdir(parents=True)
    try:
        folders = {label: (staging / label).resolve() for label in classes}
        todo = []
        for f in remote:
            target = _inside(folders[f.label], f.name)
            if _reuse(sources, f, target):
                result.unchanged += 1
            else:
                todo.append((f, target))
        errors = _fetch_all(client, todo, workers, max_pixels, result)
        if errors:
            result.failed = sorted(errors)
            causes = sorted(errors, key=lambda k: (errors[k].consequence, k))  # causes first
            shown_errors = [str(errors[k]) for k in causes][:3]
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            error = DownloadError(
                f"{len(errors)} of {len(remote)} files failed, nothing was changed "
                f"({result.summary()}): " + "; ".join(shown_errors) + more
            )
            # worth a retry only if every cause is (a refused or slow file stays so)
            error.retryable = all(e.retryable for e in errors.values() if not e.consequence)
            error.result = result
            _keep_partial(staging, partial)
            raise error
        manifest = _manifest(repo, ref, classes, remote, staging, current)
        if _same(current, manifest):  # nothing changed: leave the dataset as it is
            shutil.rmtree(staging, ignore_errors=True)
            return _done(result, manifest, dest, started)
        atomic_write_json(staging / "manifest.json", manifest)
        fsync_dir(staging)
        snapshot = store / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{manifest['fingerprint'][:12]}"
        if snapshot.exists():
            snapshot = snapshot.with_name(snapshot.name + f"-{uuid.uuid4().hex[:6]}")
        os.rename(staging, snapshot)
        fsync_dir(store)
        adopted = _swap(dest, snapshot)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = adopted or current  # kept for a run that may still read it
    prune(store, keep={snapshot, *([previous] if previous is not None else [])})
    return _done(result, manifest, dest, started)


def _same(current: Path | None, manifest: dict[str, Any]) -> bool:
    """Whether ``current`` already is this dataset: complete, same files, same classes."""
    old = load_manifest(current / "manifest.json") if current is not None else None
    if not old or old.get("complete") is not True:
        return False
    keys = ("version", "repo", "ref", "classes", "fingerprint", "files")
    return all(old.get(k) == manifest[k] for k in keys)


def _done(result: DownloadResult, manifest: dict[str, Any], dest: Path, started: float):
    result.fingerprint = manifest["fingerprint"]
    result.manifest_path = str(dest / "manifest.json")
    result.seconds = time.monotonic() - started
    log.info("dataset %s: %s in %.2f s", dest, result.summary(), result.seconds)
    return result


def _fetch_all(client, todo, workers, max_pixels, result) -> dict[str, Any]:
    """Fetch and verify each ``(file, target)`` of ``todo`` into its target (checked by
    ``_inside``); return ``{class/name: error}``.

    Each of ``workers`` threads fetches (its own keep-alive connection), checks the blob SHA,
    decodes every pixel (Pillow's decoder runs without the GIL) and writes with ``fsync``, so
    the network, the decoder and the disk of different files overlap. Progress is logged
    every ``PROGRESS_SECONDS``, not per file.
    """
    errors: dict[str, Any] = {}
    if not todo:
        return errors
    total, done, last = len(todo), 0, time.monotonic()

    def one(f: RemoteFile, target: Path) -> int:
        data = client.fetch(f)
        try:
            verify_image(data, max_pixels)
        except ImageRejectedError as exc:
            raise UntrustedListingError(f"{f.what}: {exc}") from None
        try:
            _write(target, data)
        except OSError as exc:  # disk full...: this file failed, the dataset is unchanged
            raise DownloadError(f"{f.what}: cannot write {target}: {exc.strerror or exc}") from None
        return len(data)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(one, f, target): f for f, target in todo}
        for fut in as_completed(futures):
            f = futures[fut]
            try:
                result.bytes += fut.result()
                result.downloaded += 1
            except DownloadError as exc:
                errors[f"{f.label}/{f.name}"] = exc
            done += 1
            if time.monotonic() - last >= PROGRESS_SECONDS or done == total:
                last = time.monotonic()
                log.info("%d/%d files (%d%%), %d bytes", done, total, 100 * done // total,
                         result.bytes)  # fmt: skip
    return errors


def _keep_partial(staging: Path, partial: Path) -> None:
    """Keep what did verify, so the next try fetches only the rest."""
    shutil.rmtree(partial, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rename(staging, partial)


def _manifest(repo, ref, classes, remote, staging, current) -> dict[str, Any]:
    previous = (load_manifest(current / "manifest.json") or {}) if current else {}
    first_seen = {
        (e.get("path"), e.get("blob_sha")): e.get("time")
        for e in previous.get("files", [])
        if isinstance(e, dict)
    }
    now = datetime.now(UTC).isoformat(timespec="seconds")
    files = []
    for f in sorted(remote, key=lambda f: (f.label, f.name)):
        data = (staging / f.label / f.name).read_bytes()
        files.append(
            {
                "class": f.label,
                "name": f.name,
                "path": f"{f.label}/{f.name}",
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "blob_sha": f.sha,
                "source_url": f.download_url,
                "time": first_seen.get((f"{f.label}/{f.name}", f.sha)) or now,
            }
        )
    return {
        "version": MANIFEST_VERSION,
        "repo": repo,
        "ref": ref,
        "classes": dict(sorted(classes.items())),
        "fingerprint": fingerprint([(f.label, f.sha) for f in remote]),
        "complete": True,
        "files": files,
    }
