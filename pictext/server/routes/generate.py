"""The Generate tab's routes: every method of pictext.generate, streamed to the page as it draws, one job at a time.

`GET /api/generate?method=M&prompt=...&<setting>=...` answers with newline-delimited JSON: `frame` lines (an
optimisation step's picture, or a kept picture with its rank) and then `done` (the best picture as the PNG the
CLI writes, settings in its text chunks), `cancelled` or `error`. The settings are the method's settings
dataclass's, read and checked by it, within the page's limits it declares (`GET /api/generate/status` lists
them with their defaults). A job stops at its next step when its client goes away or its time runs out; a
second request while one runs gets 409.

unCLIP's variations and interpolations take uploaded pictures (multipart, like the Classify tab; never a path):
`POST /api/unclip/vary` (file, n, seed, guidance) and `POST /api/unclip/interpolate` (a, b, n, seed, guidance)
answer with JSON `{"images": [PNG data URLs]}`.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from PIL import Image

from pictext.errors import Cancelled, PictextError
from pictext.generate.base import METHODS, GenerationError, ModelCache, ModelSpec, method
from pictext.server.state import ServerState, decode_upload, user_error

TIME_LIMIT = 600.0  # seconds a job may hold the server's one generation slot


@dataclass
class Generation:
    """What the Generate tab draws with: per method offered, the models given (names, files or loaded models;
    those left out are the method's defaults, as `pictext generate` takes them), loaded once into `cache`."""

    models: dict[str, dict[str, ModelSpec]]
    cache: ModelCache = field(default_factory=ModelCache)
    time_limit: float = TIME_LIMIT
    busy: threading.Lock = field(default_factory=threading.Lock)
    last_run_steps: int = 0  # steps (or pictures) the last job ran: fewer than asked when it was stopped

    def generator(self, name: str, prompt: str) -> Any:
        from pictext.generate import prepare

        return prepare(name, prompt, self.cache, **self.models[name])

    def preset(self, name: str, prompt: str | None = None) -> str | None:
        """The settings preset method `name`'s models call for (a published VQGAN: "classic"), as the CLI picks it."""
        cls = method(name)
        return cls.preset_for(cls.models_for(prompt, {k: v for k, v in self.models[name].items() if v is not None}))


def page_settings(cls: type, preset: str | None = None) -> dict[str, dict[str, Any]]:
    """The settings the page may send for a method (query name -> default and limits), the defaults `preset`'s."""
    base = cls.PRESETS[preset] if preset else {}
    out = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("page") is False or not meta.get("cli", True):
            continue
        high = meta["page"] if meta.get("page") is not True else meta.get("high")
        default = base.get(f.name, f.default)
        out[param_name(f)] = {"setting": f.name, "default": default, "low": meta.get("low"), "high": high}
    return out


def param_name(f: dataclasses.Field) -> str:
    """A setting's query parameter: its CLI flag without dashes (guidance for guidance_scale), or its name for a
    switch (shape_prompt=false)."""
    flag = f.metadata.get("flag")
    if f.default is True or f.default is False or not flag:
        return f.name
    return flag.lstrip("-").replace("-", "_")


def read_settings(cls: type, query: dict[str, str], preset: str | None = None) -> Any:
    """The settings a request asks for over `preset`'s: each parameter read by the settings class and held to the
    page's limit."""
    offered = page_settings(cls)
    unknown = sorted(set(query) - set(offered))
    if unknown:
        raise GenerationError(f"{', '.join(unknown)}: not settings of this method (it takes {', '.join(offered)})")
    values = {}
    for name, text in query.items():
        spec = offered[name]
        value = cls.parse(spec["setting"], text)
        top = max(value) if isinstance(value, tuple) else value
        if (
            spec["high"] is not None
            and isinstance(top, int | float)
            and not isinstance(top, bool)
            and top > spec["high"]
        ):
            raise GenerationError(f"{name} must be at most {spec['high']:g} on this page, got {text}")
        values[spec["setting"]] = value
    return cls.build(values, preset)


def router(state: ServerState, generation: Generation | None) -> APIRouter:
    api = APIRouter()

    @api.get("/api/generate/status")
    def generate_status() -> dict:
        if generation is None or not generation.models:
            return {"available": False, "reason": "this server was started with no model to generate with"}
        methods = [name for name in METHODS if name in generation.models]
        return {"available": True, "methods": methods, "running": generation.busy.locked(),
                "settings": {name: page_settings(method(name).Settings, generation.preset(name)) for name in methods},
                "time_limit_s": generation.time_limit}  # fmt: skip

    @api.get("/api/generate")
    async def generate_route(request: Request, prompt: str):
        query = {k: v for k, v in request.query_params.items() if k not in ("prompt", "method")}
        name = request.query_params.get("method", "vqgan-clip")
        job = _job(generation, name, prompt, query)
        if not generation.busy.acquire(blocking=False):  # type: ignore[union-attr]
            raise HTTPException(409, "a generation is already running; one at a time on this server")
        lines: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=64)
        cancel = threading.Event()
        thread = threading.Thread(target=_run, args=(generation, name, prompt, job, lines, cancel), daemon=True)
        thread.start()
        return StreamingResponse(_stream(request, lines, cancel), media_type="application/x-ndjson")

    @api.post("/api/unclip/vary")
    async def vary(request: Request) -> dict:
        return await _draw_unclip(state, generation, request, "vary", ["file"])

    @api.post("/api/unclip/interpolate")
    async def interpolate(request: Request) -> dict:
        return await _draw_unclip(state, generation, request, "interpolate", ["a", "b"])

    return api


