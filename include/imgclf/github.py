"""The GitHub client, and the project's trust boundary towards the remote.

Everything a remote answers is hostile until checked here, before it touches a path or a request:

- **Listings** (the REST contents API, or the Git Trees API past 1,000 entries) become
  ``RemoteFile`` values only if every field checks out: an image ``name`` is one path component
  (no separator of either kind, no ``.``/``..``, no control character, bounded length, no other
  name of the class equal to it but for case), ``path`` is exactly ``<folder>/<name>``, ``sha`` is
  a git blob SHA-1, ``size`` an integer within the file-size cap, ``download_url`` a plain URL at
  a trusted origin whose path ends in the entry's path. One bad entry fails the whole listing with
  a message naming it (``UntrustedListingError``).
- **Origins**: a URL is compared by (scheme, host, port) as urllib3 parses it, which is what
  requests connects to; URLs that two parsers could read differently (a backslash, user-info,
  whitespace or control characters) are refused outright. Requests go only to the API origin and,
  for public GitHub, ``https://raw.githubusercontent.com``; redirects are followed by hand, to
  those origins only. The token goes to exactly those origins, never over plain http to a
  non-loopback host, and is redacted from every message.
- **Sizes**: every body is streamed with a cap (the listing's ``size``, which must match exactly,
  within ``max_file_bytes``; listings within ``MAX_LISTING_BYTES``) and dropped as soon as it
  exceeds it. Bodies are asked for uncompressed (no gzip bomb).

Retries, one layer each: urllib3 ``Retry`` owns connection errors and 5xx (exponential backoff
with jitter, ``Retry-After`` ignored, so its sleeps are bounded by its own backoff); this client
owns rate limits (403/429 with ``Retry-After`` or ``X-RateLimit-Remaining: 0``), waited out
within one budget per client (``max_rate_limit_wait``, 120 s), and body-level failures of a file
(reset mid-body, short body, SHA mismatch), tried ``attempts`` times.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import check_header_validity
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    SSLError,
)
from urllib3.util import parse_url
from urllib3.util.retry import Retry

if TYPE_CHECKING:
    from imgclf.settings import Settings

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
CONTENTS_API_LIMIT = 1000  # the contents API lists at most this many entries of a folder
PUBLIC_API_URL = "https://api.github.com"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{ref}/{path}"
DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_LISTING_BYTES = 64 * 1024 * 1024  # a 100,000-entry Trees answer is ~20 MB
MAX_NAME_CHARS = 200
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # a control character (C0 or DEL)
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f]")  # ... or a space
_DEFAULT_PORTS = {"http": 80, "https": 443}
REMEDY = (
    "check the network or the github_default connection (`make run-offline` works without GitHub)"
)

Origin = tuple[str, str, int]


class DownloadError(RuntimeError):
    """The download did not produce a complete, verified dataset; the message says why.

    ``result`` holds the counts of what did happen, when the failure came after listing;
    ``retryable`` says whether trying the same thing again later can help.
    """

    result: Any = None
    retryable = False


class NotFoundError(DownloadError):
    pass


class RateLimitError(DownloadError):
    pass


class RemoteUnreachableError(DownloadError):
    """No connection to the remote after urllib3's bounded retries."""


class UntrustedListingError(DownloadError):
    """The remote answered something that fails the trust boundary (a name, URL, size...)."""


class FetchError(DownloadError):
    """A file could not be fetched intact after every attempt (worth a later retry)."""

    retryable = True


def git_blob_sha(data: bytes) -> str:
    """The SHA-1 git gives a file's content: ``sha1(b"blob <len>\\0" + data)``."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def shown(value: Any, limit: int = 80) -> str:
    """A remote value as it may appear in a message: repr (control characters escaped), cut."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


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
    return name


