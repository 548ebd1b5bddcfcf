"""Model-file checks: is a user's ``.keras`` file safe to hand to Keras, and what is its hash.

A ``.keras`` is a zip archive given by path, as untrusted as an image. ``check_keras_archive``
reads only its central directory: a zip bomb is refused by its declared sizes, a missing member
named, and a serialized Python lambda (what Keras' safe mode refuses) found in its
``config.json``, all before Keras or Spark opens the file. ``file_sha256`` keys a file model's
features by content. Nothing here imports Keras.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

# The members every Keras 3 ``.keras`` archive has (keras/src/saving/saving_lib.py); the weights
# are ``model.weights.h5`` (the default) or ``model.weights.npz`` (``weights_format="npz"``).
KERAS_ARCHIVE_MEMBERS = ("metadata.json", "config.json")
KERAS_WEIGHTS_MEMBERS = ("model.weights.h5", "model.weights.npz")


# Keras parses these whole, in memory (json.loads): a bound of their own, far below the total's.
KERAS_JSON_MEMBERS_MAX_BYTES = 64 * 1024 * 1024
KERAS_ARCHIVE_MAX_MEMBERS = 10_000


def max_model_bytes() -> int:
    """``IMGCLF_MAX_MODEL_BYTES`` (``Settings.max_model_bytes``), read where the model is."""
    from imgclf.settings import Settings, _env_int

    return _env_int("IMGCLF_MAX_MODEL_BYTES", Settings.max_model_bytes)


def check_keras_archive(path: Path, shown: str, max_bytes: int | None = None) -> None:
    """Raise ``ValueError`` unless ``path`` is a readable Keras 3 archive within the size bounds.

    Only the zip's central directory is read (nothing is extracted): its member names, and
    their *declared* uncompressed sizes, which bound what Python's ``zipfile`` (and so Keras)
    will ever inflate: at most ``max_bytes`` in all (``IMGCLF_MAX_MODEL_BYTES``), at most
    ``KERAS_JSON_MEMBERS_MAX_BYTES`` for each JSON member. A zip bomb is refused in
    milliseconds, before Keras opens it.
    """
    limit = max_model_bytes() if max_bytes is None else max_bytes
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise ValueError(
            f"model file {shown!r} is not a Keras 3 .keras archive (not a zip file)"
        ) from None
    except OSError as exc:
        raise ValueError(f"model file {shown!r} cannot be read: {exc.strerror or exc}") from None
    if len(infos) > KERAS_ARCHIVE_MAX_MEMBERS:
        raise ValueError(
            f"model file {shown!r} has {len(infos)} zip members, over the limit of "
            f"{KERAS_ARCHIVE_MAX_MEMBERS}"
        )
    for info in infos:
        if info.filename.endswith(".json") and info.file_size > KERAS_JSON_MEMBERS_MAX_BYTES:
            raise ValueError(
                f"model file {shown!r}: its member {info.filename!r} declares "
                f"{info.file_size:,} bytes uncompressed, over the limit of "
                f"{KERAS_JSON_MEMBERS_MAX_BYTES:,} for a JSON member; refused before extracting"
            )
    total = sum(info.file_size for info in infos)
    if total > limit:
        raise ValueError(
            f"model file {shown!r} declares {total:,} bytes uncompressed, over the limit of "
            f"{limit:,} (IMGCLF_MAX_MODEL_BYTES); refused before extracting"
        )
    names = {info.filename for info in infos}
    missing = [m for m in KERAS_ARCHIVE_MEMBERS if m not in names]
    if not names & set(KERAS_WEIGHTS_MEMBERS):
        missing.append(KERAS_WEIGHTS_MEMBERS[0])
    if missing:
        raise ValueError(
            f"model file {shown!r} is not a Keras 3 .keras archive: it has no {', '.join(missing)}"
        )
    unsafe = _python_code_in(path)
    if unsafe is not None:
        raise ValueError(
            f"model file {shown!r}: {unsafe} holds Python code (a serialized lambda), which "
            "Keras' safe mode refuses to load (arbitrary code execution)"
        )


def _python_code_in(path: Path) -> str | None:
    """The layer of the archive's ``config.json`` that holds a serialized Python lambda
    (``{"class_name": "__lambda__"}``: what Keras' ``safe_mode`` refuses, in a ``Lambda`` layer
    or anywhere else), or ``None``. The member's size is bounded already."""
    import json

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, ValueError, zipfile.BadZipFile, RecursionError) as exc:
        raise ValueError(
            f"model file {str(path)!r}: its config.json is not readable JSON ({type(exc).__name__})"
        ) from None
    todo: list[tuple[object, str]] = [(config, "the model")]
    while todo:
        node, where = todo.pop()
        if isinstance(node, dict):
            if node.get("class_name") == "__lambda__":
                return where
            if isinstance(node.get("config"), dict) and isinstance(node["config"].get("name"), str):
                where = f"layer {node['config']['name']!r}"
            todo.extend((v, where) for v in node.values())
        elif isinstance(node, list):
            todo.extend((v, where) for v in node)
    return None


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
