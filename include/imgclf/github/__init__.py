"""The GitHub client, and the project's trust boundary towards the remote (one job per module).

- ``origins``: which URLs may be fetched and which may carry the token (pure);
- ``deadlines``: the floor rate every answer must keep, the download's deadline, the watchdog;
- ``transport``: sessions, timeouts, redirects, rate limits, capped reads;
- ``listing``: entries validated (names, paths, SHA, size, URL), contents and Trees API;
- ``client``: ``GitHubClient``, listings and verified file bytes;
- ``errors``: one error family, each a one-line cause.

The user's view of all this is ``docs/security.md``. The Airflow connection that says where
GitHub is lives on the Airflow side (``imgclf.connections``).
"""

from imgclf.github.client import GitHubClient
from imgclf.github.deadlines import Limits
from imgclf.github.errors import (
    AnswerBrokeOffError,
    DownloadError,
    DownloadStoppedError,
    FetchError,
    NotFoundError,
    RateLimitError,
    RemoteTooSlowError,
    RemoteUnreachableError,
    UntrustedAnswerError,
    UntrustedListingError,
    shown,
)
from imgclf.github.listing import (
    IMAGE_EXTENSIONS,
    RemoteFile,
    check_name,
    git_blob_sha,
    is_image_name,
)
from imgclf.github.origins import PUBLIC_API_URL, origin_of

__all__ = [
    "IMAGE_EXTENSIONS",
    "PUBLIC_API_URL",
    "AnswerBrokeOffError",
    "DownloadError",
    "DownloadStoppedError",
    "FetchError",
    "GitHubClient",
    "Limits",
    "NotFoundError",
    "RateLimitError",
    "RemoteFile",
    "RemoteTooSlowError",
    "RemoteUnreachableError",
    "UntrustedAnswerError",
    "UntrustedListingError",
    "check_name",
    "git_blob_sha",
    "is_image_name",
    "origin_of",
    "shown",
]
