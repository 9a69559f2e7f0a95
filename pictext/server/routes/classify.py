"""The classify route: an uploaded picture among the labels given, zero-shot, by the index's CLIP."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, UploadFile

from pictext.server.state import ServerState, decode_upload

MAX_LABELS = 64


def router(state: ServerState) -> APIRouter:
    api = APIRouter()
    model = state.library.model  # loaded now, so that no request loads it under the locks

    @api.post("/api/classify")
    async def classify(file: Annotated[UploadFile, File()], labels: Annotated[str, Form()]):
        from pictext.api import classify as zero_shot

        names = [label.strip() for label in labels.split(",")]
        if len(names) > MAX_LABELS:
            raise HTTPException(400, f"{len(names)} labels; at most {MAX_LABELS} at a time")
        data, name = await state.read_upload(file), file.filename or "upload"
        probs = await state.model_work(lambda: zero_shot([decode_upload(data, name)], names, model=model)[0], len(data))
        order = np.argsort(-probs)
        return {"labels": [{"label": names[i], "prob": round(float(probs[i]), 5)} for i in order]}

    return api
