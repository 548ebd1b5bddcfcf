"""Download class folders of images from a GitHub repository, verified and idempotent.

Listing: GitHub's REST contents API (``GET /repos/{owner}/{repo}/contents/{path}?ref=``), or the
Git Trees API for folders the contents API truncates (it lists at most 1,000 entries).
Every file is fetched through its ``download_url``, checked against the listing's git blob SHA-1
and fully decoded by Pillow, then written atomically to ``<raw>/<class>/<name>``. A manifest
records what is on disk and a fingerprint over the (class, blob SHA) pairs identifies the dataset.

Retries: urllib3 ``Retry`` (exponential backoff with jitter) on connection errors and 5xx for
every request; a bounded outer loop on body-level failures (connection reset mid-body, short
body, SHA or decode mismatch). GitHub rate limits (403/429 with ``X-RateLimit-Remaining: 0`` or
``Retry-After``) are waited out when the reset is near and reported clearly when it is not.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
CONTENTS_API_LIMIT = 1000
RAW_URL = "https://raw.githubusercontent.com/{repo}/{ref}/{path}"
MANIFEST_VERSION = 1


class DownloadError(RuntimeError):
    """The download did not produce a complete, verified dataset; the message says why.

    ``result`` holds the counts of what did happen, when the failure came after listing.
    """

    result: DownloadResult | None = None


class NotFoundError(DownloadError):
    pass


class RateLimitError(DownloadError):
    pass


def git_blob_sha(data: bytes) -> str:
    """The SHA-1 git gives a file's content: ``sha1(b"blob <len>\\0" + data)``."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def fingerprint(pairs: list[tuple[str, str]]) -> str:
    """Dataset fingerprint over sorted ``(class, blob_sha)``: changes exactly with the content."""
    digest = hashlib.sha256()
    for label, sha in sorted(pairs):
        digest.update(f"{label}\t{sha}\n".encode())
    return digest.hexdigest()


def check_image(data: bytes) -> None:
    """Raise ``ValueError`` unless Pillow decodes every pixel of ``data``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"not a decodable image ({exc})") from None


@dataclass(frozen=True)
class RemoteFile:
    label: str
    name: str
    path: str  # path in the repository
    sha: str  # git blob SHA-1 from the listing
    size: int
    download_url: str


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


def raw_url_for(api_url: str) -> str:
    """Where raw files live for an API: raw.githubusercontent.com for github.com, else
    ``https://HOST/raw/OWNER/REPO/REF/PATH`` (GitHub Enterprise, and the local stand-in)."""
    parts = urlsplit(api_url)
    if parts.hostname == "api.github.com":
        return RAW_URL
    return f"{parts.scheme}://{parts.netloc}/raw/{{repo}}/{{ref}}/{{path}}"


