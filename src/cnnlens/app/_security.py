"""Safe by default: the app answers only requests addressed to it (a Host allow-list, so that a web page elsewhere
cannot reach it through DNS rebinding), asks for an access token when served beyond this machine (as Jupyter does:
printed once in the URL, then kept in an HttpOnly, SameSite=Strict cookie), takes computations only as JSON from
its own origin (scheme, host and port), bounds request bodies, and tells the browser to run no script, style or
frame from anywhere else."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import urllib.parse
from collections.abc import Iterable
from typing import Any

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
MAX_BODY = 64 * 1024
HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
     b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]  # fmt: skip
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?")
_JSON = re.compile(r"application/json(?:\s*;\s*charset\s*=\s*\"?utf-8\"?)?", re.IGNORECASE)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address to bind) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh access token (from `secrets`: 32 random bytes, URL-safe text)."""
    return secrets.token_urlsafe(32)


def host_name(host: str) -> str:
    """The form of a bound host name or address that Host headers carry (lower case, IPv6 without brackets)."""
    host = host.strip().lower()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def parse_host(value: str) -> tuple[str, int | None] | None:
    """A Host header (or an origin's authority) -> (host, port or None), or None when it is not exactly
    ``name[:port]``, ``IPv4[:port]`` or ``[IPv6][:port]`` (no user info, no path, no stray characters, a port
    1..65535 in decimal digits)."""
    value = value.lower()
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[1:end], value[end + 1 :]
        try:
            if end < 0 or ipaddress.ip_address(host).version != 6:
                return None
        except ValueError:
            return None
    else:
        host, sep, port_text = value.partition(":")
        rest = sep + port_text
        if not _NAME.fullmatch(host):
            return None
    if not rest:
        return host, None
    if not rest.startswith(":") or not rest[1:].isascii() or not rest[1:].isdigit() or len(rest) > 6:
        return None
    port = int(rest[1:])
    return (host, port) if 1 <= port <= 65535 else None


def _origin(value: str) -> tuple[str, str, int] | None:
    """``scheme://host[:port]`` -> (scheme, host, port with the scheme's default), or None."""
    scheme, sep, authority = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    parsed = parse_host(authority)
    if parsed is None:
        return None
    default = 443 if scheme.lower() == "https" else 80
    return scheme.lower(), parsed[0], parsed[1] or default


class Guard:
    """ASGI middleware: checks the Host header (``hosts``: the host names accepted, None: any), the access token
    (``token``: None where none is asked), the Origin and content type of POST requests and their size, and adds
    the security headers to every response."""

    def __init__(self, app: Any, hosts: Iterable[str] | None, token: str | None = None) -> None:
        self.app = app
        self.hosts = None if hosts is None else {host_name(h) for h in hosts}
        self.token = token
        self.cookie = f"cnnlens-{hashlib.sha256((token or '').encode()).hexdigest()[:12]}"  # one per app

    def allow(self, host: str) -> None:
        """Accept requests addressed to ``host`` too (the address the app is bound to)."""
        if self.hosts is not None:
            self.hosts.add(host_name(host))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal, cookie = self._check(scope)
        if refusal is not None:
            await _refuse(send, *refusal, api=scope.get("path", "").startswith("/api/"))
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS, *cookie]
            await send(message)

        await self.app(scope, receive, with_headers)

    def _check(self, scope: dict[str, Any]) -> tuple[tuple[int, str] | None, list[tuple[bytes, bytes]]]:
        """(status and message of a refusal or None, the cookie headers to add)."""
        pairs = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        headers = dict(pairs)
        hosts = [v for k, v in pairs if k == "host"]
        parsed = parse_host(hosts[0]) if len(hosts) == 1 else None
        if parsed is None:
            return (400, "a request needs one Host header of the form name[:port]"), []
        if self.hosts is not None and parsed[0] not in self.hosts:
            return (421, f"this app answers requests addressed to {', '.join(sorted(self.hosts))} only; serve it "
                         "with --allow-host NAME (allow_hosts=) to be reached by another name"), []  # fmt: skip
        cookie: list[tuple[bytes, bytes]] = []
        if self.token is not None:
            given = self._given_token(scope, headers)
            if given is None:
                return (403, "this app asks for its access token: open the URL it printed when it started "
                             "(http://HOST:PORT/?token=...)"), []  # fmt: skip
            if given:
                cookie = [(b"set-cookie", f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode())]
        if scope["method"] not in ("GET", "HEAD"):
            return _check_post(headers, parsed), cookie
        return None, cookie

    def _given_token(self, scope: dict[str, Any], headers: dict[str, str]) -> bool | None:
        """True: the right token in the query or an Authorization header (set the cookie); False: in the cookie;
        None: not given, or wrong."""
        assert self.token is not None
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        auth = headers.get("authorization", "")
        offered = [*query.get("token", []), *([auth[7:].strip()] if auth.lower().startswith("bearer ") else [])]
        if any(_same(t, self.token) for t in offered):
            return True
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie and _same(value, self.token):
                return False
        return None


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def _check_post(headers: dict[str, str], host: tuple[str, int | None]) -> tuple[int, str] | None:
    """The refusal of a request that computes (POST), or None: its Origin, when given, must be this app's own
    (http, the Host's name and port), its body JSON and at most MAX_BODY bytes."""
    origin = headers.get("origin")
    if origin is not None and _origin(origin) != ("http", host[0], host[1] or 80):
        return 403, "requests from other sites are refused"
    if not _JSON.fullmatch(headers.get("content-type", "").strip()):
        return 415, "send JSON (Content-Type: application/json)"
    length = headers.get("content-length", "0") or "0"
    if not length.isdigit() or int(length) > MAX_BODY:
        return 413, f"request bodies are limited to {MAX_BODY} bytes"
    return None


async def _refuse(send: Any, status: int, message: str, api: bool) -> None:
    body = json.dumps({"error": message}).encode() if api else (message + "\n").encode()
    kind = b"application/json" if api else b"text/plain; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), *HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