async def _draw_unclip(
    state: ServerState, generation: Generation | None, request: Request, what: str, uploads: list[str]
) -> dict:
    """Variations of one uploaded picture or the pictures between two, at once; stopped between diffusion steps
    when the client leaves or the time runs out."""
    from pictext.generate.unclip import InterpolateSettings, VarySettings

    if generation is None or "unclip" not in generation.models:
        raise HTTPException(404, "this server was started without an unclip model to draw with")
    form = await request.form()
    fields = {k: str(v) for k, v in form.items() if k not in uploads}
    try:
        settings = read_settings(VarySettings if what == "vary" else InterpolateSettings, fields,
                                 generation.preset("unclip"))  # fmt: skip
    except PictextError as e:
        raise user_error(e) from e
    pictures = []
    for key in uploads:
        file = form.get(key)
        if file is None or isinstance(file, str):
            raise HTTPException(400, f"the picture {key!r} is missing")
        pictures.append(_decoded(await state.read_upload(file), file.filename or key))  # type: ignore[arg-type]
    if not generation.busy.acquire(blocking=False):
        raise HTTPException(409, "a generation is already running; one at a time on this server")
    cancel = threading.Event()
    try:
        task = asyncio.get_running_loop().run_in_executor(
            None, _unclip_pictures, generation, what, pictures, settings, _stopper(cancel, generation.time_limit)
        )
        while not task.done():  # the job stops at its next diffusion step once the client has gone
            if await request.is_disconnected():
                cancel.set()
            await asyncio.wait({task}, timeout=0.1)
        images = await task
    except Cancelled as e:
        why = "its client left" if cancel.is_set() else f"it ran past the limit of {generation.time_limit:g} s"
        raise HTTPException(408, f"the job was stopped before its end: {why}") from e
    finally:
        generation.busy.release()
    return {"images": [_data_url(image) for image in images]}


@dataclass
class _Job:
    cls: Any
    settings: Any


def _job(generation: Generation | None, name: str, prompt: str, query: dict[str, str]) -> _Job:
    """The request checked before a job starts: the method offered, the prompt, the settings (400 naming what)."""
    if name not in METHODS:
        raise HTTPException(400, f"method must be one of {', '.join(METHODS)}, got {name!r}")
    if generation is None or name not in generation.models:
        raise HTTPException(404, f"this server was started without a model to draw {name} with")
    cls = method(name)
    try:
        cls.check_prompt(prompt)
        return _Job(cls, read_settings(cls.Settings, query, generation.preset(name, prompt)))
    except PictextError as e:
        raise HTTPException(400, str(e)) from e


