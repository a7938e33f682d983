"""Building the app and serving it (uvicorn) on this machine: `create_app`, `serve`, `running`."""

from __future__ import annotations

import logging
import socket
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..core.errors import CnnlensError, CnnlensWarning, say
from ._security import LOOPBACK_NAMES, Guard, is_loopback, new_token
from ._state import DEFAULT_MAX_PASSES, AppState

log = logging.getLogger("cnnlens.app")


def _require() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise CnnlensError(
            f"the app needs Starlette and uvicorn ({err.name} is missing): pip install starlette uvicorn "
            "(they come with pip install cnnlens)"
        ) from None


def create_app(
    store: Any, *, model: Any = None, data: Any = None, max_passes: int = DEFAULT_MAX_PASSES, hosts: Any = "local",
    jobs: Any = None, batch_size: int | None = None, allow_hosts: Any = (), token: str | None = None,
) -> Any:  # fmt: skip
    """The app (a Starlette ASGI application) of ``store`` (a path or a `Store`). ``model`` / ``data``: the
    store's model and data set when its manifest cannot reopen them (checked against the stored hashes).
    ``max_passes``: the most model inputs one on-demand computation may evaluate. ``hosts``: the Host names
    accepted, ``"local"`` (localhost, 127.0.0.1, ::1), names, or None (any host: only behind a proxy that checks
    it); ``allow_hosts``: more names accepted (`serve` and `running` add the address they bind).
    ``token``: the access token every request must carry (query ``token=``, ``Authorization: Bearer``, or the
    cookie the app sets when given it), None: none asked (this machine only); see `new_token`.
    ``jobs``: the computations runner to use (`start_predictions` gives one already running); ``batch_size``: most
    model inputs per pass of on-demand computations (None: automatic)."""
    _require()
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from ._server import Pages

    state = AppState(store, model=model, data=data, max_passes=max_passes, jobs=jobs, batch_size=batch_size)
    _warm(state)
    spec = state.store.manifest["dataset"]
    page = Pages(state, f"{spec.get('spec') or spec['name']} · {state.store.manifest['model']['name']}")
    routes = [
        Route("/", page.overview),
        Route("/images", page.images),
        Route("/image", page.image),
        Route("/pair", page.pair),
        Route("/photo.png", page.photo),
        Route("/map.png", page.map),
        Route("/colorbar.png", page.colorbar),
        Route("/api/job", page.job),
        Route("/api/explain", page.explain, methods=["POST"]),
        Route("/api/cancel", page.cancel, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("cnnlens.app", "static")]), name="static"),
    ]

    def failure(request: Any, err: Exception) -> Any:
        from starlette.responses import JSONResponse, PlainTextResponse

        if isinstance(err, HTTPException):
            status, message = err.status_code, str(err.detail)
        elif isinstance(err, CnnlensError):
            status, message = 400, " ".join(str(err).split())
        else:  # the traceback goes to the log, never to the page
            log.error("unexpected error on %s", request.url.path, exc_info=err)
            status, message = 500, f"unexpected {type(err).__name__}; the app's log (its terminal) has the details"
        if status == 404 and not isinstance(err, HTTPException) or message in ("Not Found", ""):
            message = f"no page {request.url.path!r} here; start from the overview"
        path = request.url.path
        if path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status)
        if path.endswith(".png") or path.startswith("/static/"):
            return PlainTextResponse(message, status_code=status)
        return page.html("error.html.j2", status=status, status_code=status, message=message)

    app = Starlette(
        routes=routes, exception_handlers={HTTPException: failure, CnnlensError: failure, Exception: failure}
    )
    app.state.cnnlens = state
    allowed = None if hosts is None else {*LOOPBACK_NAMES, *allow_hosts} if hosts == "local" else {*hosts, *allow_hosts}
    return Guard(app, allowed, token)


