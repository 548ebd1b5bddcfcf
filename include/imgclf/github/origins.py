"""Which URLs may be fetched and which may carry the token: the origin policy, pure.

A URL is compared by its origin, ``(scheme, host, port)`` as urllib3 parses it, which is what
requests connects to. URLs that two parsers could read differently (a backslash, user-info,
whitespace or control characters, a port or host the parsers disagree on) are refused outright,
so that the origin checked is the origin connected to. Requests go only to the API origin and
the raw-file origin (``https://raw.githubusercontent.com`` for public GitHub); the token goes
to exactly those, and never over plain http to a host that is not loopback.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from urllib3.util import parse_url

from imgclf.github.errors import shown

PUBLIC_API_URL = "https://api.github.com"
PUBLIC_RAW_ORIGIN = ("https", "raw.githubusercontent.com", 443)
RAW_URL = "https://raw.githubusercontent.com/{repo}/{ref}/{path}"
DEFAULT_PORTS = {"http": 80, "https": 443}
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f]")  # a control character or a space

Origin = tuple[str, str, int]


def origin_of(url: Any) -> Origin:
    """``(scheme, host, port)`` that requests will connect to for ``url``, or ``ValueError``.

    Refuses what two URL parsers might read differently: non-strings, whitespace or control
    characters, backslashes, user-info, schemes other than http(s), ports out of range, and any
    disagreement between urllib3 and ``urlsplit``.
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
    except ValueError as exc:  # urllib3's LocationParseError is a ValueError too
        raise ValueError(f"URL {shown(url)} does not parse ({shown(str(exc), 60)})") from None
    scheme = (mine.scheme or "").lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"URL {shown(url)} is not http or https")
    if mine.auth is not None or "@" in theirs.netloc:
        raise ValueError(f"URL {shown(url)} carries user-info")
    host = (mine.host or "").lower().strip("[]")
    if not host or host != (theirs.hostname or "").lower():
        raise ValueError(f"URL {shown(url)} has an ambiguous host")
    port = mine.port or DEFAULT_PORTS[scheme]
    if port != (their_port or DEFAULT_PORTS[scheme]) or not 0 < port < 65536:
        raise ValueError(f"URL {shown(url)} has an ambiguous or impossible port")
    return scheme, host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def show_origin(origin: Origin) -> str:
    """``scheme://host[:port]``, the port only when it is not the scheme's default."""
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + ("" if port == DEFAULT_PORTS[scheme] else f":{port}")


class Origins:
    """The origins one client may fetch from: the API's and the raw files'."""

    def __init__(self, api_url: str, raw_url: str | None = None):
        """``ValueError`` when either URL is not a plain http(s) URL (see ``origin_of``)."""
        self.api = origin_of(api_url)
        public = self.api == ("https", "api.github.com", 443)
        self.raw_url = raw_url or (
            RAW_URL if public else f"{show_origin(self.api)}/raw/{{repo}}/{{ref}}/{{path}}"
        )
        self.allowed = {self.api, origin_of(self.raw_url.split("{", 1)[0] + "x")}
        if public:
            self.allowed.add(PUBLIC_RAW_ORIGIN)

    def check(self, url: Any) -> Origin:
        """The origin of ``url`` if it is one of ours, else ``ValueError`` saying why."""
        origin = origin_of(url)
        if origin not in self.allowed:
            allowed = ", ".join(sorted(show_origin(o) for o in self.allowed))
            raise ValueError(f"URL {shown(url)} is not at a trusted origin ({allowed})")
        return origin

    def may_send_token(self, origin: Origin) -> bool:
        scheme, host, _ = origin
        return origin in self.allowed and (scheme == "https" or is_loopback(host))
