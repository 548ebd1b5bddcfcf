"""``GitHubClient``: listings and verified file bytes from GitHub, behind the trust boundary.

It puts the other modules together: ``origins`` (where requests may go), ``transport`` (HTTP
under deadlines), ``listing`` (what an entry must be). A file's body must be exactly its
listed size with its listed blob SHA; body-level failures (reset mid-body, short body, SHA
mismatch) are tried ``attempts`` times, within the download's deadline; a body that is too slow,
compressed or refused otherwise is not tried again, and a host that cannot be reached, or is
too slow, stops the whole download. Whatever goes wrong below, a caller gets a
``DownloadError`` with a one-line message (an unexpected exception too, its traceback logged at
DEBUG level only).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from imgclf.github.deadlines import Limits, Watch
from imgclf.github.errors import (
    AnswerBrokeOffError,
    DownloadError,
    FetchError,
    NotFoundError,
    RemoteUnreachableError,
    UntrustedAnswerError,
    shown,
)
from imgclf.github.listing import (
    DEFAULT_MAX_FILE_BYTES,
    MAX_LISTING_BYTES,
    Folder,
    RemoteFile,
    git_blob_sha,
    list_folder,
    parse_json,
)
from imgclf.github.origins import PUBLIC_API_URL, Origins, is_loopback
from imgclf.github.transport import BodyOverCapError, Transport

if TYPE_CHECKING:
    from imgclf.settings import Settings

log = logging.getLogger(__name__)


class GitHubClient:
    """GitHub's REST API for listings and file bytes, behind the checks of this package."""

    def __init__(
        self,
        api_url: str = PUBLIC_API_URL,
        token: str | None = None,
        *,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        limits: Limits | None = None,
        max_rate_limit_wait: float = 120.0,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        attempts: int = 4,
        raw_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.api_url = api_url.rstrip("/")
        try:
            self.origins = Origins(self.api_url, raw_url)
        except ValueError as exc:
            raise DownloadError(f"GitHub API URL: {exc}") from None
        self._token = token or None
        self.max_file_bytes = max_file_bytes
        self.attempts = attempts
        self.backoff, self.backoff_max = backoff, backoff_max
        self.sleep = sleep
        self.watch = Watch(limits or Limits())
        self.transport = Transport(
            self.origins, self._token, self.watch, retries=retries, backoff=backoff,
            backoff_max=backoff_max, max_rate_limit_wait=max_rate_limit_wait, sleep=sleep,
        )  # fmt: skip
        scheme, host, _ = self.origins.api
        if self._token and scheme == "http" and not is_loopback(host):
            log.warning("the GitHub API URL is plain http: the token will not be sent")

    @classmethod
    def from_settings(cls, settings: Settings, api_url: str, token: str | None) -> GitHubClient:
        """The client of a task or command: this deployment's bounds, backoff and deadlines."""
        limits = Limits(
            grace=settings.github_grace,
            min_rate=settings.github_min_rate,
            deadline=settings.github_deadline,
        )
        return cls(
            api_url, token, backoff=settings.github_backoff, limits=limits,
            max_file_bytes=settings.max_file_bytes,
        )  # fmt: skip

    def __repr__(self) -> str:  # never show the token
        return f"GitHubClient({self.api_url!r}, token={'set' if self._token else 'none'})"

    @property
    def raw_url(self) -> str:
        return self.origins.raw_url

    def may_send_token(self, origin: tuple[str, str, int]) -> bool:
        return self.origins.may_send_token(origin)

    def redact(self, text: str) -> str:
        return self.transport.redact(text)

    @contextlib.contextmanager
    def download(self) -> Iterator[None]:
        """One download (listings and files): its deadline runs from here to the end of the
        outermost ``with``; the first answer cut for being too slow stops the rest."""
        with self.watch.download():
            yield

    @contextlib.contextmanager
    def _one_line(self, what: str) -> Iterator[None]:
        """Everything below becomes a ``DownloadError`` with a redacted one-line message."""
        try:
            with self.download():
                yield
        except DownloadError as exc:
            if self._token and self._token in str(exc):
                exc.args = (self.redact(str(exc)),)
            raise
        except Exception as exc:  # an answer nothing above foresaw: still one line
            log.debug("unexpected error for %s", what, exc_info=True)
            raise UntrustedAnswerError(
                self.redact(
                    f"{what}: the remote's answer could not be handled "
                    f"({type(exc).__name__}: {shown(str(exc), 120)})"
                )
            ) from None

    # --- listing ------------------------------------------------------------------------------
    def _api_json(self, url: str, what: str, params: dict | None = None) -> Any:
        answer = self.transport.get(url, api=True, what=what, cap=MAX_LISTING_BYTES, params=params)
        if answer.status == 404:
            raise NotFoundError(f"GitHub answered 404 Not Found for {what}")
        if answer.status != 200 or answer.body is None:
            after = answer.headers.get("Retry-After")
            error = DownloadError(
                f"{answer.host} answered {answer.status} for {what}"
                + (f" (Retry-After {shown(after, 20)})" if after else "")
            )
            error.retryable = answer.status >= 500
            raise error
        return parse_json(answer.body, what)

    def list_folder(self, repo: str, ref: str, folder: str, label: str) -> list[RemoteFile]:
        """The validated image files directly inside ``folder`` at ``ref`` (others skipped)."""
        where = Folder(
            self.api_url, repo, ref, folder.strip("/"), label, self.origins, self.max_file_bytes
        )
        with self._one_line(where.what):
            return list_folder(self._api_json, where)

    # --- fetching -----------------------------------------------------------------------------
    def fetch(self, remote: RemoteFile) -> bytes:
        """The file's bytes, exactly ``remote.size`` long with ``remote.sha`` as blob SHA.

        Body-level failures (reset, short body, SHA mismatch, longer than listed) are tried
        ``attempts`` times; a body longer than the listing says is cut off at ``size + 1``.
        """
        what = remote.what
        with self._one_line(what):
            problem = ""
            for attempt in range(1, self.attempts + 1):
                data, problem = self._try_fetch(remote, what)
                if data is not None:
                    return data
                if attempt < self.attempts:
                    delay = min(self.backoff_max, self.backoff * 2 ** (attempt - 1))
                    delay += random.uniform(0, self.backoff)
                    log.warning("%s: %s; attempt %d/%d", what, problem, attempt, self.attempts)
                    if delay >= self.watch.remaining():
                        break  # no time for another attempt: fail with this problem
                    self.sleep(delay)
            raise FetchError(f"{what} failed verification after {attempt} attempts: {problem}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _try_fetch(self, remote: RemoteFile, what: str) -> tuple[bytes | None, str]:
        """One attempt: the verified bytes, or ``None`` and the problem to retry.
        Errors that another attempt cannot help (unreachable, too slow, untrusted, 404) are
        raised."""
        try:
            answer = self.transport.get(remote.download_url, api=False, what=what, cap=remote.size)
        except BodyOverCapError:
            return None, f"the body is longer than the listing's size {remote.size}"
        except AnswerBrokeOffError as exc:
            return None, str(exc).removeprefix(f"{what}: ")
        except RemoteUnreachableError as exc:
            # urllib3 tried the connection 4 times already, and the other files go to the same
            # host: the download stops here rather than 4 times 4 connect timeouts per file
            raise self.watch.stop(exc) from None
        if answer.status == 404:
            raise NotFoundError(f"{what}: 404 Not Found at its download_url")
        if answer.status != 200 or answer.body is None:
            return None, f"HTTP {answer.status} from {answer.host}"
        data = answer.body
        if len(data) != remote.size:
            return None, f"the body has {len(data)} bytes, the listing says {remote.size}"
        sha = git_blob_sha(data)
        if sha != remote.sha:
            return None, f"blob SHA {sha} does not match the listing's {remote.sha}"
        return data, ""
