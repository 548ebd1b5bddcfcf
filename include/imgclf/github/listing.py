"""A folder's listing as validated ``RemoteFile`` values: the contents API, or the Git Trees API.

Every field of every entry is checked before it touches a path or a request: ``name`` is one
path component (``check_name``), and no other entry of the folder has the same name or one
equal to it but for case; ``path`` is exactly ``<folder>/<name>``; ``sha`` a git blob SHA-1;
``size`` an integer within the file-size cap; ``download_url`` a plain URL at a trusted origin
whose path ends in the entry's path. One bad entry fails the whole listing with a line naming
it (``UntrustedListingError``). Entries that are not image files are skipped: folders,
submodules and symlinks (the contents API's ``symlink``, the Trees API's mode ``120000``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from imgclf.github.errors import DownloadError, NotFoundError, UntrustedListingError, shown
from imgclf.github.origins import Origins
from imgclf.names import check_spark_name

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
CONTENTS_API_LIMIT = 1000  # the contents API lists at most this many entries of a folder
DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_LISTING_BYTES = 64 * 1024 * 1024  # a 100,000-entry Trees answer is ~20 MB
MAX_NAME_CHARS = 200
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # a control character (C0 or DEL)
_TREE_KINDS = {"100644": "file", "100755": "file", "120000": "symlink", "160000": "submodule"}

# GET ``url`` with ``params``, parsed JSON or DownloadError; ``what`` names it in messages
GetJSON = Callable[[str, str, "dict[str, str] | None"], Any]


def git_blob_sha(data: bytes) -> str:
    """The SHA-1 git gives a file's content: ``sha1(b"blob <len>\\0" + data)``."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def check_name(name: Any) -> str:
    """``name`` if it is one safe path component, else ``ValueError`` saying why."""
    if not isinstance(name, str):
        raise ValueError(f"name {shown(name)} is not a string")
    if not name or name in (".", ".."):
        raise ValueError(f"name {shown(name)} is not a file name")
    if "/" in name or "\\" in name:
        raise ValueError(f"name {shown(name)} is not a single path component")
    if _CONTROL.search(name):
        raise ValueError(f"name {shown(name)} contains a control character")
    if name.startswith("."):
        raise ValueError(f"name {shown(name)} is a hidden file")
    if len(name) > MAX_NAME_CHARS or len(name.encode("utf-8", "surrogatepass")) > 255:
        raise ValueError(f"name {shown(name)} is longer than {MAX_NAME_CHARS} characters")
    if is_image_name(name):  # a file we store: every Spark reader must read it (imgclf.names)
        check_spark_name(name)
    return name


