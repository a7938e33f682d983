"""The app's routes (Starlette): pages, pictures, and the JSON calls that start, follow and cancel a computation."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ..core.errors import CnnlensError
from . import _pages as pages
from ._jobs import Busy, Computation
from ._pending import Result
from ._pictures import THUMB, check_look, colorbar, fit, map_picture, png
from ._state import AppState

log = logging.getLogger("cnnlens.app")


def url(path: str, **params: Any) -> str:
    """``path?k=v&...`` of the parameters that are not None (values URL-encoded; templates escape the result)."""
    kept = {k: v for k, v in params.items() if v is not None and v != ""}
    return path + ("?" + urlencode(kept) if kept else "")


def _templates() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cnnlens.app", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.globals["url"] = url
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
    env.filters["num"] = lambda v, d=3: "n/a" if v is None else f"{v:.{d}g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return env


def shown_path(root: Path) -> tuple[str, str]:
    """(the store's folder as the user knows it: relative to the working folder when inside it, else as given;
    its whole path)."""
    whole = root.resolve()
    try:
        return str(whole.relative_to(Path.cwd().resolve())), str(whole)
    except (ValueError, OSError):
        return str(root), str(whole)


def explains_param(text: str) -> str | int:
    """``predicted``, ``label`` or a class index, as the pages send it."""
    if text in ("", "predicted"):
        return "predicted"
    if text == "label":
        return "label"
    if text.isdigit():
        return int(text)
    raise CnnlensError(f"explains must be predicted, label or a class index; got {text!r}")


class Pages:
    """The route handlers, bound to one `AppState`."""

    def __init__(self, state: AppState, title: str) -> None:
        self.state = state
        self.title = title
        self.env = _templates()

    # ---- helpers ------------------------------------------------------------------------------------------
    def html(self, template: str, status: int = 200, **context: Any) -> Any:
        from starlette.responses import HTMLResponse

        store = self.state.store
        job = self.state.jobs.current
        body = self.env.get_template(template).render(
            title=self.title, store=store, store_path=shown_path(store.root), job=None if job is None else job.public(),
            job_json=json.dumps(None if job is None else job.public()), **context,
        )  # fmt: skip
        return HTMLResponse(body, status_code=status)

    def known_image(self, image_id: str) -> None:
        from starlette.exceptions import HTTPException

        try:
            self.state.store.row(image_id)
        except CnnlensError as err:
            raise HTTPException(404, " ".join(str(err).split())) from None

    def known_label(self, label: str) -> None:
        from starlette.exceptions import HTTPException

        if label not in self.state.store.labels:
            raise HTTPException(
                404, f"no method {label!r} in this store; it holds {', '.join(self.state.store.labels)}"
            )

    # ---- pages --------------------------------------------------------------------------------------------
    def overview(self, request: Any) -> Any:
        store = self.state.store
        summary = self.state.summaries.get(self.state.version)
        if summary is None:
            summary = self.state.summaries.put(self.state.version, pages.overview(store))
        return self.html("overview.html.j2", o=summary)

    def images(self, request: Any) -> Any:
        query = dict(request.query_params)
        method = query.get("map") or None
        if method is not None:
            self.known_label(method)
        return self.html(
            "images.html.j2", g=pages.grid(self.state.store, query), method=method, look=_look(request.query_params)
        )

    def image(self, request: Any) -> Any:
        image_id = request.query_params.get("id", "")
        self.known_image(image_id)
        explains = explains_param(request.query_params.get("explains", ""))
        page = pages.image(self.state.store, image_id, explains)
        self.state.dataset()  # tried once: data_problem says why there is no photo
        choices = pages.method_choices()
        return self.html(
            "image.html.j2", p=page, data_problem=self.state.data_problem, methods=choices,
            method_list=[m for _, group in choices for m in group], look=_look(request.query_params),
        )  # fmt: skip

    def pair(self, request: Any) -> Any:
        page = pages.pair(self.state.store, dict(request.query_params))
        label = request.query_params.get("method") or (self.state.store.labels or [None])[0]
        if label is not None:
            self.known_label(label)
        side = request.query_params.get("for", "predicted")
        if side not in ("predicted", "a", "b"):
            raise CnnlensError(f"for must be predicted, a or b; got {side!r}")
        return self.html("pair.html.j2", p=page, method=label, side=side, look=_look(request.query_params))

    # ---- pictures -------------------------------------------------------------------------------------------
    def photo(self, request: Any) -> Any:
        from starlette.exceptions import HTTPException

        image_id = request.query_params.get("id", "")
        self.known_image(image_id)
        size = THUMB if request.query_params.get("size") == "thumb" else None
        key = ("photo", image_id, size, self.state.version)
        data = self.state.pictures.get(key)
        if data is None:
            pixels = self.state.photo(image_id)
            if pixels is None:
                raise HTTPException(404, self.state.data_problem or "the data set cannot be opened")
            data = self.state.pictures.put(key, png(fit(pixels, size)))
        return _png(data)

    def map(self, request: Any) -> Any:
        q = request.query_params
        image_id, label = q.get("id", ""), q.get("method", "")
        self.known_image(image_id)
        self.known_label(label)
        explains = explains_param(q.get("explains", ""))
        look = _look(q)
        size = THUMB if q.get("size") == "thumb" else None
        key = ("map", image_id, label, str(explains), size, *look.values(), self.state.version)
        data = self.state.pictures.get(key)
        if data is None:
            store = self.state.store
            attribution = store.map(image_id, label, explains)  # not stored: a CnnlensError, 400
            pixels = self.state.photo(image_id)
            data = self.state.pictures.put(key, png(fit(map_picture(pixels, attribution, **look), size)))
        return _png(data)

    def colorbar(self, request: Any) -> Any:
        look = _look(request.query_params)
        key = ("bar", look["sign"], look["cmap"], look["view"])
        data = self.state.pictures.get(key) or self.state.pictures.put(
            key, png(colorbar(look["sign"], look["cmap"], look["view"]))
        )
        return _png(data)

    # ---- computations -----------------------------------------------------------------------------------------
    async def job(self, request: Any) -> Any:
        """The current computation; ``?wait=S``: once it has ended, or after S seconds (at most 30) if sooner."""
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        wait = pages.number(request.query_params, "wait", 0.0, 30.0, 0.0)
        job = self.state.jobs.current
        if job is not None and job.running and wait > 0:
            await run_in_threadpool(job.ended_event.wait, wait)
        return JSONResponse({"job": None if job is None else job.public()})

    def cancel(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        job = self.state.jobs.cancel()
        return JSONResponse({"job": None if job is None else job.public()})

    async def explain(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > 64 * 1024:
                return JSONResponse({"error": "request bodies are limited to 65536 bytes"}, status_code=413)
        try:
            asked = json.loads(body or b"{}")
        except ValueError:
            return JSONResponse({"error": "the request body is not JSON"}, status_code=400)
        if not isinstance(asked, dict):
            return JSONResponse({"error": "send a JSON object"}, status_code=400)
        try:
            answer = await run_in_threadpool(self._start, asked)
        except Busy as err:
            return JSONResponse({"error": str(err)}, status_code=409)
        return JSONResponse(answer, status_code=202 if "job" in answer else 200)

    def _start(self, asked: dict[str, Any]) -> dict[str, Any]:
        """Check what was asked, then start the computation (or say where the stored one is)."""
        from ..attribution import get_method, methods
        from ..store import choose_label, full_options, kind_of, target_class

        store = self.state.store
        image_id, label = asked.get("id"), asked.get("label")
        method = asked.get("method") or label  # a stored label's own method replaces it below
        if not isinstance(image_id, str) or not isinstance(method, str):
            raise CnnlensError("give the image id, and the method name (with its options) or a stored method label")
        row = store.row(image_id)
        if not row["ok"]:
            raise CnnlensError(f"{image_id!r} failed in the run ({row['error']}); it cannot be explained")
        if label is not None:  # a method of the store, for another class
            if label not in store.labels:
                raise CnnlensError(f"no method {label!r} in this store; it holds {', '.join(store.labels)}")
            method, values = store.method_of(label)
        else:
            get_method(method)
            options = asked.get("options") or {}
            if not isinstance(options, dict):
                raise CnnlensError("options must be an object of option name -> text")
            values = pages.parse_options(method, options)
        limit = self.state.jobs.max_passes
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
                raise CnnlensError(
                    f"option {key}={value} is over the app's size limit of {limit:,} model passes (start the app "
                    f"with a larger --max-passes)"
                )
        explains = explains_param(str(asked.get("explains", "predicted")))
        target = target_class(row, explains, len(store.classes))
        pixel_maps = {m.name for m in methods() if m.maps_pixels}
        score = bool(asked.get("score", True)) and method in pixel_maps  # the scores judge maps over pixels
        label = choose_label(store, method, full_options(method, values), label)
        page = url("/image", id=image_id, explains=str(target) if isinstance(explains, int) else explains)
        if label in store.labels and store.has(image_id, label, kind_of(row, target)):
            return {"stored": label, "link": page}

        def work(job: Computation) -> Any:
            self.state.model()
            if self.state.dataset() is None:
                raise CnnlensError(self.state.data_problem or "the data set cannot be opened")
            from ..store import compute_more

            # shown at once from memory, stored behind by the app's writer (see _pending.py)
            added, options, computed = compute_more(
                self.state.store, image_id, method, target, label=None, score=score, model=None, data=None,
                batch_size=self.state.batch_size, progress=False, options=values,
            )  # fmt: skip
            if added.failed:
                raise CnnlensError(f"{method} cannot explain {image_id!r}: {added.failed[image_id]}")
            if computed:
                self.state.pending.add(Result(added.label, method, options, computed, job))
            job.link = page
            return added.label

        name = store.classes[target]
        job = self.state.jobs.start(f"{method} for {image_id}, class {name}", work)
        return {"job": job.public()}


def _look(q: Any) -> dict[str, Any]:
    """The drawing options of a request (view, sign, colormap, opacity), checked."""
    view = q.get("view", "blended_heat_map")
    sign = q.get("sign", "absolute")
    cmap = q.get("cmap", "auto")
    alpha = pages.number(q, "alpha", 0.0, 1.0, 0.5)
    check_look(view, sign, cmap, alpha)
    return {"view": view, "sign": sign, "cmap": cmap, "alpha": alpha}


def _png(data: bytes) -> Any:
    from starlette.responses import Response

    return Response(data, media_type="image/png")
