"""What the server's routes share: the library (pictext.server.library), the one model worker behind a bounded
queue, and reading uploads within their limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import HTTPException, UploadFile
from PIL import Image

from pictext.errors import PictextError
from pictext.images.decode import ImageTooLargeError, decode_bytes
from pictext.search.index import MAX_UPLOAD_PIXELS
from pictext.server.library import Library

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PENDING = 256  # model requests running or waiting; more get 503
MAX_PENDING_BYTES = 256 * 1024 * 1024  # uploads held by those requests; more get 503
T = TypeVar("T")


@dataclass
class ServerState:
    library: Library  # what is searched and shown (its own lock guards it)
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    worker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="pictext-model")
    )  # one model request at a time
    pending: list[int] = field(default_factory=lambda: [0, 0])  # requests and upload bytes queued; event loop only

    async def model_work(self, fn: Callable[[], T], upload_bytes: int = 0) -> T:
        """Run `fn` on the model's own worker thread, in arrival order, behind a queue bounded in requests and in
        the upload bytes they hold; waiting requests hold no thread, so light routes keep the shared pool. A user
        error (a bad query, label or picture) becomes 400, a picture over the pixel limit 413."""
        if self.pending[0] >= MAX_PENDING or self.pending[1] + upload_bytes > MAX_PENDING_BYTES:
            raise HTTPException(503, f"busy: {self.pending[0]} requests are waiting for the model; try again shortly",
                                headers={"Retry-After": "2"})  # fmt: skip
        self.pending[0] += 1
        self.pending[1] += upload_bytes
        try:
            return await asyncio.get_running_loop().run_in_executor(self.worker, fn)
        except PictextError as e:
            raise user_error(e) from e
        finally:
            self.pending[0] -= 1
            self.pending[1] -= upload_bytes

    async def read_upload(self, file: UploadFile) -> bytes:
        data = await file.read(self.max_upload_bytes + 1)
        if len(data) > self.max_upload_bytes:
            raise HTTPException(413, f"upload is over the limit of {self.max_upload_bytes} bytes")
        return data


def decode_upload(data: bytes, name: str) -> Image.Image:
    """An uploaded picture, within the server's pixel limit; ImageError (400) or ImageTooLargeError (413)."""
    return decode_bytes(data, name, max_pixels=MAX_UPLOAD_PIXELS)


def user_error(e: PictextError) -> HTTPException:
    return HTTPException(413 if isinstance(e, ImageTooLargeError) else 400, str(e))
