"""Who may reach the app (a real server, all traffic on 127.0.0.1 / 127.0.0.2): loopback without a token, any
other bind with an access token and a Host allow-list; the Origin of a computation is the app's own scheme, host
and port; JSON content types exactly; Host headers parsed strictly."""

from __future__ import annotations

import http.client
import socket
import urllib.parse

import pytest

import cnnlens
from _app_store import digits_store
from cnnlens.app import create_app, new_token, running

pytestmark = pytest.mark.usefixtures("one_thread")
TOKEN = "t0ken-for-the-tests-" + "x" * 12


def request(url: str, method: str = "GET", path: str | None = None, body: bytes | None = None, **headers: str):
    """(status, headers with lower-case names, body) of one raw request to the server of ``url`` (``path``: the
    URL's own path and query unless given)."""
    u = urllib.parse.urlsplit(url)
    path = path if path is not None else u.path + (f"?{u.query}" if u.query else "")
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host="Host" in headers)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def post(url: str, path: str = "/api/cancel", content_type: str = "application/json", **headers: str) -> int:
    return request(url, "POST", path, b"{}", **{"Content-Type": content_type, **headers})[0]


@pytest.fixture(scope="module")
def local():
    with running(digits_store()) as url:
        yield url


@pytest.fixture(scope="module")
def guarded():
    """Served on 127.0.0.1 but asking for a token and allowing one more name, as a non-loopback bind does."""
    with running(digits_store(), token=TOKEN, allow_hosts=["lens.example"]) as url:
        yield url


def _can_bind(host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, 0))
            return True
        except OSError:
            return False


def test_loopback_needs_no_token_and_the_url_has_none(local) -> None:
    assert "token" not in local and local.startswith("http://127.0.0.1:")
    assert request(local)[0] == 200


@pytest.mark.skipif(not _can_bind("127.0.0.2"), reason="127.0.0.2 cannot be bound here")
def test_another_loopback_address_answers_its_own_url() -> None:
    with running(digits_store(), host="127.0.0.2") as url:
        assert url.startswith("http://127.0.0.2:") and "token" not in url
        assert request(url)[0] == 200  # Host: 127.0.0.2:PORT (was 421)
        assert request(url, Host="evil.example")[0] == 421


def test_a_non_loopback_bind_asks_for_a_token_printed_in_the_url() -> None:
    warned = pytest.warns(cnnlens.CnnlensWarning, match="access token")
    with warned, running(digits_store(), host="0.0.0.0") as url:
        u = urllib.parse.urlsplit(url)
        token = urllib.parse.parse_qs(u.query)["token"][0]
        assert u.hostname == "0.0.0.0" and len(token) >= 40  # secrets.token_urlsafe(32): 43 characters
        here = f"http://127.0.0.1:{u.port}/"  # traffic to this machine only
        status, _, body = request(here)
        assert status == 403 and b"open the URL it printed" in body
        assert request(here, path=f"/?token={token}")[0] == 200
        assert request(here, path=f"/?token={token}", Host=f"0.0.0.0:{u.port}")[0] == 200  # the printed URL
        assert request(here, path=f"/?token={token}", Host="evil.example")[0] == 421  # DNS rebinding


def test_each_serve_makes_a_new_token() -> None:
    assert new_token() != new_token() and len(new_token()) >= 40


def test_the_right_token_sets_a_strict_cookie_that_lets_in(guarded) -> None:
    status, headers, _ = request(guarded)  # guarded carries ?token=
    assert guarded.endswith(f"/?token={TOKEN}") and status == 200
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN in cookie
    name_value = cookie.split(";")[0]
    assert request(guarded, path="/images", Cookie=name_value)[0] == 200
    assert request(guarded, path="/api/job", Authorization=f"Bearer {TOKEN}")[0] == 200
    assert post(guarded, Cookie=name_value) == 200  # a computation from the app's own page


def test_no_token_or_a_wrong_one_is_refused(guarded) -> None:
    assert request(guarded, path="/images")[0] == 403
    assert request(guarded, path="/?token=" + TOKEN[:-1] + "y")[0] == 403
    assert request(guarded, path="/api/job", Authorization="Bearer nope")[0] == 403
    assert request(guarded, path="/static/app.css")[0] == 403
    name = request(guarded)[1]["set-cookie"].split("=")[0]
    assert request(guarded, path="/", Cookie=f"{name}=wrong")[0] == 403
    assert post(guarded) == 403


