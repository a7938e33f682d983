"""Safe by default: the app answers only requests addressed to it (its own host name, so that a web page elsewhere
cannot reach it through DNS rebinding), takes computations only as JSON from its own pages (no cross-site form
posts), bounds request bodies, and tells the browser to run no script, style or frame from anywhere else."""

from __future__ import annotations

import ipaddress
import json
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


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address to bind) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    """``host[:port]`` or ``[v6]:port`` -> the host part, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """ASGI middleware: checks the Host header (``hosts``: the names accepted, None: any), the Origin and content
    type of POST requests and their size, and adds the security headers to every response."""

    def __init__(self, app: Any, hosts: set[str] | None) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = _host_name(headers.get("host", ""))
        if self.hosts is not None and host not in self.hosts:
            await _refuse(send, 421, f"this app answers requests to {', '.join(sorted(self.hosts))} only")
            return
        if scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin")
            if origin is not None and _host_name(origin.split("://", 1)[-1]) != host:
                await _refuse(send, 403, "requests from other sites are refused")
                return
            if not headers.get("content-type", "").startswith("application/json"):
                await _refuse(send, 415, "send JSON (Content-Type: application/json)")
                return
            if int(headers.get("content-length", "0") or 0) > MAX_BODY:
                await _refuse(send, 413, f"request bodies are limited to {MAX_BODY} bytes")
                return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _refuse(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