def origin_of(url: Any) -> Origin:
    """``(scheme, host, port)`` that requests will connect to for ``url``.

    Refuses what two URL parsers might read differently, so that the origin checked is the
    origin connected to: non-strings, whitespace or control characters, backslashes, user-info,
    schemes other than http(s), and any disagreement between urllib3 and ``urlsplit``.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"URL {shown(url)} is not a non-empty string")
    if _URL_UNSAFE.search(url):
        raise ValueError(f"URL {shown(url)} contains whitespace or control characters")
    if "\\" in url:
        raise ValueError(f"URL {shown(url)} contains a backslash")
    try:
        mine = parse_url(url)
        theirs = urlsplit(url)
        their_port = theirs.port
    except ValueError as exc:
        raise ValueError(f"URL {shown(url)} does not parse ({exc})") from None
    scheme = (mine.scheme or "").lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"URL {shown(url)} is not http or https")
    if mine.auth is not None or "@" in theirs.netloc:
        raise ValueError(f"URL {shown(url)} carries user-info")
    host = (mine.host or "").lower().strip("[]")
    if not host or host != (theirs.hostname or "").lower():
        raise ValueError(f"URL {shown(url)} has an ambiguous host")
    port = mine.port or _DEFAULT_PORTS[scheme]
    if port != (their_port or _DEFAULT_PORTS[scheme]):
        raise ValueError(f"URL {shown(url)} has an ambiguous port")
    return scheme, host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _show_origin(origin: Origin) -> str:
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + ("" if port == _DEFAULT_PORTS[scheme] else f":{port}")


def describe_connection_error(exc: BaseException) -> str:
    """A short cause for a connection failure: which of DNS, refusal, timeout, TLS."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, NameResolutionError):
            return "its name could not be resolved (no DNS or no network)"
        if isinstance(e, ConnectionRefusedError) or (
            isinstance(e, NewConnectionError) and "refused" in str(e).lower()
        ):
            return "the connection was refused"
        if isinstance(e, NewConnectionError):  # a subclass of ConnectTimeoutError in urllib3 2
            return f"no connection could be made ({str(e).rpartition(': ')[2]})"
        if isinstance(e, ConnectTimeoutError | requests.ConnectTimeout):
            return "the connection timed out"
        if isinstance(e, SSLError | requests.exceptions.SSLError):
            return "the TLS handshake failed"
        stack += [getattr(e, "reason", None), e.__cause__, e.__context__, *e.args[:1]]
        stack = [s for s in stack if isinstance(s, BaseException) or s is None]
    if isinstance(exc, requests.ReadTimeout):
        return "it did not answer in time"
    return f"the connection failed ({type(exc).__name__})"


def endpoint(conn: Any) -> tuple[str, str | None]:
    """API base URL and token that an Airflow connection (``github_default``) describes.

    The one reading of the connection, for the DAGs (``BaseHook.get_connection``) and the
    command line (``AIRFLOW_CONN_GITHUB_DEFAULT`` parsed by Airflow's own ``Connection``):
    ``host`` is a full URL or a host name; ``schema`` is the scheme (``http``/``https``, as
    Airflow's HTTP connections use it) or, for a connection given as a URI, the URL's path
    (``https://:TOKEN@ghe.example.com/api/v3``). No host: public GitHub.
    """
    token = getattr(conn, "password", None) or None
    host = (getattr(conn, "host", None) or "").strip()
    if not host:
        return PUBLIC_API_URL, token
    schema = (getattr(conn, "schema", None) or "").strip()
    if "://" in host:
        url = host
    else:
        kind = (getattr(conn, "conn_type", None) or "").lower()
        scheme = next((s for s in (schema, kind) if s in _DEFAULT_PORTS), "https")
        url = f"{scheme}://{host}"
    port = getattr(conn, "port", None)
    if port and urlsplit(url).port is None:
        parts = urlsplit(url)
        url = parts._replace(netloc=f"{parts.netloc}:{port}").geturl()
    if schema and schema not in _DEFAULT_PORTS and "://" not in host:
        url = f"{url.rstrip('/')}/{schema.strip('/')}"
    return url.rstrip("/"), token


