"""The snapshot store's local state: its layout, its manifests, what a sync may adopt or delete.

``<dest>`` is a symlink to ``<dest>.snapshots/<id>/`` (``snapshots_dir``, ``current_snapshot``),
each snapshot a complete dataset with a ``manifest.json`` of ``MANIFEST_SCHEMA``. An older
version's plain folder is adopted only once ``legacy_problem`` proves it is one, and ``prune``
removes only folders a sync made (by name, and a snapshot only with its valid manifest). The sync
itself (list, stage, verify, swap) is ``imgclf.dataset``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from imgclf.github import shown

log = logging.getLogger(__name__)

# What a manifest must be for anything here to trust it. Older versions wrote the same keys.
_HEX = {"type": "string", "pattern": "^[0-9a-f]+$"}
MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "classes", "files"],
    "properties": {
        "version": {"type": "integer"},
        "repo": {"type": "string"},
        "ref": {"type": "string"},
        "classes": {"type": "object", "additionalProperties": {"type": "string"}},
        "fingerprint": _HEX,
        "complete": {"type": "boolean"},
        "files": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["class", "name", "path", "size", "sha256"],
                "properties": {
                    "class": {"type": "string"},
                    "name": {"type": "string"},
                    "path": {"type": "string"},
                    "size": {"type": "integer", "minimum": 0},
                    "sha256": {**_HEX, "minLength": 64, "maxLength": 64},
                    "blob_sha": {**_HEX, "minLength": 40, "maxLength": 40},
                    "time": {"type": "string"},
                },
            },
        },
    },
}
# Folders of the snapshot store a sync made, by name: snapshots (and an adopted old layout,
# each with its manifest), a failed sync's verified files, a killed sync's staging.
SNAPSHOT_NAME = re.compile(r"(\d{8}T\d{6}-[0-9a-f]{12}(-[0-9a-f]{6})?|legacy-\d+(-[0-9a-f]{6})?)")
STAGING_NAME = re.compile(r"\.staging-[0-9a-f]{12}")
PARTIAL = "partial"


def manifest_problem(data: Any) -> str | None:
    """Why ``data`` is not a manifest of ``MANIFEST_SCHEMA`` (the first problem), or ``None``."""
    from jsonschema import Draft202012Validator

    error = next(iter(Draft202012Validator(MANIFEST_SCHEMA).iter_errors(data)), None)
    if error is None:
        return None
    where = "/".join(map(str, error.absolute_path)) or "the top level"
    message = error.message if len(error.message) <= 120 else error.message[:117] + "..."
    return f"{where}: {message}"


def load_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path``, or ``None`` if it is missing, unreadable or not of
    ``MANIFEST_SCHEMA`` (then with a warning: the next sync rebuilds it)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("manifest %s is unreadable (%s): treated as absent", path, exc)
        return None
    problem = manifest_problem(data)
    if problem is not None:
        log.warning("manifest %s is not a dataset manifest (%s): treated as absent", path, problem)
        return None
    return data


def snapshots_dir(dest: Path) -> Path:
    return dest.parent / f"{dest.name}.snapshots"


def current_snapshot(dest: Path) -> Path | None:
    """The folder ``dest`` holds the dataset in: its symlink's target, or ``dest`` itself when it
    is a folder made by an older version (a real directory with a manifest; whether it truly is
    one is ``legacy_problem``'s to prove before anything moves it)."""
    if dest.is_symlink():
        target = dest.resolve()
        return target if target.is_dir() else None
    if dest.is_dir() and (dest / "manifest.json").is_file():
        return dest
    return None


def legacy_problem(folder: Path) -> str | None:
    """Why ``folder`` (a real directory with a ``manifest.json``) is not proven to be a dataset
    an older version made, or ``None``: its manifest is of ``MANIFEST_SCHEMA`` and its files are
    exactly the manifest's (no other file, each of the listed size and sha256)."""
    manifest = load_manifest(folder / "manifest.json")
    if manifest is None:
        return "its manifest.json is not an imgclf dataset manifest"
    listed = {entry["path"]: entry for entry in manifest["files"]}
    found: set[str] = set()
    for root, dirs, files in os.walk(folder):  # never follows a symlinked folder
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            found.add(os.path.relpath(os.path.join(root, name), folder))
    extra = sorted(found - set(listed) - {"manifest.json"})
    if extra:
        return f"{shown(extra[0])} is not in its manifest" + (
            f" (and {len(extra) - 1} more files)" if len(extra) > 1 else ""
        )
    for rel, entry in sorted(listed.items()):
        path = folder / rel
        if rel not in found or path.is_symlink() or not path.is_file():
            return f"{shown(rel)}, listed in its manifest, is missing"
        if path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
            return f"{shown(rel)} does not match its manifest (size or sha256)"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def prune(store: Path, keep: set[Path]) -> None:
    """Remove the folders of ``store`` a sync made, other than ``keep`` (the new snapshot and
    the one it replaced): snapshots by name and manifest, a failed sync's ``partial`` and killed
    syncs' staging by name. Anything else (a symlink, a user's folder) is left alone."""
    keep = {p.resolve() for p in keep}
    for child in store.iterdir():
        if child.is_symlink() or not child.is_dir() or child.resolve() in keep:
            continue
        if SNAPSHOT_NAME.fullmatch(child.name):
            manifest = load_manifest(child / "manifest.json")
            if manifest is None:
                log.warning("not pruning %s: it has no valid manifest.json", child)
                continue
        elif not (child.name == PARTIAL or STAGING_NAME.fullmatch(child.name)):
            continue
        shutil.rmtree(child, ignore_errors=True)
