"""`pictext serve`: a local web app and JSON API over an index (FastAPI; one static page, no build step).

Security by default: the server binds 127.0.0.1; any other address needs a token
that every request carries (`Authorization: Bearer T` or `?token=T`). Files are
served only by catalog id, and only while their real path is still inside a
folder that was indexed, so no path a client sends is ever opened. Uploads have
a byte and a pixel limit (413 above either). Every error is JSON with a message.
"""

from __future__ import annotations

import hmac
import io
import os
import threading
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException

from pictext.checkpoint import atomic_write
from pictext.images.decode import ImageError, decode_bytes, decode_image
from pictext.search.index import MAX_UPLOAD_PIXELS, Hit, Index, inside
from pictext.search.query import QueryError, parse_query

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
THUMB_SIZE = 256


class TooLarge(ValueError):
    pass


def create_app(index: Index, token: str | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    app = FastAPI(title="pictext", description="Search images by text and by image; classify zero-shot.")
    lock = threading.Lock()  # one model and one SQLite connection, shared by the worker threads

    @app.middleware("http")
    async def guard(request: Request, call_next):  # noqa: ANN001, ANN202 - Starlette's signature
        if token is not None:
            given = request.query_params.get("token") or request.headers.get("authorization", "").removeprefix(
                "Bearer "
            )
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _error(401, "this server needs its token: add ?token=... or an Authorization: Bearer header")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_upload_bytes:
            return _error(413, f"upload is {int(length)} bytes; the limit is {max_upload_bytes}")
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        return _error(422, f"invalid request: {where}")

    @app.exception_handler(Exception)
    async def crash(request: Request, e: Exception) -> JSONResponse:
        return _error(500, f"internal error ({e.__class__.__name__}); see the server log")

    def hits(found: list[Hit]) -> dict:
        return {"results": [{"id": h.id, "score": round(h.score, 5), "name": Path(h.path).name} for h in found]}

    async def read_upload(file: UploadFile) -> bytes:
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload is over the limit of {max_upload_bytes} bytes")
        return data

    def decode_upload(data: bytes, name: str) -> Image.Image:
        try:
            return decode_bytes(data, name, max_pixels=MAX_UPLOAD_PIXELS)
        except ImageError as e:
            raise HTTPException(413 if "over the limit" in e.reason else 400, str(e)) from e

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (STATIC / "index.html").read_text()

    @app.get("/api/status")
    def status() -> dict:
        with lock:
            return {"images": len(index), "errors": index.catalog.counts()["error"], "model": index.model_spec}

    @app.get("/api/search")
    def search(q: Annotated[str, Query(description='text, or a mix: "beach" + "sunset" - people')], k: int = 24):
        _check_k(k)
        try:
            terms = parse_query(q)
        except QueryError as e:
            raise HTTPException(400, str(e)) from e
        with lock:
            return hits(index.search(terms, k))

    @app.post("/api/search/image")
    async def search_image(file: Annotated[UploadFile, File()], k: Annotated[int, Form()] = 24):
        _check_k(k)
        image = decode_upload(await read_upload(file), file.filename or "upload")
        with lock:
            return hits(index.search(image, k))

    @app.get("/api/similar/{file_id}")
    def similar(file_id: int, k: int = 24) -> dict:
        _check_k(k)
        with lock:
            try:
                return hits(index.similar(file_id, k))
            except QueryError as e:
                raise HTTPException(404, str(e)) from e

    @app.post("/api/classify")
    async def classify(file: Annotated[UploadFile, File()], labels: Annotated[str, Form()]):
        from pictext.api import classify as zero_shot

        image = decode_upload(await read_upload(file), file.filename or "upload")
        names = [label.strip() for label in labels.split(",")]
        with lock:
            try:
                probs = zero_shot([image], names, model=index.model)[0]  # labels are checked before any image work
            except ValueError as e:
                raise HTTPException(400, str(e)) from e
        order = np.argsort(-probs)
        return {"labels": [{"label": names[i], "prob": round(float(probs[i]), 5)} for i in order]}

    @app.get("/api/image/{file_id}")
    def image(file_id: int) -> FileResponse:
        return FileResponse(_file_for(index, file_id, lock))

    @app.get("/api/thumb/{file_id}")
    def thumb(file_id: int) -> Response:
        path = _file_for(index, file_id, lock)
        cached = index.path / "thumbs" / f"{file_id}.jpg"
        if not cached.exists():
            try:
                picture = decode_image(path)
            except ImageError as e:
                raise HTTPException(404, f"image {file_id} cannot be read now: {e.reason}") from e
            picture.thumbnail((THUMB_SIZE, THUMB_SIZE))
            buffer = io.BytesIO()
            picture.save(buffer, "JPEG", quality=85)
            atomic_write(cached, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
        return FileResponse(cached, media_type="image/jpeg")

    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _check_k(k: int) -> None:
    if not 1 <= k <= 1000:
        raise HTTPException(400, f"k must be between 1 and 1000, got {k}")


def _file_for(index: Index, file_id: int, lock: threading.Lock) -> Path:
    """The file of catalog row `file_id`, if its real path is still inside what was indexed; else 404."""
    with lock:
        record = index.catalog.by_id(file_id)
        roots = index.real_roots()
    if record is None:
        raise HTTPException(404, f"no indexed image has id {file_id}")
    real = os.path.realpath(record.path)
    if not inside(real, roots) or not os.path.isfile(real):
        raise HTTPException(404, f"image {file_id} is no longer inside the indexed folders")
    return Path(real)
