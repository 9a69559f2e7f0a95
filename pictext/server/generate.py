"""The Generate tab's route: VQGAN+CLIP or DALL-E streamed to the page as it runs, one job at a time per server.

`GET /api/generate?prompt=...&steps=...&seed=...&size=...` (VQGAN+CLIP) answers with newline-delimited JSON:
a `frame` line (step, loss, CLIP score, the picture as a PNG data URL) every few steps, then `done` (the final
PNG) or `error`. `GET /api/generate?method=dalle&prompt=...&samples=...&guidance=...&seed=...` draws the samples,
then sends the kept ones best first as `frame` lines (rank, CLIP score) and the best as `done`. The job runs in
its own thread; when the client goes away (the page's Cancel aborts the request), the job is told to stop at
its next step. A second request while one runs gets 409.

unCLIP's variations and interpolations take uploaded pictures (multipart, like the Classify tab; never a path):
`POST /api/unclip/vary` (file, n, seed, guidance) and `POST /api/unclip/interpolate` (a, b, n, seed, guidance)
answer with JSON `{"images": [PNG data URLs]}`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from PIL import Image

from pictext.clip.model import CLIP
from pictext.dalle.io import DALLEPipeline
from pictext.unclip.pipeline import DECODER_GUIDANCE, UnclipPipeline
from pictext.vqgan.model import VQGAN

MAX_STEPS = 500
MAX_SIZE = 128
MAX_SAMPLES = 64
MAX_GUIDANCE = 10.0
KEEP = 8  # DALL-E pictures shown, best CLIP score first
MAX_VARIATIONS = 8
MAX_INTERPOLATION = 12


@dataclass
class Generator:
    """What the server generates with: a CLIP (guides VQGAN+CLIP, reranks DALL-E), a VQGAN (None: the pixel
    drawer) and a DALL-E (None: not offered)."""

    clip: CLIP
    vqgan: VQGAN | None
    dalle: DALLEPipeline | None = None
    unclip: UnclipPipeline | None = None
    busy: threading.Lock = field(default_factory=threading.Lock)
    last_run_steps: int = 0  # steps the last job ran (fewer than asked when it was cancelled)


def add_generate_routes(
    app: FastAPI,
    generator: Generator | None,
    read_upload: Callable[[UploadFile], Awaitable[bytes]],
    decode: Callable[[bytes, str], Image.Image],
) -> None:
    """The Generate tab's routes; `read_upload` and `decode` are the app's own (size and pixel limits)."""

    @app.get("/api/generate/status")
    def generate_status() -> dict:
        if generator is None:
            return {"available": False, "reason": "this server was started without a VQGAN to generate with"}
        methods = ["vqgan-clip"] + [m for m in ("dalle", "unclip") if getattr(generator, m) is not None]
        return {"available": True, "drawer": "vqgan" if generator.vqgan is not None else "pixel",
                "methods": methods, "running": generator.busy.locked(), "max_steps": MAX_STEPS,
                "max_size": MAX_SIZE, "max_samples": MAX_SAMPLES}  # fmt: skip

    @app.get("/api/generate")
    async def generate_route(
        request: Request, prompt: str, steps: int = 100, seed: int = 0, size: int = 64, method: str = "vqgan-clip",
        samples: int = 16, guidance: float | None = None,
    ):  # fmt: skip
        from pictext.generate.outputs import slug
        from pictext.generate.vqgan_clip import GenerationError, parse_prompts, round_size

        if generator is None:
            raise HTTPException(404, "this server was started without a VQGAN to generate with")
        if method not in ("vqgan-clip", "dalle", "unclip"):
            raise HTTPException(400, f"method must be vqgan-clip, dalle or unclip, got {method!r}")
        if method != "vqgan-clip" and getattr(generator, method) is None:
            raise HTTPException(404, f"this server was started without a {method} model to draw with")
        try:
            parse_prompts(prompt)
        except GenerationError as e:
            raise HTTPException(400, str(e)) from e
        if not 1 <= samples <= MAX_SAMPLES:
            raise HTTPException(400, f"samples must be between 1 and {MAX_SAMPLES}, got {samples}")
        if guidance is None:  # each generator's default: DALL-E's sampler 3, unCLIP's decoder DECODER_GUIDANCE
            guidance = DECODER_GUIDANCE if method == "unclip" else 3.0
        if not 0 <= guidance <= MAX_GUIDANCE:
            raise HTTPException(400, f"guidance must be between 0 and {MAX_GUIDANCE}, got {guidance}")
        if not 1 <= steps <= MAX_STEPS:
            raise HTTPException(400, f"steps must be between 1 and {MAX_STEPS}, got {steps}")
        if not 16 <= size <= MAX_SIZE:
            raise HTTPException(400, f"size must be between 16 and {MAX_SIZE} pixels, got {size}")
        if not 0 <= seed < 2**63:
            raise HTTPException(400, f"seed must be between 0 and 2^63 - 1, got {seed}")
        if generator.vqgan is not None:
            size = round_size(size, generator.vqgan.config.factor)
        if not generator.busy.acquire(blocking=False):
            raise HTTPException(409, "a generation is already running; one at a time on this server")
        settings = {"steps": steps, "seed": seed, "size": (size, size), "frame_every": max(1, steps // 20)}
        if method == "dalle":
            settings = {"seed": seed, "samples": samples, "keep": min(KEEP, samples), "guidance_scale": guidance}
        if method == "unclip":
            settings = {"seed": seed, "samples": min(KEEP, samples), "guidance_scale": guidance}
        lines: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=64)
        cancel = threading.Event()
        run = _run_drawing if method != "vqgan-clip" else _run
        settings["method"] = method
        thread = threading.Thread(target=run, args=(generator, prompt, settings, lines, cancel), daemon=True)
        thread.start()
        name = f"{slug(prompt)}-{seed}.png"

        async def stream() -> AsyncIterator[bytes]:
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
                    yield (json.dumps(line | ({"name": name} if line["type"] == "done" else {})) + "\n").encode()
            finally:
                cancel.set()  # the client left or the job ended: stop at the next step either way

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    def unclip_job(guidance: float, n: int, seed: int, most: int, what: str) -> UnclipPipeline:
        if generator is None or generator.unclip is None:
            raise HTTPException(404, "this server was started without an unclip model to draw with")
        if not 0 <= guidance <= MAX_GUIDANCE:
            raise HTTPException(400, f"guidance must be between 0 and {MAX_GUIDANCE}, got {guidance}")
        if not (2 if what == "interpolate" else 1) <= n <= most:
            raise HTTPException(400, f"n must be between {2 if what == 'interpolate' else 1} and {most}, got {n}")
        if not 0 <= seed < 2**63:
            raise HTTPException(400, f"seed must be between 0 and 2^63 - 1, got {seed}")
        return generator.unclip

    async def draw_unclip(fn: Callable[[], list[Image.Image]]) -> dict:
        assert generator is not None
        if not generator.busy.acquire(blocking=False):
            raise HTTPException(409, "a generation is already running; one at a time on this server")
        try:
            images = await run_in_threadpool(fn)
        finally:
            generator.busy.release()
        return {"images": [_data_url(image) for image in images]}

    @app.post("/api/unclip/vary")
    async def vary(file: Annotated[UploadFile, File()], n: Annotated[int, Form()] = 4, seed: Annotated[int, Form()] = 0,
                   guidance: Annotated[float, Form()] = DECODER_GUIDANCE) -> dict:  # fmt: skip
        unclip = unclip_job(guidance, n, seed, MAX_VARIATIONS, "vary")
        picture = _decoded(decode, await read_upload(file), file.filename or "upload")
        return await draw_unclip(lambda: unclip.vary(picture, n, guidance_scale=guidance, seed=seed))

    @app.post("/api/unclip/interpolate")
    async def interpolate(a: Annotated[UploadFile, File()], b: Annotated[UploadFile, File()],
                          n: Annotated[int, Form()] = 6, seed: Annotated[int, Form()] = 0,
                          guidance: Annotated[float, Form()] = DECODER_GUIDANCE) -> dict:  # fmt: skip
        unclip = unclip_job(guidance, n, seed, MAX_INTERPOLATION, "interpolate")
        first = _decoded(decode, await read_upload(a), a.filename or "first upload")
        second = _decoded(decode, await read_upload(b), b.filename or "second upload")
        return await draw_unclip(lambda: unclip.interpolate(first, second, n, guidance_scale=guidance, seed=seed))


def _run(generator: Generator, prompt: str, settings: dict, lines: queue.Queue, cancel: threading.Event) -> None:
    from pictext.generate import generate

    settings = {k: v for k, v in settings.items() if k != "method"}
    every = settings["frame_every"]

    def on_step(step, frame: Image.Image) -> bool:  # noqa: ANN001
        if step.step % every == 0:
            line = {"type": "frame", "step": step.step + 1, "steps": settings["steps"], "loss": round(step.loss, 4),
                    "clip_score": round(step.clip_score, 4), "image": _data_url(frame)}  # fmt: skip
            _put(lines, line)
        return not cancel.is_set()

    try:
        drawer = "vqgan" if generator.vqgan is not None else "pixel"
        result = generate(prompt, clip=generator.clip, vqgan=generator.vqgan, drawer=drawer, callback=on_step,
                          **settings)  # fmt: skip
        generator.last_run_steps = len(result.steps)
        if result.stopped_early:
            _put(lines, {"type": "cancelled", "step": len(result.steps)}, force=True)
        else:
            done = {"type": "done", "clip_score": round(result.clip_score, 4), "image": _data_url(result.image)}
            _put(lines, done, force=True)
    except Exception as e:  # reported to the page as a line, like every other outcome
        _put(lines, {"type": "error", "message": f"{e.__class__.__name__}: {e}"}, force=True)
    finally:
        _put(lines, None, force=True)
        generator.busy.release()


def _run_drawing(generator: Generator, prompt: str, settings: dict, lines: queue.Queue,
                 cancel: threading.Event) -> None:  # fmt: skip
    """DALL-E (the kept pictures, best first) or unCLIP (the drawn pictures), each sent as a frame."""
    from pictext.generate import generate

    method = settings.pop("method")
    shown = settings.get("keep", settings["samples"])

    def on_picture(step, image: Image.Image) -> bool:  # noqa: ANN001
        line = {"type": "frame", "step": step.step + 1, "steps": shown, "loss": 0.0,
                "clip_score": round(step.clip_score, 4), "image": _data_url(image)}  # fmt: skip
        _put(lines, line)
        return not cancel.is_set()

    models = {"dalle": {"dalle": generator.dalle, "clip": generator.clip}, "unclip": {"unclip": generator.unclip}}
    try:
        result = generate(prompt, method=method, callback=on_picture, **models[method], **settings)
        generator.last_run_steps = len(result.samples)
        done = {"type": "done", "clip_score": round(result.clip_score, 4), "image": _data_url(result.image)}
        _put(lines, done, force=True)
    except Exception as e:  # reported to the page as a line, like every other outcome
        _put(lines, {"type": "error", "message": f"{e.__class__.__name__}: {e}"}, force=True)
    finally:
        _put(lines, None, force=True)
        generator.busy.release()


def _decoded(decode: Callable[[bytes, str], Image.Image], data: bytes, name: str) -> Image.Image:
    try:
        return decode(data, name)
    except ValueError as e:  # ImageError: not a picture, or over the pixel limit
        raise HTTPException(413 if "over the limit" in str(e) else 400, str(e)) from e


def _put(lines: queue.Queue, line: dict | None, force: bool = False) -> None:
    """Queue a line for the page; a slow page drops frames (never blocks the job), never the last lines."""
    try:
        lines.put(line, block=force, timeout=5 if force else None)
    except queue.Full:
        pass


def _data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
