"""When a slow remote is cut off: a floor rate for every answer, one deadline per download.

Socket timeouts bound each read, not an answer: a server that sends one byte a second never
trips them. So every request is watched from the moment it has been sent on a connection:

- **floor rate after a grace**: ``t`` seconds after the request, at least
  ``min_rate * (t - grace)`` bytes of its body must have arrived (headers count as none). An
  answer that stalls is cut ``grace`` seconds in; one that trickles at ``r`` bytes/s is cut at
  ``grace / (1 - r / min_rate)`` (``Limits.cut_after``); an honest one, faster than the floor
  or done within the grace, never is.
- **one deadline per download**: listings and files together; past it every answer in flight
  is cut and nothing new is sent.

The first answer cut for being too slow stops the whole download (the download fails anyway):
the answers still in flight are cut at once and nothing more is requested. A watchdog thread,
alive only while answers are in flight, enforces both by shutting down the socket of the
answer that broke them; the thread that was reading gets ``RemoteTooSlowError`` naming the
host, the file and what was slow. ``DeadlineRetry`` and ``WatchedAdapter`` are where urllib3
and requests meet these rules: no retry for a slow answer, a socket for the watchdog.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from imgclf.github.errors import DownloadError, DownloadStoppedError, RemoteTooSlowError

_current = threading.local()  # the Transfer this thread is sending or reading, if any


@dataclass(frozen=True)
class Limits:
    """How long the remote may take (``Settings``: ``IMGCLF_GITHUB_*``)."""

    connect: float = 5.0  # seconds to open a connection (TCP, TLS)
    grace: float = 30.0  # seconds an answer may take before the floor rate applies
    min_rate: float = 8192.0  # bytes per second every body must average after the grace
    deadline: float = 600.0  # seconds one whole download (listings and files) may take

    def cut_after(self, rate: float) -> float:
        """Seconds after its request at which an answer arriving at ``rate`` bytes/s is cut
        (``inf`` at or above the floor): the watchdog's own rule, solved for time."""
        if rate >= self.min_rate:
            return math.inf
        return self.grace / (1.0 - rate / self.min_rate)


class Transfer:
    """One request on one connection: its socket once sent, when, and the bytes received."""

    def __init__(self, what: str, host: str):
        self.what, self.host = what, host
        self.sock: socket.socket | None = None
        self.started = 0.0
        self.received = 0
        self.answered = False  # the status line and headers have arrived
        self.error: DownloadError | None = None  # why it was cut
        self.done = False

    def attach(self, sock: socket.socket | None) -> None:
        """The request has been sent on ``sock``: the clock starts (again, on a retry)."""
        self.sock, self.started, self.received, self.answered = sock, time.monotonic(), 0, False

    def detach(self) -> None:
        """Between urllib3's retries: no socket of ours to watch while it backs off."""
        self.sock = None


def current() -> Transfer | None:
    return getattr(_current, "transfer", None)


