"""`pictext serve`: a local web app and JSON API over an index (FastAPI; one static page, no build step).

Security by default (README, "Security", has the threat model):
- The server binds 127.0.0.1 and answers only to the host names it was started for, so a page elsewhere that
  rebinds its DNS name to 127.0.0.1 gets 421, never data (DNS rebinding).
- Browsers may call the API from the server's own page only: a request whose `Origin` is another site, or
  that a browser marks `Sec-Fetch-Site: cross-site`, gets 403 (cross-site request forgery).
- Any other address needs a token of at least 16 characters. API clients send `Authorization: Bearer T`;
  a browser opens `/?token=T` once and gets it back as an HttpOnly, SameSite=Strict cookie. Compared in
  constant time; a token anywhere else is refused, and every credential presented must be right.
- Files are served by catalog id only, only for rows that indexed as images, only while their real path is
  inside an indexed folder, and with the type of the decoded image (never from a file name). Every response
  carries nosniff, a Content-Security-Policy that allows only the page's own script and style, and a
  same-origin resource policy.
- Uploads are limited in bytes while they stream (chunked bodies too) and in pixels; queries, terms and labels
  are limited in size. Model work runs off the event loop on one worker thread, behind a bounded queue
  (503 when full) whose waiting requests hold no thread, so light routes keep answering. Every error is JSON
  with a message.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import os
import threading
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException

from pictext.errors import PictextError
from pictext.files import atomic_write
from pictext.images.decode import ImageError, decode_bytes, decode_image
from pictext.search.index import MAX_UPLOAD_PIXELS, Hit, Index, private_folder
from pictext.search.query import QueryError, Weighted, parse_query
from pictext.search.scan import inside
from pictext.server.generate import Generator, add_generate_routes

STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
THUMB_SIZE = 256
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MIN_TOKEN_LENGTH = 16
MAX_QUERY_CHARS = 1000
MAX_TERMS = 16
MAX_LABELS = 64
MAX_PENDING = 256  # model requests running or waiting; more get 503
MAX_PENDING_BYTES = 256 * 1024 * 1024  # uploads held by those requests; more get 503
MAX_ID = 2**63 - 1  # SQLite's largest integer
COOKIE = "pictext_token"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Cross-Origin-Resource-Policy": "same-origin",
    "Referrer-Policy": "no-referrer",
}
T = TypeVar("T")


class TokenError(PictextError, ValueError):
    pass


def check_token(token: str) -> str:
    """The token, if it is long enough to resist guessing; TokenError otherwise."""
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(
            f"the token has {len(token)} characters; use at least {MIN_TOKEN_LENGTH} "
            '(for example: python -c "import secrets; print(secrets.token_urlsafe(24))")'
        )
    return token


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes ends in 413 as soon as it streams past the limit,
    whether or not it declared a Content-Length, so nothing larger is ever buffered or spooled to disk."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, f"upload is over the limit of {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


def create_app(
    index: Index,
    token: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    allowed_hosts: Collection[str] | None = LOCAL_HOSTS,
    generator: Generator | None = None,
) -> FastAPI:
    """The app over `index`. allowed_hosts: the names the server answers to (None: any, only with a token).
    generator: the CLIP and VQGAN of the Generate tab (None: the tab says generation is unavailable)."""
    if token is not None:
        token = check_token(token)
    elif allowed_hosts is None:
        raise TokenError("a server that answers to any host name needs a token")
    app = FastAPI(
        title="pictext",
        description="Search images by text and by image; classify zero-shot.",
        docs_url=None,  # the docs pages load scripts from a CDN; /openapi.json describes the API offline
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, limit=max_upload_bytes)
    db_lock = threading.Lock()  # the catalog's SQLite connection and the index's vector cache
    model_worker = ThreadPoolExecutor(1, thread_name_prefix="pictext-model")  # one model request at a time
    pending = [0, 0]  # model requests running or waiting, and their upload bytes; used on the event loop only
    model = index.model  # loaded now, so that no request loads it under the locks

    @app.middleware("http")
    async def guard(request: Request, call_next):  # noqa: ANN001, ANN202 - Starlette's signature
        refusal = _refusal(request, token, allowed_hosts, max_upload_bytes)
        if refusal is not None:
            return _secured(refusal)
        if token is not None and request.url.path == "/" and "token" in request.query_params:
            response = RedirectResponse("/", status_code=303)  # the token leaves the URL and the history
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
            return _secured(response)
        return _secured(await call_next(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail), e.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        return _error(422, f"invalid request: {where}")

    @app.exception_handler(Exception)
    async def crash(request: Request, e: Exception) -> JSONResponse:
        return _error(500, f"internal error ({e.__class__.__name__}); see the server log")

    async def model_work(fn: Callable[[], T], upload_bytes: int = 0) -> T:
        """Run `fn` on the model's own worker thread, in arrival order, behind a queue bounded in requests and in
        the upload bytes they hold; waiting requests hold no thread, so light routes keep the shared pool.
        QueryError and ValueError (bad labels, say) become 400."""
        if pending[0] >= MAX_PENDING or pending[1] + upload_bytes > MAX_PENDING_BYTES:
            raise HTTPException(
                503,
                f"busy: {pending[0]} requests are waiting for the model; try again shortly",
                headers={"Retry-After": "2"},
            )
        pending[0] += 1
        pending[1] += upload_bytes
        try:
            return await asyncio.get_running_loop().run_in_executor(model_worker, fn)
        except ValueError as e:  # QueryError, ImageError and label errors are ValueErrors
            raise HTTPException(413 if "over the limit" in str(e) else 400, str(e)) from e
        finally:
            pending[0] -= 1
            pending[1] -= upload_bytes

    def ranked(query: np.ndarray | int, k: int) -> dict:
        """Hits for a query vector, or for an indexed file's id ('more like this'), under the catalog lock."""
        with db_lock:
            if isinstance(query, np.ndarray):
                found = index.search(query, k)
                return {"results": [_hit(h) for h in found]}
            record = index.catalog.by_id(query)
            try:
                found = index.similar(query, k)
            except QueryError as e:
                raise HTTPException(404, str(e)) from e
        assert record is not None
        return {"results": [_hit(h) for h in found], "like": {"id": record.id, "name": Path(record.path).name}}

    async def read_upload(file: UploadFile) -> bytes:
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload is over the limit of {max_upload_bytes} bytes")
        return data

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (STATIC / "index.html").read_text()

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC_TYPES:  # a fixed list: no name a client sends becomes a path
            raise HTTPException(404, f"no static file {name!r}")
        return Response((STATIC / name).read_bytes(), media_type=STATIC_TYPES[name])

    @app.get("/api/status")
    def status() -> dict:
        with db_lock:
            counts = index.catalog.counts()
            stats = {"images": counts["ok"], "errors": counts["error"], "model": index.model_spec}
        return stats | {"busy": pending[0]}  # model requests running or waiting

    @app.get("/api/search")
    async def search(q: Annotated[str, Query(description='text, or a mix: "beach" + "sunset" - people')], k: int = 24):
        _check_k(k)
        terms = _query_terms(q)
        vector = await model_work(lambda: index.query_vector(terms))
        return await run_in_threadpool(ranked, vector, k)

    @app.post("/api/search/image")
    async def search_image(file: Annotated[UploadFile, File()], k: Annotated[int, Form()] = 24):
        _check_k(k)
        data, name = await read_upload(file), file.filename or "upload"
        vector = await model_work(lambda: index.query_vector(_decode(data, name)), len(data))
        return await run_in_threadpool(ranked, vector, k)

    @app.get("/api/similar/{file_id}")
    def similar(file_id: int, k: int = 24) -> dict:
        _check_k(k)
        return ranked(_check_id(file_id), k)

    @app.post("/api/classify")
    async def classify(file: Annotated[UploadFile, File()], labels: Annotated[str, Form()]):
        from pictext.api import classify as zero_shot

        names = [label.strip() for label in labels.split(",")]
        if len(names) > MAX_LABELS:
            raise HTTPException(400, f"{len(names)} labels; at most {MAX_LABELS} at a time")
        data, name = await read_upload(file), file.filename or "upload"
        probs = await model_work(lambda: zero_shot([_decode(data, name)], names, model=model)[0], len(data))
        order = np.argsort(-probs)
        return {"labels": [{"label": names[i], "prob": round(float(probs[i]), 5)} for i in order]}

    @app.get("/api/image/{file_id}")
    def image(file_id: int) -> FileResponse:
        path = _file_for(index, _check_id(file_id), db_lock)
        return FileResponse(path, media_type=_image_type(path, file_id))

    @app.get("/api/thumb/{file_id}")
    def thumb(file_id: int) -> Response:
        path = _file_for(index, _check_id(file_id), db_lock)
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

    add_generate_routes(app, generator, read_upload, _decode)
    return app


