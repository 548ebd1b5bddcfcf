"""The Airflow side of the GitHub client: the ``github_default`` connection as a URL and token.

One reading of the connection, for the DAGs (``BaseHook.get_connection``) and the command line
(``AIRFLOW_CONN_GITHUB_DEFAULT``, parsed by Airflow's own ``Connection``). The client itself
(``imgclf.github``) knows nothing of Airflow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from imgclf.github.origins import DEFAULT_PORTS, PUBLIC_API_URL

CONN_ID = "github_default"


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
        scheme = next((s for s in (schema, kind) if s in DEFAULT_PORTS), "https")
        url = f"{scheme}://{host}"
    port = getattr(conn, "port", None)
    if port and urlsplit(url).port is None:
        parts = urlsplit(url)
        url = parts._replace(netloc=f"{parts.netloc}:{port}").geturl()
    if schema and schema not in DEFAULT_PORTS and "://" not in host:
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

    from imgclf.github.errors import DownloadError

    try:
        if raw.startswith("{"):
            conn = Connection.from_json(raw, conn_id=CONN_ID)
        else:
            conn = Connection.from_uri(raw, conn_id=CONN_ID)
        url, token = endpoint(conn)
    except Exception as exc:  # Airflow's parsers raise several types: one line for all
        raise DownloadError(
            f"AIRFLOW_CONN_GITHUB_DEFAULT is not a connection ({type(exc).__name__}); "
            "give it as JSON or as a URI, e.g. https://:TOKEN@ghe.example.com/api/v3"
        ) from None
    return url, token or fallback


def github_endpoint(get_connection: Callable[[str], Any]) -> tuple[str, str | None]:
    """API URL and token of the ``github_default`` connection (``get_connection(conn_id)``);
    public GitHub without a token when there is no such connection."""
    try:
        conn = get_connection(CONN_ID)
    except Exception:  # Airflow raises its own not-found error types
        return PUBLIC_API_URL, None
    return endpoint(conn)
