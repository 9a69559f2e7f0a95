"""The files the server hands out: the page and its script and style (a fixed list), and indexed pictures and
their thumbnails by catalog id only, never by a path a client sends."""

from __future__ import annotations

import io
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response
from PIL import Image

from pictext.files import atomic_write
from pictext.images.decode import ImageError, decode_bytes, decode_image
from pictext.search.index import MAX_UPLOAD_PIXELS, private_folder
from pictext.server.library import NotServed, Picture
from pictext.server.routes.search import check_id
from pictext.server.state import ServerState

STATIC = Path(__file__).parent.parent / "static"
STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
THUMB_SIZE = 256


def router(state: ServerState) -> APIRouter:
    api = APIRouter()

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (STATIC / "index.html").read_text(encoding="utf-8")

    @api.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC_TYPES:  # a fixed list: no name a client sends becomes a path
            raise HTTPException(404, f"no static file {name!r}")
        return Response((STATIC / name).read_bytes(), media_type=STATIC_TYPES[name])

    @api.get("/api/image/{file_id}")
    def image(file_id: int) -> Response:
        picture = _picture(state, check_id(file_id))
        if picture.path is not None:
            return FileResponse(picture.path, media_type=_image_type(picture.path, file_id))
        assert picture.data is not None
        return Response(picture.data, media_type=_image_type(io.BytesIO(picture.data), file_id))

    @api.get("/api/thumb/{file_id}")
    def thumb(file_id: int) -> Response:
        picture = _picture(state, check_id(file_id))
        cached = state.library.thumbs / f"{file_id}.jpg"
        if not cached.exists():
            try:
                if picture.path is not None:
                    decoded = decode_image(picture.path)
                else:
                    decoded = decode_bytes(picture.data, f"image {file_id}", max_pixels=MAX_UPLOAD_PIXELS)
            except ImageError as e:
                raise HTTPException(404, f"image {file_id} cannot be read now: {e.reason}") from e
            decoded.thumbnail((THUMB_SIZE, THUMB_SIZE))
            buffer = io.BytesIO()
            decoded.save(buffer, "JPEG", quality=85)
            private_folder(cached.parent)
            atomic_write(cached, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
        return FileResponse(cached, media_type="image/jpeg")

    return api


def _image_type(source: Path | io.BytesIO, file_id: int) -> str:
    """The MIME type of the image the file or bytes decode as; 404 when it is not one (whatever its name says)."""
    try:
        with Image.open(source) as picture:
            mime = Image.MIME.get(picture.format or "")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise HTTPException(404, f"image {file_id} cannot be read now") from e
    if mime is None or not mime.startswith("image/") or mime == "image/svg+xml":
        raise HTTPException(404, f"image {file_id} is not served: {mime or 'unknown'} content")
    return mime


def _picture(state: ServerState, file_id: int) -> Picture:
    try:
        return state.library.picture(file_id)
    except NotServed as e:
        raise HTTPException(404, str(e)) from e
