"""The search routes: status, search by text or by an uploaded image, and 'more like this'."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.concurrency import run_in_threadpool

from pictext.search.query import QueryError, Weighted, parse_query
from pictext.server.state import ServerState, decode_upload

MAX_QUERY_CHARS = 1000
MAX_TERMS = 16
MAX_ID = 2**63 - 1  # SQLite's largest integer


def router(state: ServerState) -> APIRouter:
    api = APIRouter()
    library = state.library

    def similar_to(item_id: int, k: int) -> dict:
        try:
            found, like = library.similar(item_id, k)
        except QueryError as e:
            raise HTTPException(404, str(e)) from e
        return {"results": found, "like": like}

    @api.get("/api/status")
    def status() -> dict:
        return library.status() | {"busy": state.pending[0]}  # model requests running or waiting

    @api.get("/api/search")
    async def search(q: Annotated[str, Query(description='text, or a mix: "beach" + "sunset" - people')], k: int = 24):
        check_k(k)
        terms = _query_terms(q)
        vector = await state.model_work(lambda: library.query_vector(terms))
        return {"results": await run_in_threadpool(library.search, vector, k)}

    @api.post("/api/search/image")
    async def search_image(file: Annotated[UploadFile, File()], k: Annotated[int, Form()] = 24):
        check_k(k)
        data, name = await state.read_upload(file), file.filename or "upload"
        vector = await state.model_work(lambda: library.query_vector(decode_upload(data, name)), len(data))
        return {"results": await run_in_threadpool(library.search, vector, k)}

    @api.get("/api/similar/{file_id}")
    def similar(file_id: int, k: int = 24) -> dict:
        check_k(k)
        return similar_to(check_id(file_id), k)

    return api


def check_k(k: int) -> None:
    if not 1 <= k <= 1000:
        raise HTTPException(400, f"k must be between 1 and 1000, got {k}")


def check_id(file_id: int) -> int:
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