def endpoint_from_env(environ: dict[str, str]) -> tuple[str, str | None]:
    """``endpoint`` of ``AIRFLOW_CONN_GITHUB_DEFAULT`` (JSON or URI); ``GITHUB_TOKEN`` when the
    connection has no password; public GitHub when it is not set."""
    raw = environ.get("AIRFLOW_CONN_GITHUB_DEFAULT", "").strip()
    fallback = environ.get("GITHUB_TOKEN") or None
    if not raw:
        return PUBLIC_API_URL, fallback
    from airflow.sdk import Connection

    if raw.startswith("{"):
        conn = Connection.from_json(raw, conn_id="github_default")
    else:
        conn = Connection.from_uri(raw, conn_id="github_default")
    url, token = endpoint(conn)
    return url, token or fallback


@dataclass(frozen=True)
class RemoteFile:
    """One image of a listing, every field validated by ``GitHubClient``."""

    label: str
    name: str
    path: str  # path in the repository: <folder>/<name>
    sha: str  # git blob SHA-1 from the listing
    size: int
    download_url: str


class GitHubClient:
    """GitHub's REST API for listings and file bytes, behind the checks described above."""

    def __init__(
        self,
        api_url: str = PUBLIC_API_URL,
        token: str | None = None,
        *,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_rate_limit_wait: float = 120.0,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        attempts: int = 4,
        raw_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.api_url = api_url.rstrip("/")
        try:
            self.api_origin = origin_of(self.api_url)
        except ValueError as exc:
            raise DownloadError(f"GitHub API URL: {exc}") from None
        self._token = token or None
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.max_rate_limit_wait = max_rate_limit_wait
        self.max_file_bytes = max_file_bytes
        self.attempts = attempts
        self.sleep = sleep
        public = self.api_origin == ("https", "api.github.com", 443)
        self.raw_url = raw_url or (
            RAW_URL if public else f"{_show_origin(self.api_origin)}/raw/{{repo}}/{{ref}}/{{path}}"
        )
        self.origins = {self.api_origin, origin_of(self.raw_url.split("{", 1)[0] + "x")}
        if public:
            self.origins.add(("https", "raw.githubusercontent.com", 443))
        self._local = threading.local()
        self._waited = 0.0  # rate-limit seconds waited so far, across threads
        self._wait_lock = threading.Lock()
        if self._token and self.api_origin[0] == "http" and not is_loopback(self.api_origin[1]):
            log.warning("the GitHub API URL is plain http: the token will not be sent")

    @classmethod
    def from_settings(cls, settings: Settings, api_url: str, token: str | None) -> GitHubClient:
        """The client of a task or command: this deployment's bounds and backoff."""
        return cls(
            api_url, token, backoff=settings.github_backoff, max_file_bytes=settings.max_file_bytes
        )

    def __repr__(self) -> str:  # never show the token
        return f"GitHubClient({self.api_url!r}, token={'set' if self._token else 'none'})"

    def redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _error(self, cls: type[DownloadError], message: str) -> DownloadError:
        return cls(self.redact(message))

    # --- HTTP -----------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        """This thread's session, made on its first request and reused for all the others.

        One per thread (``requests.Session`` is not documented as thread-safe): a download
        worker has one request in flight at a time, so its pool keeps one live connection per
        origin, reused from file to file (``workers`` connections in all, no reconnects).
        """
        session = getattr(self._local, "session", None)
        if session is None:
            retry = Retry(
                total=self.retries,
                connect=self.retries,
                read=self.retries,
                status=self.retries,
                redirect=0,  # redirects are followed by hand, origin-checked
                status_forcelist=(500, 502, 503, 504),
                allowed_methods=frozenset({"GET"}),
                backoff_factor=self.backoff,
                backoff_max=self.backoff_max,
                backoff_jitter=self.backoff,
                respect_retry_after_header=False,  # rate limits are this client's to wait out
                raise_on_status=False,  # the last 5xx comes back as a response we explain
            )
            session = requests.Session()
            session.trust_env = False  # no .netrc credentials, no proxy from the environment
            adapter = HTTPAdapter(
                max_retries=retry, pool_connections=len(self.origins), pool_maxsize=2
            )
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update(
                {"User-Agent": "imgclf-downloader", "Accept-Encoding": "identity"}
            )
            self._local.session = session
        return session

    def may_send_token(self, origin: Origin) -> bool:
        scheme, host, _ = origin
        return origin in self.origins and (scheme == "https" or is_loopback(host))

    def _check_origin(self, url: str, what: str) -> Origin:
        try:
            origin = origin_of(url)
        except ValueError as exc:
            raise self._error(UntrustedListingError, f"{what}: {exc}") from None
        if origin not in self.origins:
            allowed = ", ".join(sorted(_show_origin(o) for o in self.origins))
            raise self._error(
                UntrustedListingError,
                f"{what}: URL {shown(url)} is not at a trusted origin ({allowed})",
            )
        return origin

    def _send(self, url: str, *, api: bool, what: str, params: dict | None = None):
        """One GET, redirects followed by hand (3 at most, trusted origins only)."""
        session = self._session()
        headers = {"Accept": "application/vnd.github+json"} if api else {}
        if api:
            headers["X-GitHub-Api-Version"] = "2022-11-28"
        for _ in range(4):
            # prepared once (session headers merged, no auth: trust_env is off), checked, sent
            prepared = session.prepare_request(
                requests.Request("GET", url, params=params, headers=headers)
            )
            assert prepared.url is not None
            origin = self._check_origin(prepared.url, what)  # the URL that will be requested
            if self._token and self.may_send_token(origin):
                auth = ("Authorization", f"Bearer {self._token}")
                check_header_validity(auth)  # as requests checks the headers it prepares
                prepared.headers[auth[0]] = auth[1]
            try:
                resp = session.send(
                    prepared, timeout=self.timeout, stream=True, allow_redirects=False
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise self._error(
                    RemoteUnreachableError,
                    f"cannot reach {_show_origin(origin)} for {what}: "
                    f"{describe_connection_error(exc)}; {REMEDY}",
                ) from None
            if resp.status_code in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                resp.close()
                url, params = requests.compat.urljoin(prepared.url, resp.headers["Location"]), None
                continue
            return resp
        raise self._error(DownloadError, f"{what}: too many redirects")

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
                return max(0.0, float(reset) - time.time()) + 1.0  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return self.backoff_max
        return None if resp.status_code == 403 else self.backoff_max

    def get(self, url: str, *, api: bool, what: str, params: dict | None = None):
        """GET with rate-limit waits within the client's budget; the body is not read yet."""
        for waits in range(11):
            resp = self._send(url, api=api, what=what, params=params)
            wait = self._rate_limit_wait(resp)
            if wait is None:
                return resp
            resp.close()
            with self._wait_lock:
                allowed = waits < 10 and wait <= self.max_rate_limit_wait - self._waited
                if allowed:
                    self._waited += wait
            if not allowed:
                reset_at = datetime.fromtimestamp(time.time() + wait, UTC).strftime("%H:%M:%S")
                hint = (
                    "the token's limit is used up"
                    if self._token
                    else "without a token GitHub allows 60 requests an hour; a token "
                    "(github_default connection password or GITHUB_TOKEN) raises it to 5,000"
                )
                raise self._error(
                    RateLimitError,
                    f"GitHub rate limit hit while fetching {what}: it resets at {reset_at} UTC "
                    f"(in {wait:.0f} s; this downloader waits {self.max_rate_limit_wait:.0f} s "
                    f"in all, {self._waited:.0f} s used); {hint}",
                )
            log.warning("rate limited on %s: waiting %.1f s", what, wait)
            self.sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _read(self, resp: requests.Response, cap: int, what: str) -> bytes:
        """The body, streamed, or ``UntrustedListingError`` as soon as it exceeds ``cap``."""
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            resp.close()
            raise self._error(
                UntrustedListingError, f"{what}: unexpected Content-Encoding {shown(encoding)}"
            )
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            resp.close()
            raise self._error(
                UntrustedListingError,
                f"{what}: Content-Length {declared} is over the limit of {cap} bytes",
            )
        body = bytearray()
        try:
            for chunk in resp.iter_content(64 * 1024):
                body += chunk
                if len(body) > cap:
                    raise self._error(
                        UntrustedListingError, f"{what}: body is over the limit of {cap} bytes"
                    )
        finally:
            resp.close()
        return bytes(body)

    # --- listing --------------------------------------------------------------------------
    def _api_json(self, url: str, what: str, params: dict | None = None) -> Any:
        resp = self.get(url, api=True, what=what, params=params)
        if resp.status_code == 404:
            resp.close()
            raise self._error(NotFoundError, f"GitHub answered 404 Not Found for {what}")
        if resp.status_code != 200:
            resp.close()
            after = resp.headers.get("Retry-After")
            error = self._error(
                DownloadError,
                f"GitHub answered {resp.status_code} for {what}"
                + (f" (Retry-After {shown(after, 20)})" if after else ""),
            )
            error.retryable = resp.status_code >= 500
            raise error
        try:
            body = self._read(resp, MAX_LISTING_BYTES, what)
        except requests.RequestException as exc:
            error = self._error(
                DownloadError, f"{what}: the answer broke off ({type(exc).__name__})"
            )
            error.retryable = True
            raise error from None
        try:
            return json.loads(body)
        except ValueError:
            raise self._error(
                UntrustedListingError, f"GitHub's answer for {what} is not JSON"
            ) from None

    def list_folder(self, repo: str, ref: str, folder: str, label: str) -> list[RemoteFile]:
        """The validated image files directly inside ``folder`` at ``ref`` (others skipped)."""
        folder = folder.strip("/")
        what = f"folder {folder!r} of {repo!r} at ref {ref!r}"
        url = f"{self.api_url}/repos/{repo}/contents/{quote(folder)}"
        entries = self._api_json(url, what, params={"ref": ref})
        if isinstance(entries, dict):
            raise self._error(
                DownloadError, f"{what} is a {shown(entries.get('type', 'file'))}, not a folder"
            )
        if not isinstance(entries, list):
            raise self._error(UntrustedListingError, f"{what}: the listing is not a JSON list")
        if len(entries) >= CONTENTS_API_LIMIT:
            log.info("%s has >= %d entries: listing it via the Git Trees API", what, len(entries))
            entries = self._list_tree(repo, ref, folder, what)
        files: list[RemoteFile] = []
        seen: dict[str, str] = {}
        for index, entry in enumerate(entries):
            try:
                remote = self._entry(entry, repo, ref, folder, label)
            except ValueError as exc:
                raise self._error(
                    UntrustedListingError, f"{what}: entry #{index}: {exc}; nothing was changed"
                ) from None
            if remote is None:
                continue
            other = seen.setdefault(remote.name.casefold(), remote.name)
            if other != remote.name:
                raise self._error(
                    UntrustedListingError,
                    f"{what}: entries {shown(other)} and {shown(remote.name)} differ only by "
                    "case; nothing was changed",
                )
            files.append(remote)
        return sorted(files, key=lambda f: f.name)

    def _entry(self, entry: Any, repo: str, ref: str, folder: str, label: str) -> RemoteFile | None:
        """One listing entry as a ``RemoteFile``, ``None`` for what is not an image file, or
        ``ValueError`` naming the entry and what is wrong with it."""
        if not isinstance(entry, dict):
            raise ValueError(f"{shown(entry)} is not an object")
        name = check_name(entry.get("name"))
        kind = entry.get("type")
        if not isinstance(kind, str):
            raise ValueError(f"{shown(name)}: type {shown(kind)} is not a string")
        if kind != "file" or not is_image_name(name):
            log.info("skipping %s %r in %s (not an image file)", kind, name, folder)
            return None
        path = entry.get("path")
        if path != f"{folder}/{name}":
            raise ValueError(f"{shown(name)}: path {shown(path)} is not {folder}/{name}")
        sha = entry.get("sha")
        if not isinstance(sha, str) or not _SHA1.match(sha):
            raise ValueError(f"{shown(name)}: sha {shown(sha)} is not a git blob SHA-1")
        size = entry.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"{shown(name)}: size {shown(size)} is not a byte count")
        if size > self.max_file_bytes:
            raise ValueError(
                f"{shown(name)}: size {size} is over the limit of {self.max_file_bytes} bytes "
                "(IMGCLF_MAX_FILE_BYTES)"
            )
        url = entry.get("download_url") or self.raw_url.format(
            repo=repo, ref=quote(ref, safe=""), path=quote(path)
        )
        try:
            self._check_origin(url, shown(name))
        except UntrustedListingError as exc:
            raise ValueError(str(exc)) from None
        if not unquote(urlsplit(url).path).endswith("/" + path):
            raise ValueError(f"{shown(name)}: download_url {shown(url)} is not for {path}")
        return RemoteFile(label, name, path, sha, size, url)

    def _list_tree(self, repo: str, ref: str, folder: str, what: str) -> list[dict]:
        parent, _, leaf = folder.rpartition("/")
        parent_url = f"{self.api_url}/repos/{repo}/contents/{quote(parent)}"
        siblings = self._api_json(parent_url, what, params={"ref": ref})
        tree_sha = next(
            (
                e.get("sha")
                for e in (siblings if isinstance(siblings, list) else [])
                if isinstance(e, dict) and e.get("name") == leaf and e.get("type") == "dir"
            ),
            None,
        )
        if not isinstance(tree_sha, str) or not _SHA1.match(tree_sha):
            raise self._error(NotFoundError, f"{what}: not found in its parent folder")
        tree = self._api_json(f"{self.api_url}/repos/{repo}/git/trees/{tree_sha}", what)
        if not isinstance(tree, dict) or not isinstance(tree.get("tree"), list):
            raise self._error(UntrustedListingError, f"{what}: the Git Trees answer has no tree")
        if tree.get("truncated"):
            raise self._error(DownloadError, f"{what}: the Git Trees API truncated the listing too")
        items = []
        for item in tree["tree"]:
            if not isinstance(item, dict):
                raise self._error(UntrustedListingError, f"{what}: tree item {shown(item)}")
            name = item.get("path")
            items.append(
                {
                    "name": name,
                    "path": f"{folder}/{name}" if isinstance(name, str) else None,
                    "sha": item.get("sha"),
                    "size": item.get("size"),
                    "type": "file" if item.get("type") == "blob" else "dir",
                    "download_url": None,
                }
            )
        return items

    # --- fetching -------------------------------------------------------------------------
    def fetch(self, remote: RemoteFile) -> bytes:
        """The file's bytes, exactly ``remote.size`` long with ``remote.sha`` as blob SHA.

        Body-level failures (reset, short body, SHA mismatch) are tried ``attempts`` times;
        a body longer than the listing says is cut off at ``size + 1`` bytes.
        """
        what = f"{remote.label}/{remote.name}"
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                resp = self.get(remote.download_url, api=False, what=what)
                if resp.status_code == 404:
                    resp.close()
                    raise self._error(NotFoundError, f"{what}: 404 Not Found at its download_url")
                if resp.status_code != 200:
                    resp.close()
                    problem = f"HTTP {resp.status_code}"
                else:
                    try:
                        data = self._read(resp, remote.size, what)
                    except UntrustedListingError:
                        problem = f"the body is longer than the listing's size {remote.size}"
                    else:
                        sha = git_blob_sha(data)
                        if len(data) != remote.size:
                            problem = (
                                f"the body has {len(data)} bytes, the listing says {remote.size}"
                            )
                        elif sha != remote.sha:
                            problem = f"blob SHA {sha} does not match the listing's {remote.sha}"
                        else:
                            return data
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                # resets mid-body and short bodies (urllib3 enforces Content-Length)
                problem = f"connection failed while reading the body ({type(exc).__name__})"
            except RemoteUnreachableError as exc:
                problem = str(exc)
            if attempt < self.attempts:
                delay = min(self.backoff_max, self.backoff * 2 ** (attempt - 1))
                log.warning("%s: %s; attempt %d/%d", what, problem, attempt, self.attempts)
                self.sleep(delay + random.uniform(0, self.backoff))
        raise self._error(
            FetchError, f"{what} failed verification after {self.attempts} attempts: {problem}"
        )