def parse_json(body: bytes, what: str) -> Any:
    """A listing's JSON, or ``UntrustedListingError`` (not JSON, or nested beyond reason)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise UntrustedListingError(f"GitHub's answer for {what} is nested too deeply") from None
    except ValueError:
        raise UntrustedListingError(f"GitHub's answer for {what} is not JSON") from None


@dataclass(frozen=True)
class RemoteFile:
    """One image of a listing, every field validated."""

    label: str
    name: str
    path: str  # path in the repository: <folder>/<name>
    sha: str  # git blob SHA-1 from the listing
    size: int
    download_url: str

    @property
    def what(self) -> str:
        """``'<class>/<name>'`` as messages show it (escaped: the name is the remote's)."""
        return shown(f"{self.label}/{self.name}", 120)


@dataclass(frozen=True)
class Folder:
    """Where a listing comes from, and the bounds its entries are checked against."""

    api_url: str
    repo: str
    ref: str
    folder: str
    label: str
    origins: Origins
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    @property
    def what(self) -> str:
        return f"folder {self.folder!r} of {self.repo!r} at ref {self.ref!r}"


def list_folder(get_json: GetJSON, where: Folder) -> list[RemoteFile]:
    """The validated image files directly inside ``where.folder`` (others skipped)."""
    what = where.what
    url = f"{where.api_url}/repos/{where.repo}/contents/{quote(where.folder)}"
    entries = get_json(url, what, {"ref": where.ref})
    if isinstance(entries, dict):
        raise DownloadError(f"{what} is a {shown(entries.get('type', 'file'))}, not a folder")
    if not isinstance(entries, list):
        raise UntrustedListingError(f"{what}: the listing is not a JSON list")
    if len(entries) >= CONTENTS_API_LIMIT:
        log.info("%s has >= %d entries: listing it via the Git Trees API", what, len(entries))
        entries = _list_tree(get_json, where)
    return validate(entries, where)


def validate(entries: list[Any], where: Folder) -> list[RemoteFile]:
    """Contents-API-shaped ``entries`` as ``RemoteFile`` values, or the first bad one named."""
    files: list[RemoteFile] = []
    seen: dict[str, str] = {}  # casefolded name -> the name
    names: set[str] = set()
    for index, entry in enumerate(entries):
        try:
            remote = _entry(entry, where)
        except ValueError as exc:
            raise UntrustedListingError(
                f"{where.what}: entry #{index}: {exc}; nothing was changed"
            ) from None
        if remote is None:
            continue
        if remote.name in names:
            raise UntrustedListingError(
                f"{where.what}: entry #{index}: {shown(remote.name)} is listed twice; "
                "nothing was changed"
            )
        names.add(remote.name)
        other = seen.setdefault(remote.name.casefold(), remote.name)
        if other != remote.name:
            raise UntrustedListingError(
                f"{where.what}: entries {shown(other)} and {shown(remote.name)} differ only by "
                "case; nothing was changed"
            )
        files.append(remote)
    return sorted(files, key=lambda f: f.name)


def _entry(entry: Any, where: Folder) -> RemoteFile | None:
    """One listing entry as a ``RemoteFile``, ``None`` for what is not an image file, or
    ``ValueError`` naming the entry and what is wrong with it."""
    if not isinstance(entry, dict):
        raise ValueError(f"{shown(entry)} is not an object")
    name = check_name(entry.get("name"))
    kind = entry.get("type")
    if not isinstance(kind, str):
        raise ValueError(f"{shown(name)}: type {shown(kind)} is not a string")
    if kind != "file" or not is_image_name(name):
        known = kind in ("file", "dir", "symlink", "submodule")
        log.info("skipping %s %s in %s (not an image file)", kind if known else shown(kind, 20),
                 shown(name), where.folder)  # fmt: skip
        return None
    folder = where.folder
    path = entry.get("path")
    if path != f"{folder}/{name}":
        raise ValueError(f"{shown(name)}: path {shown(path)} is not {folder}/{name}")
    sha = entry.get("sha")
    if not isinstance(sha, str) or not _SHA1.match(sha):
        raise ValueError(f"{shown(name)}: sha {shown(sha)} is not a git blob SHA-1")
    size = entry.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"{shown(name)}: size {shown(size)} is not a byte count")
    if size > where.max_file_bytes:
        raise ValueError(
            f"{shown(name)}: size {size} is over the limit of {where.max_file_bytes} bytes "
            "(IMGCLF_MAX_FILE_BYTES)"
        )
    url = entry.get("download_url") or where.origins.raw_url.format(
        repo=where.repo, ref=quote(where.ref, safe=""), path=quote(path)
    )
    try:
        where.origins.check(url)
    except ValueError as exc:
        raise ValueError(f"{shown(name)}: {exc}") from None
    if not unquote(urlsplit(url).path).endswith("/" + path):
        raise ValueError(f"{shown(name)}: download_url {shown(url)} is not for {path}")
    return RemoteFile(where.label, name, path, sha, size, url)


def _list_tree(get_json: GetJSON, where: Folder) -> list[dict[str, Any]]:
    """The folder through the Git Trees API (no 1,000-entry limit), as contents entries."""
    what = where.what
    parent, _, leaf = where.folder.rpartition("/")
    parent_url = f"{where.api_url}/repos/{where.repo}/contents/{quote(parent)}"
    siblings = get_json(parent_url, what, {"ref": where.ref})
    tree_sha = next(
        (
            e.get("sha")
            for e in (siblings if isinstance(siblings, list) else [])
            if isinstance(e, dict) and e.get("name") == leaf and e.get("type") == "dir"
        ),
        None,
    )
    if not isinstance(tree_sha, str) or not _SHA1.match(tree_sha):
        raise NotFoundError(f"{what}: not found in its parent folder")
    tree = get_json(f"{where.api_url}/repos/{where.repo}/git/trees/{tree_sha}", what, None)
    if not isinstance(tree, dict) or not isinstance(tree.get("tree"), list):
        raise UntrustedListingError(f"{what}: the Git Trees answer has no tree")
    if tree.get("truncated"):
        raise DownloadError(f"{what}: the Git Trees API truncated the listing too")
    return [tree_entry(item, where.folder, what) for item in tree["tree"]]


def tree_entry(item: Any, folder: str, what: str) -> dict[str, Any]:
    """A Git Trees item in the contents API's shape: a blob of mode 100644/100755 is a
    ``file``, of mode 120000 a ``symlink`` (skipped, as the contents API's are)."""
    if not isinstance(item, dict):
        raise UntrustedListingError(f"{what}: tree item {shown(item)} is not an object")
    name, mode = item.get("path"), item.get("mode")
    if item.get("type") == "blob":
        kind = _TREE_KINDS.get(mode) if isinstance(mode, str) else None
        if kind is None:
            raise UntrustedListingError(f"{what}: tree item {shown(name)}: mode {shown(mode)}")
    else:
        kind = "dir" if item.get("type") == "tree" else "submodule"
    return {
        "name": name,
        "path": f"{folder}/{name}" if isinstance(name, str) else None,
        "sha": item.get("sha"),
        "size": item.get("size"),
        "type": kind,
        "download_url": None,
    }