def _warm(state: AppState) -> None:
    """What the first pages need, done before the app answers (so that they appear at once): the overview's
    numbers, the method registry, the data set, and the drawing code."""
    from . import _pages
    from ._pictures import colorbar

    state.summaries.put(state.version, _pages.overview(state.store))
    _pages.method_choices()
    state.dataset()
    colorbar("absolute", "auto", "blended_heat_map")


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: a free port), or a clear error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise CnnlensError(f"cannot serve on host {host!r}: {err.strerror}; use an address such as 127.0.0.1") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise CnnlensError(
            f"cannot serve on {host}:{port} ({err.strerror}); choose another {say('port=', '--port')} (0: any free "
            "port)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _server(app: Any, sock: socket.socket) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def _warn_network(host: str) -> None:
    if not is_loopback(host):
        warnings.warn(
            f"serving on {host}: anyone who can reach this machine and has the URL with its access token can browse "
            f"the store and start computations; serve on 127.0.0.1 unless you mean it",
            CnnlensWarning,
            stacklevel=3,
        )


def _token(host: str, token: str | bool | None) -> str | None:
    """The access token to ask for: ``token`` when it is text, a new one when True or (None) when ``host`` is not
    this machine only, else None."""
    if isinstance(token, str):
        if len(token) < 16:
            raise CnnlensError("an access token needs at least 16 characters; leave it out to have one made")
        return token
    return new_token() if token or (token is None and not is_loopback(host)) else None


def _guarded(app: Any, host: str) -> Guard:
    """``app`` (made by `create_app`) accepting requests addressed to ``host``; refused when ``host`` is beyond
    this machine and the app asks for no token."""
    if not isinstance(app, Guard):
        raise CnnlensError("app= takes an app made by cnnlens.app.create_app")
    if app.token is None and not is_loopback(host):
        raise CnnlensError(
            f"serving on {host} (beyond this machine) needs an access token: make the app with "
            "create_app(..., token=new_token()), or serve on 127.0.0.1"
        )
    app.allow(host)
    return app


def url(sock: socket.socket, app: Guard) -> str:
    """The address to open: the bound one, with the access token (``?token=``) where the app asks for one."""
    return address(sock) + ("" if app.token is None else f"?token={app.token}")


def serve(
    store: Any, *, host: str = "127.0.0.1", port: int = 8765, model: Any = None, data: Any = None,
    max_passes: int = DEFAULT_MAX_PASSES, ready: Any = None, jobs: Any = None, batch_size: int | None = None,
    allow_hosts: Any = (), token: str | bool | None = None,
) -> None:  # fmt: skip
    """Serve the app of ``store`` on ``host:port`` until interrupted (Ctrl+C); see `create_app`. Binds 127.0.0.1
    (this machine only) unless told otherwise, and warns when told. Requests must be addressed to ``host``,
    localhost or an ``allow_hosts`` name (else 421). ``token``: the access token to ask for (None: a new one
    where ``host`` is beyond this machine, none on it; True: a new one); ``ready(url)`` is called once it listens,
    with the URL to open (carrying the token)."""
    _require()
    _warn_network(host)
    sock = _bind(host, port)
    options = {"max_passes": max_passes, "jobs": jobs, "batch_size": batch_size, "allow_hosts": allow_hosts}
    try:
        app = _guarded(create_app(store, model=model, data=data, token=_token(host, token), **options), host)
    except BaseException:
        sock.close()
        raise
    app.allow(sock.getsockname()[0])  # the address a name given as host was bound to
    server = _server(app, sock)
    if ready is not None:
        ready(url(sock, app))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl+C is how the app is stopped: uvicorn has shut down, it passes the signal on
        pass
    finally:
        sock.close()
        _stop_job(app)


def _stop_job(app: Any) -> None:
    """Cancel the running computation, then store what was computed and not yet stored."""
    state = app.app.state.cnnlens
    if state.jobs.cancel() is not None:
        state.jobs.wait(30)
    if not state.pending.flush(120):
        log.error("some explanations computed on demand could not be stored in time; they are lost")


@contextmanager
def running(
    store: Any, *, host: str = "127.0.0.1", port: int = 0, model: Any = None, data: Any = None,
    max_passes: int = DEFAULT_MAX_PASSES, batch_size: int | None = None, app: Any = None, allow_hosts: Any = (),
    token: str | bool | None = None,
) -> Iterator[str]:  # fmt: skip
    """The app served in a background thread while the block runs (for notebooks, scripts and tests): yields its
    URL (``port=0``: a free port; with ``?token=`` where it asks for one: see `serve`); on leaving, a running
    computation is cancelled and the server stopped. ``app``: one made by `create_app` (the other arguments but
    ``host`` and ``port`` are then unused; it must ask for a token to be served beyond this machine)."""
    _require()
    _warn_network(host)
    if app is None:
        app = create_app(store, model=model, data=data, max_passes=max_passes, batch_size=batch_size,
                         allow_hosts=allow_hosts, token=_token(host, token))  # fmt: skip
    app = _guarded(app, host)
    sock = _bind(host, port)
    app.allow(sock.getsockname()[0])
    server = _server(app, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="cnnlens-app", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise CnnlensError("the app's server stopped as it started; see the messages above")
            threading.Event().wait(0.01)
        yield url(sock, app)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        _stop_job(app)