def _stopper(cancel: threading.Event, limit: float) -> Callable[[], None]:
    deadline = time.monotonic() + limit

    def check() -> None:
        if cancel.is_set() or time.monotonic() > deadline:
            raise Cancelled

    return check


def _run(
    generation: Generation, name: str, prompt: str, job: _Job, lines: queue.Queue, cancel: threading.Event
) -> None:
    """The job's thread: frames as they come, then the outcome; the slot is freed whatever happens."""
    from pictext.generate.outputs import slug

    deadline = time.monotonic() + generation.time_limit
    settings, frames = job.settings, getattr(job.settings, "frame_every", 0)
    shown = getattr(settings, "keep", getattr(settings, "samples", getattr(settings, "steps", 0)))

    def on_step(step, picture: Image.Image | None) -> bool:
        if picture is not None and (name != "vqgan-clip" or (frames and step.step % frames == 0)):
            line = {"type": "frame", "step": step.step + 1, "steps": shown, "clip_score": _score(step.clip_score),
                    "image": _data_url(picture)}  # fmt: skip
            _put(lines, line)
        return not cancel.is_set() and time.monotonic() < deadline

    try:
        result = generation.generator(name, prompt)(prompt, settings, on_step)
        generation.last_run_steps = len(result.steps) if name == "vqgan-clip" else len(result.samples)
        if result.stopped_early:
            why = "its client left" if cancel.is_set() else f"it ran past the limit of {generation.time_limit:g} s"
            _put(lines, {"type": "cancelled", "step": generation.last_run_steps, "reason": why}, force=True)
        else:
            png = result.png()
            _put(lines, {"type": "done", "clip_score": _score(result.clip_score), "name": f"{slug(prompt)}-"
                         f"{settings.seed}.png", "image": "data:image/png;base64," + base64.b64encode(png).decode()},
                 force=True)  # fmt: skip
    except Exception as e:  # reported to the page as a line, like every other outcome
        _put(lines, {"type": "error", "message": f"{e.__class__.__name__}: {e}"}, force=True)
    finally:
        _put(lines, None, force=True)
        generation.busy.release()


async def _stream(request: Request, lines: queue.Queue, cancel: threading.Event) -> AsyncIterator[bytes]:
    try:
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.02)
                continue
            if line is None:
                return
            yield (json.dumps(line) + "\n").encode()
    finally:
        cancel.set()  # the client left or the job ended: stop at the next step either way


def _score(value: float) -> float | None:
    """A CLIP score for a JSON line: None where there is none (NaN is not JSON)."""
    return None if math.isnan(value) else round(value, 4)


def _unclip_pictures(generation: Generation, what: str, pictures: list, settings: Any, check: Callable) -> list:
    pipeline = generation.generator("unclip", "variations").pipeline
    s = settings
    if what == "vary":
        return pipeline.vary(pictures[0], s.n, s.guidance_scale, s.steps, s.seed, s.eta, s.upsample, check=check)
    return pipeline.interpolate(pictures[0], pictures[1], s.n, s.guidance_scale, s.steps, s.seed, s.upsample,
                                check=check)  # fmt: skip


def _decoded(data: bytes, name: str) -> Image.Image:
    try:
        return decode_upload(data, name)
    except PictextError as e:  # not a picture (400), or over the pixel limit (413)
        raise user_error(e) from e


def _put(lines: queue.Queue, line: dict | None, force: bool = False) -> None:
    """Queue a line for the page; a slow page drops frames (never blocks the job), never the last lines."""
    try:
        lines.put(line, block=force, timeout=5 if force else None)
    except queue.Full:
        pass


def _data_url(image: Image.Image) -> str:
    from pictext.generate.outputs import png_bytes

    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()
