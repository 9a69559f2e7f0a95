"""The server's defences (README, "Security", has the threat model): host names, origins, tokens, body limits and
the headers every response carries. `install` puts them on an app; routes see only requests that passed."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pictext.errors import PictextError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MIN_TOKEN_LENGTH = 16
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


def install(app: FastAPI, token: str | None, allowed_hosts: Collection[str] | None, max_upload_bytes: int) -> None:
    """The body limit, the guard every request passes first, and errors as JSON messages (never a traceback)."""
    app.add_middleware(BodyLimit, limit=max_upload_bytes)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        refusal = _refusal(request, token, allowed_hosts, max_upload_bytes)
        if refusal is not None:
            return _secured(refusal)
        if token is not None and request.url.path == "/" and "token" in request.query_params:
            response = RedirectResponse("/", status_code=303)  # the token leaves the URL and the history
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
            return _secured(response)
        return _secured(await call_next(request))

    @app.exception_handler(StarletteHTTPException)
    async def httperror(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return error(e.status_code, str(e.detail), e.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        return error(422, f"invalid request: {where}")

    @app.exception_handler(Exception)
    async def crash(request: Request, e: Exception) -> JSONResponse:
        return error(500, f"internal error ({e.__class__.__name__}); see the server log")


def _refusal(
    request: Request, token: str | None, allowed_hosts: Collection[str] | None, max_upload_bytes: int
) -> JSONResponse | None:
    """Why this request is refused before any route runs, or None."""
    host = _host_name(request.headers.get("host", ""))
    if allowed_hosts is not None and host not in allowed_hosts:
        return error(421, f"this server answers to {', '.join(allowed_hosts)}; the request was for {host!r}")
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    cross_site = request.headers.get("sec-fetch-site") in ("cross-site", "same-site")
    if (origin is not None and origin != own) or (cross_site and request.url.path != "/"):
        return error(403, "requests from other sites are refused; use the page this server serves")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_upload_bytes:
        return error(413, f"upload is {int(length)} bytes; the limit is {max_upload_bytes}")
    if token is None:
        return None
    if request.url.path == "/" and "token" in request.query_params:
        return None if _same(request.query_params["token"], token) else error(401, "wrong token")
    if "token" in request.query_params:
        return error(400, "send the token in an 'Authorization: Bearer' header, not in the URL")
    header = request.headers.get("authorization")
    presented = [request.cookies[COOKIE]] if COOKIE in request.cookies else []
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            return error(401, "the Authorization header must be 'Bearer <token>'")
        presented.append(value.strip())
    if not presented:
        return error(401, "this server needs its token: an 'Authorization: Bearer' header, or open /?token=...")
    if not all(_same(p, token) for p in presented):
        return error(401, "wrong token")
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


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)
