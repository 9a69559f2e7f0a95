"""The search routes: status, search by text or by an uploaded image, and 'more like this'."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.concurrency import run_in_threadpool

from pictext.search.index import Hit
from pictext.search.query import QueryError, Weighted, parse_query
from pictext.server.state import ServerState, decode_upload

MAX_QUERY_CHARS = 1000
MAX_TERMS = 16
MAX_ID = 2**63 - 1  # SQLite's largest integer


def router(state: ServerState) -> APIRouter:
    api = APIRouter()
    index = state.index

    def ranked(query: np.ndarray | int, k: int) -> dict:
        """Hits for a query vector, or for an indexed file's id ('more like this'), under the catalog lock."""
        with state.db_lock:
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

    @api.get("/api/status")
    def status() -> dict:
        with state.db_lock:
            counts = index.catalog.counts()
            stats = {"images": counts["ok"], "errors": counts["error"], "model": index.model_spec}
        return stats | {"busy": state.pending[0]}  # model requests running or waiting

    @api.get("/api/search")
    async def search(q: Annotated[str, Query(description='text, or a mix: "beach" + "sunset" - people')], k: int = 24):
        check_k(k)
        terms = _query_terms(q)
        vector = await state.model_work(lambda: index.query_vector(terms))
        return await run_in_threadpool(ranked, vector, k)

    @api.post("/api/search/image")
    async def search_image(file: Annotated[UploadFile, File()], k: Annotated[int, Form()] = 24):
        check_k(k)
        data, name = await state.read_upload(file), file.filename or "upload"
        vector = await state.model_work(lambda: index.query_vector(decode_upload(data, name)), len(data))
        return await run_in_threadpool(ranked, vector, k)

    @api.get("/api/similar/{file_id}")
    def similar(file_id: int, k: int = 24) -> dict:
        check_k(k)
        return ranked(check_id(file_id), k)

    return api


def _hit(h: Hit) -> dict:
    return {"id": h.id, "score": round(h.score, 5), "name": Path(h.path).name}


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