class GitHubClient:
    """A small GitHub REST client with retries, rate-limit handling and a token kept secret."""

    def __init__(
        self,
        api_url: str = "https://api.github.com",
        token: str | None = None,
        *,
        retries: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        timeout: tuple[float, float] = (10.0, 60.0),
        max_rate_limit_wait: float = 120.0,
        raw_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.api_url = api_url.rstrip("/")
        self._token = token or None
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.max_rate_limit_wait = max_rate_limit_wait
        self.raw_url = raw_url or raw_url_for(self.api_url)
        self.sleep = sleep
        self._local = threading.local()

    def __repr__(self) -> str:  # never show the token
        return f"GitHubClient({self.api_url!r}, token={'set' if self._token else 'none'})"

    # --- HTTP -----------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            retry = Retry(
                total=self.retries,
                connect=self.retries,
                read=self.retries,
                status=self.retries,
                status_forcelist=(500, 502, 503, 504),
                allowed_methods=frozenset({"GET"}),
                backoff_factor=self.backoff,
                backoff_max=self.backoff_max,
                backoff_jitter=self.backoff,
                respect_retry_after_header=True,
                raise_on_status=False,  # the last 5xx comes back as a response we explain
            )
            session = requests.Session()
            adapter = HTTPAdapter(max_retries=retry, pool_maxsize=16)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = "imgclf-downloader"
            self._local.session = session
        return session

    def _headers(self, url: str, api: bool) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json"} if api else {}
        if api:
            headers["X-GitHub-Api-Version"] = "2022-11-28"
        if self._token and self._trusted(url):
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _trusted(self, url: str) -> bool:
        """The token goes to the API host and GitHub's own hosts, never to a third party."""
        host = (urlsplit(url).hostname or "").lower()
        api_host = (urlsplit(self.api_url).hostname or "").lower()
        return host == api_host or host.endswith((".github.com", ".githubusercontent.com"))

    def _rate_limit_wait(self, resp: requests.Response) -> float | None:
        """Seconds to wait when ``resp`` is a rate-limit answer, else ``None``."""
        if resp.status_code not in (403, 429):
            return None
        retry_after = resp.headers.get("Retry-After")
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                return self.backoff_max
        if resp.headers.get("X-RateLimit-Remaining") == "0":
            reset = resp.headers.get("X-RateLimit-Reset")
            try:
                return max(0.0, float(reset) - time.time()) + 1.0
            except (TypeError, ValueError):
                return self.backoff_max
        return None if resp.status_code == 403 else self.backoff_max

    def get(self, url: str, *, api: bool, what: str, params: dict | None = None):
        """GET with retries (5xx, connection errors) and rate-limit waits; returns the response."""
        waits = 0
        while True:
            resp = self._session().get(
                url, params=params, headers=self._headers(url, api), timeout=self.timeout
            )
            wait = self._rate_limit_wait(resp)
            if wait is None:
                break
            reset_at = datetime.fromtimestamp(time.time() + wait, UTC).strftime("%H:%M:%S UTC")
            if wait > self.max_rate_limit_wait or waits >= 3:
                hint = (
                    "the token's limit is used up"
                    if self._token
                    else "without a token GitHub allows 60 requests an hour; a token "
                    "(github_default connection password or GITHUB_TOKEN) raises it to 5,000"
                )
                raise RateLimitError(
                    f"GitHub rate limit hit while fetching {what}: it resets at {reset_at} "
                    f"(in {wait:.0f} s, longer than the {self.max_rate_limit_wait:.0f} s this "
                    f"downloader waits); {hint}"
                )
            log.warning("rate limited on %s: waiting %.1f s (until %s)", what, wait, reset_at)
            self.sleep(wait)
            waits += 1
        return resp

    # --- listing --------------------------------------------------------------------------
    def _api_json(self, url: str, what: str, params: dict | None = None) -> Any:
        resp = self.get(url, api=True, what=what, params=params)
        if resp.status_code == 404:
            raise NotFoundError(f"GitHub answered 404 Not Found for {what}")
        if resp.status_code != 200:
            raise DownloadError(
                f"GitHub answered {resp.status_code} for {what}: {resp.text[:200]!r}"
            )
        try:
            return resp.json()
        except ValueError:
            raise DownloadError(f"GitHub's answer for {what} is not JSON") from None

    def list_folder(self, repo: str, ref: str, path: str, label: str) -> list[RemoteFile]:
        """Image files directly inside ``path`` at ``ref`` (others are skipped with a log line)."""
        path = path.strip("/")
        what = f"folder {path!r} of {repo!r} at ref {ref!r}"
        url = f"{self.api_url}/repos/{repo}/contents/{quote(path)}"
        entries = self._api_json(url, what, params={"ref": ref})
        if isinstance(entries, dict):
            raise DownloadError(f"{what} is a {entries.get('type', 'file')}, not a folder")
        if len(entries) >= CONTENTS_API_LIMIT:
            log.info("%s has >= %d entries: listing it via the Git Trees API", what, len(entries))
            entries = self._list_tree(repo, ref, path, what)
        files = []
        for entry in entries:
            name, kind = entry.get("name", ""), entry.get("type")
            if kind != "file" or not is_image_name(name):
                log.info("skipping %s %r in %s (not an image file)", kind, name, path)
                continue
            files.append(
                RemoteFile(
                    label=label,
                    name=name,
                    path=entry.get("path", f"{path}/{name}"),
                    sha=entry["sha"],
                    size=int(entry.get("size", -1)),
                    download_url=entry.get("download_url")
                    or self.raw_url.format(repo=repo, ref=ref, path=quote(f"{path}/{name}")),
                )
            )
        return sorted(files, key=lambda f: f.name)

    def _list_tree(self, repo: str, ref: str, path: str, what: str) -> list[dict]:
        parent, _, leaf = path.rpartition("/")
        parent_url = f"{self.api_url}/repos/{repo}/contents/{quote(parent)}"
        siblings = self._api_json(parent_url, what, params={"ref": ref})
        tree_sha = next((e["sha"] for e in siblings if e.get("name") == leaf), None)
        if tree_sha is None:
            raise NotFoundError(f"{what}: not found in its parent folder")
        tree = self._api_json(f"{self.api_url}/repos/{repo}/git/trees/{tree_sha}", what)
        if tree.get("truncated"):
            raise DownloadError(f"{what}: the Git Trees API truncated the listing too")
        return [
            {
                "name": item["path"],
                "path": f"{path}/{item['path']}",
                "sha": item["sha"],
                "size": item.get("size", -1),
                "type": "file" if item.get("type") == "blob" else "dir",
                "download_url": None,
            }
            for item in tree.get("tree", [])
        ]

    # --- fetching -------------------------------------------------------------------------
    def fetch_verified(self, remote: RemoteFile, attempts: int = 4) -> bytes:
        """The file's bytes, verified by blob SHA and full decode, or ``DownloadError``."""
        problem = ""
        for attempt in range(1, attempts + 1):
            try:
                resp = self.get(remote.download_url, api=False, what=remote.path)
                if resp.status_code == 404:
                    raise NotFoundError(f"{remote.path}: 404 Not Found at its download_url")
                if resp.status_code != 200:
                    problem = f"HTTP {resp.status_code}"
                else:
                    data = resp.content
                    sha = git_blob_sha(data)
                    if sha != remote.sha:
                        problem = (
                            f"blob SHA {sha} of {len(data)} bytes does not match the "
                            f"listing's {remote.sha}"
                        )
                    else:
                        check_image(data)
                        return data
            except ValueError as exc:  # decode failure of bytes whose SHA matched
                raise DownloadError(f"{remote.label}/{remote.name}: {exc}") from None
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                # includes resets mid-body and short bodies (urllib3 enforces Content-Length)
                problem = f"connection failed while reading the body ({type(exc).__name__})"
            if attempt < attempts:
                delay = min(self.backoff_max, self.backoff * 2 ** (attempt - 1))
                delay += random.uniform(0, self.backoff)
                log.warning("%s: %s; attempt %d/%d", remote.path, problem, attempt, attempts)
                self.sleep(delay)
        raise DownloadError(
            f"{remote.label}/{remote.name} failed verification after {attempts} attempts: {problem}"
        )


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _local_blob_sha(path: Path) -> str | None:
    try:
        return git_blob_sha(path.read_bytes())
    except OSError:
        return None


