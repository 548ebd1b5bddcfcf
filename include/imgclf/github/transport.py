"""The HTTP under the client: sessions, timeouts, deadlines, redirects, rate limits, capped reads.

Retries, one layer each: urllib3 (``DeadlineRetry``) owns connection errors and 5xx (exponential
backoff with jitter, ``Retry-After`` ignored, so its sleeps are bounded by its own backoff and
by the download's deadline) and never retries an answer that was too slow; ``Transport.get``
owns rate limits (403/429 with ``Retry-After`` or ``X-RateLimit-Remaining: 0``), waited out
within one budget per client and within the deadline; the client owns body-level failures of a
file. Redirects are followed here, by hand, to trusted origins only (``Origins``); the token
goes only where ``Origins.may_send_token`` allows and is redacted from every message.

Bodies are streamed under a cap and asked for uncompressed; a compressed one is refused as
such. Every request is watched (``deadlines``): its connection hands its socket to the
watchdog when the request has been sent, and each read returns as soon as any bytes arrive,
so the watchdog sees an answer's progress byte by byte.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.utils import check_header_validity
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)

from imgclf.github.deadlines import DeadlineRetry, Limits, Transfer, Watch, WatchedAdapter
from imgclf.github.errors import (
    REMEDY,
    AnswerBrokeOffError,
    DownloadError,
    RateLimitError,
    RemoteUnreachableError,
    UntrustedAnswerError,
    shown,
)
from imgclf.github.origins import Origins, show_origin

log = logging.getLogger(__name__)


_REDIRECTS = (301, 302, 303, 307, 308)
_LONGEST_WAIT = 366 * 86400.0  # a Retry-After or reset further away than this is "never"


class BodyOverCapError(UntrustedAnswerError):
    """A body longer than its cap (a file's listed size, or the listing limit)."""


@dataclass(frozen=True)
class Answer:
    """A status, its headers, and the body when the status was 200 (else ``None``)."""

    status: int
    headers: Any  # requests' case-insensitive dict
    body: bytes | None
    host: str


def no_connection_made(exc: BaseException) -> str | None:
    """Why no connection could be made (DNS, refusal, connect timeout, TLS), or ``None`` when
    ``exc`` is not about making one (the connection was made and then failed)."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:  # bounded: every exception is looked at once
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
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
    return None


def parse_wait(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` (seconds or an HTTP date) asks for, within ``[0, a year]``;
    ``None`` when it is not a number or a date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - (now or time.time())
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), _LONGEST_WAIT)


class Transport:
    """One client's HTTP: a session per thread, every request watched, redirects by hand."""

    def __init__(
        self,
        origins: Origins,
        token: str | None,
        watch: Watch,
        *,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        max_rate_limit_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.origins, self._token, self.watch = origins, token or None, watch
        self.retries, self.backoff, self.backoff_max = retries, backoff, backoff_max
        self.max_rate_limit_wait = max_rate_limit_wait
        self.sleep = sleep
        self._local = threading.local()
        self._waited = 0.0  # rate-limit seconds waited so far, across threads
        self._wait_lock = threading.Lock()

    @property
    def limits(self) -> Limits:
        return self.watch.limits

    def redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _session(self) -> requests.Session:
        """This thread's session, made on its first request and reused for all the others.

        One per thread (``requests.Session`` is not documented as thread-safe): a download
        worker has one request in flight at a time, so its pool keeps one live connection per
        origin, reused from file to file (``workers`` connections in all, no reconnects).
        """
        session = getattr(self._local, "session", None)
        if session is None:
            retry = DeadlineRetry(
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
                watch=self.watch,
            )
            session = requests.Session()
            session.trust_env = False  # no .netrc credentials, no proxy from the environment
            adapter = WatchedAdapter(
                max_retries=retry, pool_connections=len(self.origins.allowed), pool_maxsize=2
            )
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update(
                {"User-Agent": "imgclf-downloader", "Accept-Encoding": "identity"}
            )
            self._local.session = session
        return session

    # --- one GET ------------------------------------------------------------------------------
    def get(self, url: str, *, api: bool, what: str, cap: int, params=None) -> Answer:
        """GET ``url`` with rate-limit waits; the body (at most ``cap`` bytes) when 200."""
        for waits in range(11):  # bounded: 10 waits at most, each within the budget
            with self.watch.transfer(what, "the remote") as t:
                resp = self._send(t, url, api=api, what=what, params=params)
                try:  # closed whatever happens: a body refused half-way is not reused
                    wait = self._rate_limit_wait(resp)
                    if wait is None:
                        body = self._read(t, resp, cap, what) if resp.status_code == 200 else None
                        return Answer(resp.status_code, resp.headers, body, t.host)
                finally:
                    resp.close()
            self._wait_out(wait, waits, what, t.host)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _send(self, t: Transfer, url: str, *, api: bool, what: str, params=None):
        """One GET, redirects followed by hand (3 at most, trusted origins only)."""
        session = self._session()
        headers = {"Accept": "application/vnd.github+json"} if api else {}
        if api:
            headers["X-GitHub-Api-Version"] = "2022-11-28"
        for hop in range(4):
            came = f"redirected by {t.host} to " if hop else ""
            try:  # the same parser and policy before and after preparing
                self.origins.check(url)
                prepared = session.prepare_request(
                    requests.Request("GET", url, params=params, headers=headers)
                )
                assert prepared.url is not None
                origin = self.origins.check(prepared.url)  # the URL that will be requested
            except (ValueError, requests.RequestException) as exc:
                raise UntrustedAnswerError(self.redact(f"{what}: {came}{exc}")) from None
            t.host = show_origin(origin)
            if self._token and self.origins.may_send_token(origin):
                auth = ("Authorization", f"Bearer {self._token}")
                check_header_validity(auth)  # as requests checks the headers it prepares
                prepared.headers[auth[0]] = auth[1]
            self.watch.check(what, t.host)
            timeout = (max(0.01, min(self.limits.connect, self.watch.remaining())),
                       self.limits.grace)  # fmt: skip
            try:
                # the adapter itself: Session.send would parse a redirect's Location already
                adapter = session.get_adapter(prepared.url)
                resp = adapter.send(prepared, stream=True, timeout=timeout)
            except DownloadError:
                raise
            except Exception as exc:
                raise self._failed(t, exc, what) from None
            if resp.status_code in _REDIRECTS and "Location" in resp.headers:
                location = resp.headers["Location"]
                resp.close()
                try:
                    url, params = requests.compat.urljoin(prepared.url, location), None
                except ValueError:
                    raise UntrustedAnswerError(
                        f"{what}: {t.host} redirected to an unusable URL {shown(location)}"
                    ) from None
                continue
            return resp
        raise UntrustedAnswerError(f"{what}: more than 3 redirects, the last by {t.host}")

    def _failed(self, t: Transfer, exc: Exception, what: str) -> DownloadError:
        """The one-line error for an exception of ``session.send``."""
        if t.error is not None or isinstance(exc, requests.ReadTimeout):
            return self.watch.too_slow(t)
        if isinstance(exc, requests.ConnectionError | requests.Timeout):
            why = no_connection_made(exc)
            if why is not None:
                return RemoteUnreachableError(f"cannot reach {t.host} for {what}: {why}; {REMEDY}")
            return AnswerBrokeOffError(
                f"{what}: {t.host} accepted the connection, then closed it without an answer "
                f"({type(exc).__name__})"
            )
        return UntrustedAnswerError(
            self.redact(
                f"{what}: {t.host} sent an answer that cannot be used "
                f"({type(exc).__name__}: {shown(str(exc), 120)})"
            )
        )

    def _read(self, t: Transfer, resp: requests.Response, cap: int, what: str) -> bytes:
        """The body, read as it arrives, or an error as soon as it breaks a bound."""
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise UntrustedAnswerError(
                f"{what}: {t.host} sent a compressed body (Content-Encoding {shown(encoding)}); "
                "only uncompressed bodies are accepted"
            )
        declared = resp.raw.length_remaining  # urllib3's reading of Content-Length
        if declared is not None and declared > cap:
            raise BodyOverCapError(f"{what}: Content-Length {declared} is over its limit of {cap}")
        body = bytearray()
        try:
            while True:  # bounded: by the cap, and the watchdog cuts a slow sender
                chunk = resp.raw.read1(64 * 1024, decode_content=False)
                if not chunk:
                    break
                body += chunk
                t.received = len(body)
                if len(body) > cap:
                    raise BodyOverCapError(f"{what}: the body is over its limit of {cap} bytes")
        except DownloadError:
            raise
        except Exception as exc:
            if t.error is not None or isinstance(exc, ReadTimeoutError):
                raise self.watch.too_slow(t) from None
            raise AnswerBrokeOffError(
                f"{what}: the connection to {t.host} broke off after {len(body)} bytes "
                f"({type(exc).__name__})"
            ) from None
        error = self.watch.finish(t)
        if error is not None:  # cut, and the cut read as the end of the body
            raise self.watch.stop(error)
        return bytes(body)

    # --- rate limits --------------------------------------------------------------------------
    def _rate_limit_wait(self, resp: requests.Response) -> float | None:
        """Seconds to wait when ``resp`` is a rate-limit answer, else ``None``."""
        if resp.status_code not in (403, 429):
            return None
        retry_after = resp.headers.get("Retry-After")
        if retry_after is not None:
            wait = parse_wait(retry_after)
            return self.backoff_max if wait is None else wait
        if resp.headers.get("X-RateLimit-Remaining") == "0":
            try:  # an epoch time: inf, nan or 1e300 must not reach arithmetic or datetime
                reset = float(resp.headers.get("X-RateLimit-Reset", ""))
            except ValueError:
                return self.backoff_max
            if math.isnan(reset):
                return self.backoff_max
            return min(max(0.0, reset - time.time()) + 1.0, _LONGEST_WAIT)
        return None if resp.status_code == 403 else self.backoff_max

    def _wait_out(self, wait: float, waits: int, what: str, host: str) -> None:
        with self._wait_lock:
            allowed = (
                waits < 10
                and wait <= self.max_rate_limit_wait - self._waited
                and wait < self.watch.remaining()
            )
            if allowed:
                self._waited += wait
        if not allowed:
            when = datetime.fromtimestamp(time.time() + wait, UTC)  # wait is within a year
            reset = (
                f"it resets at {when:%H:%M:%S} UTC (in {wait:.0f} s"
                if wait < 86400
                else f"it resets at {when:%Y-%m-%d %H:%M} UTC (in {wait / 86400:.0f} days"
                if wait < _LONGEST_WAIT
                else "it asks for a wait of a year or more (refused"
            )
            hint = (
                "the token's limit is used up"
                if self._token
                else "without a token GitHub allows 60 requests an hour; a token "
                "(github_default connection password or GITHUB_TOKEN) raises it to 5,000"
            )
            raise RateLimitError(
                self.redact(
                    f"GitHub rate limit hit while fetching {what} from {host}: {reset}; this "
                    f"downloader waits {self.max_rate_limit_wait:.0f} s in all, "
                    f"{self._waited:.0f} s used, and never past IMGCLF_GITHUB_DEADLINE); {hint}"
                )
            )
        log.warning("rate limited on %s: waiting %.1f s", what, wait)
        self.sleep(wait)