def test_the_host_allow_list_holds_even_with_the_token(guarded) -> None:
    port = urllib.parse.urlsplit(guarded).port
    path = f"/?token={TOKEN}"
    assert request(guarded, path=path, Host=f"lens.example:{port}")[0] == 200  # allow_hosts
    assert request(guarded, path=path, Host=f"localhost:{port}")[0] == 200
    assert request(guarded, path=path, Host=f"evil.example:{port}")[0] == 421
    assert request(guarded, path=path, Host="lens.example.evil.example")[0] == 421


def test_serving_beyond_this_machine_with_an_app_that_asks_no_token_is_refused() -> None:
    app = create_app(digits_store())
    refused = pytest.raises(cnnlens.CnnlensError, match="needs an access token")
    with refused, pytest.warns(cnnlens.CnnlensWarning), running(digits_store(), host="0.0.0.0", app=app):
        pass
    with pytest.raises(cnnlens.CnnlensError, match="at least 16"), running(digits_store(), token="short"):
        pass


@pytest.mark.parametrize(
    "host",
    ["localhost:{port}@evil.example", "user@localhost:{port}", "localhost:99999", "localhost:0", "localhost:-1",
     "localhost:+80", "localhost:0x50", "loc\\x00alhost", "local host", "localhost/x", "[::1", "[127.0.0.1]:{port}", "localhost:{port}:1", ""],
)  # fmt: skip
def test_host_headers_are_parsed_strictly(local, host) -> None:
    port = urllib.parse.urlsplit(local).port
    status, _, body = request(local, Host=host.format(port=port))
    assert status in (400, 421), status
    assert b"Host" in body or b"answers requests addressed to" in body


def test_good_host_headers_pass(local) -> None:
    port = urllib.parse.urlsplit(local).port
    for host in (f"127.0.0.1:{port}", f"LOCALHOST:{port}", "localhost", f"[::1]:{port}"):
        assert request(local, Host=host)[0] == 200, host


def test_the_origin_must_be_the_apps_own_scheme_host_and_port(local) -> None:
    port = urllib.parse.urlsplit(local).port
    assert post(local, Origin=f"http://127.0.0.1:{port}") == 200
    assert post(local) == 200  # no Origin: not from a browser page
    for origin in (f"http://127.0.0.1:{port + 1 if port < 65535 else 1}", "http://127.0.0.1:9999",
                   f"https://127.0.0.1:{port}", f"http://localhost:{port}", "http://127.0.0.1", "null",
                   f"http://127.0.0.1:{port}@evil.example"):  # fmt: skip
        assert post(local, Origin=origin) == 403, origin


def test_content_types_are_exactly_json(local) -> None:
    assert post(local, content_type="application/json; charset=utf-8") == 200
    assert post(local, content_type="Application/JSON") == 200
    for kind in ("application/jsonp", "application/json-patch+json", "application/json; charset=latin-1",
                 "application/json;x=y", "text/plain", ""):  # fmt: skip
        assert post(local, content_type=kind) == 415, kind


def test_refusals_keep_the_security_headers(guarded) -> None:
    for headers in ({}, {"Host": "evil.example"}):
        _, got, _ = request(guarded, path="/images", **headers)
        assert got["x-frame-options"] == "DENY" and "script-src 'self'" in got["content-security-policy"]


def test_cli_view_passes_host_and_allow_hosts_to_serve(monkeypatch, capsys) -> None:
    import cnnlens.app
    from cnnlens.cli import main

    calls = []

    def fake_serve(store, **options):
        calls.append(options)
        options["ready"](f"http://0.0.0.0:1234/?token={TOKEN}")

    monkeypatch.setattr(cnnlens.app, "serve", fake_serve)
    argv = [
        "view",
        str(digits_store()),
        "--host",
        "0.0.0.0",
        "--allow-host",
        "lens.example",
        "--allow-host",
        "b.example",
    ]
    assert main(argv) == 0
    assert calls[0]["host"] == "0.0.0.0" and calls[0]["allow_hosts"] == ["lens.example", "b.example"]
    assert f"at http://0.0.0.0:1234/?token={TOKEN}" in capsys.readouterr().out
    assert main(["view", str(digits_store())]) == 0 and calls[1]["allow_hosts"] == []
