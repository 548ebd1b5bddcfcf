"""One error family for the download: each error is one line saying what failed and why.

Every failure below ``imgclf download`` and the DAG's download task is a ``DownloadError``:
``retryable`` says whether trying the same thing again soon can help (the DAG retries only
those), ``result`` holds the counts of what did happen when the failure came after listing,
``consequence`` marks an error that only follows another one (a file not fetched because the
download had already stopped), so that a message shows the cause first.

Anything that came from outside appears in a message through ``shown``: ``repr``-escaped (C0
and C1 control characters, right-to-left overrides and other invisible characters come out as
``\\x85``, ``\\u202e``), and cut to a bounded length.
"""

from __future__ import annotations

from typing import Any

REMEDY = (
    "check the network or the github_default connection (`make run-offline` works without GitHub)"
)


def shown(value: Any, limit: int = 80) -> str:
    """A value from outside as it may appear in a message: ``repr`` (escaped), cut."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


class DownloadError(RuntimeError):
    """The download did not produce a complete, verified dataset; the message says why."""

    result: Any = None
    retryable = False
    consequence = False


class NotFoundError(DownloadError):
    """The remote says the repository, ref, folder or file does not exist."""


class RateLimitError(DownloadError):
    """GitHub's rate limit, for longer than this download may wait."""


class RemoteUnreachableError(DownloadError):
    """No connection could be made (DNS, refused, connect timeout, TLS), after urllib3's
    bounded retries. Only this error says "cannot reach"."""


class RemoteTooSlowError(DownloadError):
    """A connection was made, and then an answer stalled, trickled under the floor rate, or
    the whole download passed its deadline. Not retried: the next run tries again."""


class DownloadStoppedError(RemoteTooSlowError):
    """Not fetched, or cut, because another answer of the same download was too slow."""

    consequence = True


class AnswerBrokeOffError(DownloadError):
    """The connection broke off (reset, closed) while the remote answered: worth a retry."""

    retryable = True


class UntrustedListingError(DownloadError):
    """A listing, or an entry of it, fails the trust boundary (name, path, SHA, size, URL,
    duplicates, shape)."""


class UntrustedAnswerError(DownloadError):
    """An answer fails the trust boundary before its content is looked at: a compressed or
    oversized body, malformed headers, a redirect to an unusable or untrusted URL."""


class FetchError(DownloadError):
    """A file could not be fetched intact after every attempt (worth a later retry)."""

    retryable = True