def load_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def download_dataset(
    client: GitHubClient,
    repo: str,
    ref: str,
    classes: dict[str, str],
    raw_dir: Path,
    *,
    min_images_per_class: int = 1,
    workers: int = 4,
) -> DownloadResult:
    """Bring ``raw_dir`` in line with the remote folders; write the manifest; return counts.

    Raises ``DownloadError`` (after writing what did verify) when a file fails, a class is too
    small, or the same content appears under two classes.
    """
    started = time.monotonic()
    raw_dir = Path(raw_dir)
    result = DownloadResult()
    remote: list[RemoteFile] = []
    for label, folder in sorted(classes.items()):
        files = client.list_folder(repo, ref, folder, label)
        log.info("class %r: %d image files listed in %s", label, len(files), folder)
        remote.extend(files)

    by_sha: dict[str, RemoteFile] = {}
    for f in remote:
        other = by_sha.setdefault(f.sha, f)
        if other.label != f.label:
            raise DownloadError(
                f"label conflict: {other.label}/{other.name} and {f.label}/{f.name} have the "
                "same content (blob "
                f"{f.sha}); an image cannot be in two classes"
            )

    todo: list[RemoteFile] = []
    kept: list[RemoteFile] = []
    for f in remote:
        if _local_blob_sha(raw_dir / f.label / f.name) == f.sha:
            kept.append(f)
        else:
            todo.append(f)
    result.unchanged = len(kept)

    wanted = {(f.label, f.name) for f in remote}
    for label in classes:
        folder = raw_dir / label
        if folder.is_dir():
            for p in folder.iterdir():
                if p.is_file() and (label, p.name) not in wanted:
                    log.info("removing %s/%s: no longer in the remote folder", label, p.name)
                    p.unlink()
                    result.removed += 1

    total = len(todo)
    done_bytes = 0
    verified: list[RemoteFile] = list(kept)
    errors: list[str] = []
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {pool.submit(client.fetch_verified, f): f for f in todo}
            for k, fut in enumerate(as_completed(futures), start=1):
                f = futures[fut]
                try:
                    data = fut.result()
                except DownloadError as exc:
                    errors.append(str(exc))
                    result.failed.append(f"{f.label}/{f.name}")
                    continue
                _atomic_write(raw_dir / f.label / f.name, data)
                verified.append(f)
                done_bytes += len(data)
                result.downloaded += 1
                if k == total or k % 10 == 0:
                    log.info("%d/%d files, %d bytes", k, total, done_bytes)
    result.bytes = done_bytes

    manifest_files = []
    for f in sorted(verified, key=lambda f: (f.label, f.name)):
        data = (raw_dir / f.label / f.name).read_bytes()
        manifest_files.append(
            {
                "class": f.label,
                "name": f.name,
                "path": f"{f.label}/{f.name}",
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "blob_sha": f.sha,
                "source_url": f.download_url,
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
    # keep the time a file was first fetched when it did not change
    previous = load_manifest(raw_dir / "manifest.json") or {}
    old = {(e["path"], e["blob_sha"]): e["time"] for e in previous.get("files", [])}
    for entry in manifest_files:
        entry["time"] = old.get((entry["path"], entry["blob_sha"]), entry["time"])

    result.counts = {label: 0 for label in classes}
    for f in verified:
        result.counts[f.label] += 1
    result.fingerprint = fingerprint([(f.label, f.sha) for f in verified])
    manifest = {
        "version": MANIFEST_VERSION,
        "repo": repo,
        "ref": ref,
        "classes": dict(sorted(classes.items())),
        "fingerprint": result.fingerprint,
        "complete": not errors,
        "files": manifest_files,
    }
    from imgclf.registry import atomic_write_json

    atomic_write_json(raw_dir / "manifest.json", manifest)
    result.manifest_path = str(raw_dir / "manifest.json")
    result.seconds = time.monotonic() - started

    problem = None
    if errors:
        problem = DownloadError(
            f"{len(errors)} of {len(remote)} files failed ({result.summary()}):\n- "
            + "\n- ".join(sorted(errors))
        )
    elif small := {k: v for k, v in result.counts.items() if v < min_images_per_class}:
        problem = DownloadError(
            f"classes with fewer than min_images_per_class={min_images_per_class} valid images: "
            + ", ".join(f"{k}={v}" for k, v in sorted(small.items()))
        )
    if problem is not None:
        problem.result = result
        raise problem
    return result
