"""`pictext serve`: a local web app and JSON API over an index (FastAPI; one static page, no build step).

The app is its defences (security.py: host names, origins, tokens, body limits, headers; README's "Security"
has the threat model) around four routers over one shared state (state.py: the library, which puts either kind
of index behind one interface (library.py), and the one model worker behind a bounded queue): search, classify,
files (the page, indexed pictures by id) and generate (every method of pictext.generate, one job at a time).
"""

from __future__ import annotations

from collections.abc import Collection

from fastapi import FastAPI

from pictext.search.index import Index
from pictext.search.ondisk import ShardedIndex
from pictext.server.library import library
from pictext.server.routes import classify, files, generate, search
from pictext.server.routes.generate import Generation
from pictext.server.security import LOCAL_HOSTS, TokenError, check_token, install
from pictext.server.state import MAX_UPLOAD_BYTES, ServerState

__all__ = ["LOCAL_HOSTS", "Generation", "TokenError", "create_app"]


def create_app(
    index: Index | ShardedIndex,
    token: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    allowed_hosts: Collection[str] | None = LOCAL_HOSTS,
    generation: Generation | None = None,
) -> FastAPI:
    """The app over `index` (pictext index's folder, or an index built by pictext index build). allowed_hosts:
    the names the server answers to (None: any, only with a token). generation: what the Generate tab draws with
    (None: the tab says generation is unavailable)."""
    if token is not None:
        token = check_token(token)
    elif allowed_hosts is None:
        raise TokenError("a server that answers to any host name needs a token")
    app = FastAPI(
        title="pictext",
        description="Search images by text and by image; classify zero-shot; draw from text.",
        docs_url=None,  # the docs pages load scripts from a CDN; /openapi.json describes the API offline
        redoc_url=None,
    )
    install(app, token, allowed_hosts, max_upload_bytes)
    state = ServerState(library(index), max_upload_bytes)
    for router in (files.router(state), search.router(state), classify.router(state)):
        app.include_router(router)
    app.include_router(generate.router(state, generation))
    return app
