"""The files the server hands out: the page and its script and style (a fixed list), and indexed pictures and
their thumbnails by catalog id only, never by a path a client sends."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response
from PIL import Image

from pictext.files import atomic_write
from pictext.images.decode import ImageError, decode_image
from pictext.search.index import Index, private_folder
from pictext.search.scan import inside
from pictext.server.routes.search import check_id
from pictext.server.state import ServerState

STATIC = Path(__file__).parent.parent / "static"
STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
THUMB_SIZE = 256


def router(state: ServerState) -> APIRouter:
    api = APIRouter()
    index = state.index

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (STATIC / "index.html").read_text(encoding="utf-8")

    @api.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC_TYPES:  # a fixed list: no name a client sends becomes a path
            raise HTTPException(404, f"no static file {name!r}")
        return Response((STATIC / name).read_bytes(), media_type=STATIC_TYPES[name])

    @api.get("/api/image/{file_id}")
    def image(file_id: int) -> FileResponse:
        path = _file_for(index, check_id(file_id), state.db_lock)
        return FileResponse(path, media_type=_image_type(path, file_id))

    @api.get("/api/thumb/{file_id}")
    def thumb(file_id: int) -> Response:
        path = _file_for(index, check_id(file_id), state.db_lock)
        cached = index.path / "thumbs" / f"{file_id}.jpg"
        if not cached.exists():
            try:
                picture = decode_image(path)
            except ImageError as e:
                raise HTTPException(404, f"image {file_id} cannot be read now: {e.reason}") from e
            picture.thumbnail((THUMB_SIZE, THUMB_SIZE))
            buffer = io.BytesIO()
            picture.save(buffer, "JPEG", quality=85)
            private_folder(cached.parent)
            atomic_write(cached, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
        return FileResponse(cached, media_type="image/jpeg")

    return api


def _image_type(path: Path, file_id: int) -> str:
    """The MIME type of the image the file decodes as; 404 when it is not one (whatever its name says)."""
    try:
        with Image.open(path) as picture:
            mime = Image.MIME.get(picture.format or "")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise HTTPException(404, f"image {file_id} cannot be read now") from e
    if mime is None or not mime.startswith("image/") or mime == "image/svg+xml":
        raise HTTPException(404, f"image {file_id} is not served: {mime or 'unknown'} content")
    return mime


def _file_for(index: Index, file_id: int, lock: threading.Lock) -> Path:
    """The file of catalog row `file_id`, if it indexed as an image and its real path is still inside what was
    indexed; else 404."""
    with lock:
        record = index.catalog.by_id(file_id)
        roots = index.real_roots()
    if record is None or record.status != "ok":
        raise HTTPException(404, f"no indexed image has id {file_id}")
    real = os.path.realpath(record.path)
    if not inside(real, roots) or not os.path.isfile(real):
        raise HTTPException(404, f"image {file_id} is no longer inside the indexed folders")
    return Path(real)