class Watch:
    """One client's clock: the download's deadline, its stop, and the watchdog thread."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._cond = threading.Condition()
        self._transfers: set[Transfer] = set()
        self._thread: threading.Thread | None = None
        self._depth = 0
        self._deadline_at = math.inf
        self.stopped: DownloadError | None = None  # the first cause; set until the download ends

    # --- the download -------------------------------------------------------------------------
    @contextlib.contextmanager
    def download(self) -> Iterator[None]:
        """One download: the outermost ``with`` starts the deadline and clears the stop."""
        with self._cond:
            if self._depth == 0:
                self._deadline_at = time.monotonic() + self.limits.deadline
                self.stopped = None
            self._depth += 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._deadline_at, self.stopped = math.inf, None

    def remaining(self) -> float:
        return self._deadline_at - time.monotonic()

    def check(self, what: str, host: str) -> None:
        """Before sending anything: ``RemoteTooSlowError`` if the download is over."""
        if self.stopped is not None:
            raise DownloadStoppedError(f"{what}: not requested, the download stopped first")
        if self.remaining() <= 0:
            raise self.stop(self._deadline_error(what, host, None))

    def sleep(self, seconds: float, what: str, host: str, sleep=time.sleep) -> None:
        """Wait ``seconds``, or raise at once if the download would pass its deadline."""
        if seconds >= self.remaining():
            raise self.stop(self._deadline_error(what, host, None))
        sleep(seconds)

    def stop(self, error: DownloadError) -> DownloadError:
        """The download fails with ``error`` (the first cause wins): cut what is in flight."""
        with self._cond:
            if self.stopped is None:
                self.stopped = error
            for t in self._transfers:
                if t.error is None and not t.done:
                    self._cut(t, DownloadStoppedError(f"{t.what}: cut, the download stopped"))
            self._cond.notify_all()
            return error

    def _deadline_error(self, what: str, host: str, t: Transfer | None) -> DownloadError:
        got = f" ({t.received} bytes of it so far)" if t is not None else ""
        return RemoteTooSlowError(
            f"{what}: the download passed its deadline of {self.limits.deadline:g} s "
            f"(IMGCLF_GITHUB_DEADLINE) while {host} was to send it{got}"
        )

    # --- one request ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def transfer(self, what: str, host: str) -> Iterator[Transfer]:
        """Watch one request of this thread (the connection hook attaches its socket)."""
        t = Transfer(what, host)
        _current.transfer = t
        with self._cond:
            self._transfers.add(t)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="imgclf-watchdog")
                self._thread.daemon = True
                self._thread.start()
            self._cond.notify_all()
        try:
            yield t
        finally:
            _current.transfer = None
            with self._cond:
                t.done = True
                self._transfers.discard(t)

    def finish(self, t: Transfer) -> DownloadError | None:
        """The body is read: done, unless the watchdog cut it first (then its error)."""
        with self._cond:
            t.done = True
            return t.error

    def too_slow(self, t: Transfer) -> DownloadError:
        """The error for ``t``: the watchdog's if it cut it, else a stall (a socket timeout)."""
        with self._cond:
            if t.error is None:
                self._cut(t, self._reason(t, time.monotonic()))
            assert t.error is not None
        return self.stop(t.error)

    def _reason(self, t: Transfer, now: float) -> DownloadError:
        if now >= self._deadline_at:
            return self._deadline_error(t.what, t.host, t)
        took = now - t.started
        if not t.answered:
            return RemoteTooSlowError(
                f"{t.what}: {t.host} accepted the connection but sent no complete answer in "
                f"{took:.0f} s (IMGCLF_GITHUB_GRACE={self.limits.grace:g})"
            )
        return RemoteTooSlowError(
            f"{t.what}: {t.host} sent it too slowly: {t.received} bytes in {took:.0f} s, under "
            f"the floor of {self.limits.min_rate:g} bytes/s after a {self.limits.grace:g} s "
            "grace (IMGCLF_GITHUB_MIN_RATE, IMGCLF_GITHUB_GRACE)"
        )

    def _due(self, t: Transfer) -> float:
        """When ``t`` breaks a rule, as of the bytes it has now."""
        if t.sock is None:
            return self._deadline_at
        floor = t.started + self.limits.grace + t.received / self.limits.min_rate
        return min(floor, self._deadline_at)

    @staticmethod
    def _cut(t: Transfer, error: DownloadError) -> None:
        t.error = error
        sock = t.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                # the base class's shutdown: a blocked read (TLS too) returns at once
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _run(self) -> None:
        """The watchdog: sleeps until the next answer is due, cuts what broke a rule; ends
        when nothing is in flight (every transfer ends: its own rules bound it)."""
        with self._cond:
            while self._transfers:
                now = time.monotonic()
                wake = now + 1.0
                for t in list(self._transfers):
                    if t.error is not None or t.done:
                        continue
                    due = self._due(t)
                    if now >= due and (t.sock is not None or due == self._deadline_at):
                        error = self._reason(t, now)
                        self._cut(t, error)
                        if self.stopped is None:
                            self.stopped = error
                    else:
                        wake = min(wake, due)
                if self.stopped is not None:  # the download is over: cut the rest too
                    for t in self._transfers:
                        if t.error is None and not t.done:
                            self._cut(t, DownloadStoppedError(f"{t.what}: cut, download stopped"))
                self._cond.wait(max(0.01, min(wake - now, 1.0)))
            self._thread = None


# --- where urllib3 and requests meet the rules ----------------------------------------------
class DeadlineRetry(Retry):
    """urllib3's retries, minus what a retry cannot help: an answer cut or timed out for being
    too slow (another try costs another full wait), and a backoff past the download's deadline."""

    def __init__(self, *args: Any, watch: Watch | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.watch = watch

    def new(self, **kw: Any) -> DeadlineRetry:
        kw.setdefault("watch", self.watch)
        return super().new(**kw)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None,
                  _stacktrace=None):  # fmt: skip
        t = current()
        too_slow = error is not None and (
            isinstance(error, ReadTimeoutError) or (t is not None and t.error is not None)
        )
        if self.watch is not None and t is not None and too_slow:
            raise self.watch.too_slow(t)
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        if self.watch is not None and t is not None:
            t.detach()
            self.watch.check(t.what, t.host)
            backoff = new.get_backoff_time() + (self.backoff_jitter or 0.0)
            if backoff >= self.watch.remaining():
                self.watch.sleep(backoff, t.what, t.host)  # raises: past the deadline
        return new


def _attach(conn: HTTPConnection) -> Transfer | None:
    t = current()
    if t is not None:
        t.attach(conn.sock)
        if t.error is not None:  # cut (the download stopped) before it was even sent
            raise t.error
    return t


def _watched_response(conn: HTTPConnection, getresponse):
    """``getresponse()`` with the socket under the current transfer's watch until it answers."""
    t = _attach(conn)
    response = getresponse()
    if t is not None:
        t.answered = True
    return response


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self):
        return _watched_response(self, super().getresponse)


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self):
        return _watched_response(self, super().getresponse)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """requests' adapter on pools whose connections hand their socket to the watchdog."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}


class _NoTraceback(logging.Filter):
    """urllib3 logs headers it cannot parse (a hostile answer, or one the watchdog cut in the
    middle of its headers) with a traceback: keep its one line, drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Failed to parse headers"):
            record.exc_info = None
            record.exc_text = None
        return True


logging.getLogger("urllib3.connection").addFilter(_NoTraceback())
