"""A file-system model registry: numbered versions and one ``champion`` pointer.

Layout under ``<data root>/models``::

    v0001/model/        the saved Spark PipelineModel (featurizer + classifier)
    v0001/version.json  metrics, params, featurizer identity, dataset fingerprint, run id, times
    champion.json       {"version": "v0001", ...}

A version directory is assembled under a temporary name and renamed into place; the pointer is
written to a temporary file and ``os.replace``d. Both renames are atomic on one file system, so a
reader sees the old state or the new one, never half of either, and a crash at any point leaves
the previous champion intact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from imgclf.files import atomic_write_json

_VERSION = re.compile(r"^v(\d{4,})$")
POINTER = "champion.json"


class Registry:
    def __init__(self, root: Path):
        self.root = Path(root)

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def _next_version(self) -> str:
        existing = self.versions()
        return f"v{(int(existing[-1][1:]) + 1 if existing else 1):04d}"

    def info(self, version: str) -> dict[str, Any]:
        path = self.root / version / "version.json"
        if not _VERSION.match(version) or not path.is_file():
            raise KeyError(f"no model version {version!r} in {self.root}")
        return json.loads(path.read_text())

    def model_path(self, version: str) -> Path:
        self.info(version)
        return self.root / version / "model"

    def champion(self) -> str | None:
        pointer = self.root / POINTER
        if not pointer.is_file():
            return None
        return json.loads(pointer.read_text())["version"]

    def register(
        self,
        model_dir: Path,
        metadata: dict[str, Any],
        extra_files: dict[str, Path] | None = None,
    ) -> str:
        """Copy a saved model (and ``extra_files``, by name) in as a new version; not champion."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"model directory {model_dir} does not exist")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            shutil.copytree(model_dir, staging / "model")
            for name, src in (extra_files or {}).items():
                if Path(src).is_file():
                    shutil.copyfile(src, staging / name)
            for _ in range(100):  # another writer may take a number between listing and rename
                version = self._next_version()
                meta = {**metadata, "version": version, "registered_at": time.time()}
                atomic_write_json(staging / "version.json", meta)
                try:
                    os.rename(staging, self.root / version)  # fails if the name exists
                    return version
                except OSError:
                    if not (self.root / version).exists():
                        raise
            raise RuntimeError(f"could not allocate a version number in {self.root}")
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def pointer(self) -> dict[str, Any] | None:
        path = self.root / POINTER
        return json.loads(path.read_text()) if path.is_file() else None

    def set_champion(self, version: str, reason: str = "") -> None:
        """Point ``champion`` at ``version`` (atomic); earlier champions are kept in order."""
        self.info(version)  # must exist
        old = self.pointer() or {}
        past = [*old.get("history", []), old["version"]] if old.get("version") else []
        atomic_write_json(
            self.root / POINTER,
            {
                "version": version,
                "previous": old.get("version"),
                "history": past,
                "since": time.time(),
                "reason": reason,
            },
        )

    def rollback(self) -> str:
        """Make the champion before the current one champion again; return it."""
        old = self.pointer() or {}
        past = [v for v in old.get("history", []) if v != old.get("version")]
        if not past:
            raise KeyError("no earlier champion to roll back to")
        target = past[-1]
        self.info(target)
        atomic_write_json(
            self.root / POINTER,
            {
                "version": target,
                "previous": old.get("version"),
                "history": past[:-1],
                "since": time.time(),
                "reason": f"rollback from {old.get('version')}",
            },
        )
        return target