def _refusal(
    request: Request, token: str | None, allowed_hosts: Collection[str] | None, max_upload_bytes: int
) -> JSONResponse | None:
    """Why this request is refused before any route runs, or None."""
    host = _host_name(request.headers.get("host", ""))
    if allowed_hosts is not None and host not in allowed_hosts:
        return _error(421, f"this server answers to {', '.join(allowed_hosts)}; the request was for {host!r}")
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    cross_site = request.headers.get("sec-fetch-site") in ("cross-site", "same-site")
    if (origin is not None and origin != own) or (cross_site and request.url.path != "/"):
        return _error(403, "requests from other sites are refused; use the page this server serves")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_upload_bytes:
        return _error(413, f"upload is {int(length)} bytes; the limit is {max_upload_bytes}")
    if token is None:
        return None
    if request.url.path == "/" and "token" in request.query_params:
        return None if _same(request.query_params["token"], token) else _error(401, "wrong token")
    if "token" in request.query_params:
        return _error(400, "send the token in an 'Authorization: Bearer' header, not in the URL")
    header = request.headers.get("authorization")
    presented = [request.cookies[COOKIE]] if COOKIE in request.cookies else []
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            return _error(401, "the Authorization header must be 'Bearer <token>'")
        presented.append(value.strip())
    if not presented:
        return _error(401, "this server needs its token: an 'Authorization: Bearer' header, or open /?token=...")
    if not all(_same(p, token) for p in presented):
        return _error(401, "wrong token")
    return None


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())  # constant time in the token's content


def _host_name(header: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1', lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _hit(h: Hit) -> dict:
    return {"id": h.id, "score": round(h.score, 5), "name": Path(h.path).name}


def _check_k(k: int) -> None:
    if not 1 <= k <= 1000:
        raise HTTPException(400, f"k must be between 1 and 1000, got {k}")


def _check_id(file_id: int) -> int:
    if not 0 <= file_id <= MAX_ID:
        raise HTTPException(404, f"no indexed image has id {file_id}")
    return file_id


def _query_terms(q: str) -> list[Weighted]:
    if len(q) > MAX_QUERY_CHARS:
        raise HTTPException(400, f"the query has {len(q)} characters; at most {MAX_QUERY_CHARS}")
    try:
        terms = parse_query(q)
    except QueryError as e:
        raise HTTPException(400, str(e)) from e
    if len(terms) > MAX_TERMS:
        raise HTTPException(400, f"the query has {len(terms)} terms; at most {MAX_TERMS}")
    return terms


def _decode(data: bytes, name: str) -> Image.Image:
    return decode_bytes(data, name, max_pixels=MAX_UPLOAD_PIXELS)  # ImageError (a ValueError) -> 400/413


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
