"""A bounded load test of `pictext serve` on 127.0.0.1: mixed requests from 50 and 200 concurrent clients.

The server is the real command (`python -m pictext serve`) in its own process, over an index of 200 shapes
images, with a model of the default model's size and architecture (LiT: the MiniLM text tower, a 48 px ViT;
its image tower untrained, which changes no timing). Each client loops over a fixed mix: text search 40% (80
different queries), more-like-this 20%, thumbnail 30%, zero-shot classify of an upload 10%. Every loop is
bounded by a count of requests per client and by a wall-clock limit, and the whole run stops by itself.

A client that gets 503 (the server's bounded model queue is full) waits for Retry-After and tries again until
the request has taken 60 s, as a polite client with a deadline does; `errors` counts requests that still
failed (any non-2xx, timeout or connection error), and `shed_503` counts the 503 answers. Meanwhile one more
client polls /api/status every 50 ms: its p99 is the latency a light route keeps while model requests queue.

Writes bench/results/serve_load.json (summary keys `errors`, target 0, and `status_p99_ms_under_load`,
target <= 200).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REQUESTS_PER_CLIENT = int(os.environ.get("LOAD_REQUESTS", 20))
TIME_LIMIT_S = float(os.environ.get("LOAD_SECONDS", 120))  # no new request after this; one in flight ends
MIX = [("search", 0.4), ("similar", 0.2), ("thumb", 0.3), ("classify", 0.1)]
COLORS, SHAPES = ("red", "green", "blue", "yellow", "purple"), ("circle", "square", "triangle", "cross")
DEADLINE_S = 60.0  # a client's patience for one request, retries included


def build(folder: Path) -> tuple[Path, Path]:
    """An index of 200 shapes images with a default-size model; returns (index folder, model file)."""
    from PIL import Image  # noqa: F401 - imported for the side effect of failing early without Pillow

    from pictext.clip.io import save_clip
    from pictext.clip.recipe import DEFAULT_RECIPE, build_model
    from pictext.data.shapes import ShapesWorld
    from pictext.search import Index

    world = ShapesWorld(size=64, split="all", max_shapes=2, seed=5, length=200)
    images = folder / "images"
    images.mkdir()
    for i in range(len(world)):
        world[i][0].save(images / f"{i:03d}.png")
    model_file = save_clip(build_model(DEFAULT_RECIPE, world).eval(), folder / "model.safetensors")
    Index(folder / "index", model=model_file).add([images], workers=0)
    return folder / "index", model_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upload() -> bytes:
    from pictext.data.shapes import ShapesWorld

    buffer = io.BytesIO()
    ShapesWorld(size=64, seed=9, length=1)[0][0].save(buffer, "PNG")
    return buffer.getvalue()


async def one(client: httpx.AsyncClient, kind: str, rng: random.Random, ids: list[int], png: bytes) -> httpx.Response:
    if kind == "search":
        query = f"a {rng.choice(['small', 'large'])} {rng.choice(COLORS)} {rng.choice(SHAPES)}"
        if rng.random() < 0.3:
            query = f'"{query}" - {rng.choice(COLORS)}'
        return await client.get("/api/search", params={"q": query, "k": 24})
    if kind == "similar":
        return await client.get(f"/api/similar/{rng.choice(ids)}", params={"k": 24})
    if kind == "thumb":
        return await client.get(f"/api/thumb/{rng.choice(ids)}")
    files = {"file": ("q.png", png, "image/png")}
    return await client.post("/api/classify", files=files, data={"labels": "red circle, blue square, green cross"})


async def client_loop(base: str, seed: int, ids: list[int], png: bytes, deadline: float, out: dict) -> None:
    rng = random.Random(seed)
    kinds, weights = zip(*MIX)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for _ in range(REQUESTS_PER_CLIENT):
            if time.monotonic() > deadline:
                break
            kind = rng.choices(kinds, weights)[0]
            began, status = time.perf_counter(), None
            while True:
                try:
                    response = await one(client, kind, rng, ids, png)
                    status = response.status_code
                except httpx.HTTPError:
                    status = None
                    break
                wait = float(response.headers.get("retry-after", "1")) * (0.5 + rng.random())
                if status != 503 or time.perf_counter() - began + wait > DEADLINE_S:
                    break
                out["shed_503"] += 1
                await asyncio.sleep(wait)
            out["latency"][kind].append(time.perf_counter() - began)
            if status is None or not 200 <= status < 300:
                out["errors"] += 1
                out["error_statuses"].append(status)


async def status_loop(base: str, stop: asyncio.Event, latencies: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while not stop.is_set():
            began = time.perf_counter()
            await client.get("/api/status")
            latencies.append(time.perf_counter() - began)
            await asyncio.sleep(0.05)


async def run(base: str, clients: int, ids: list[int], png: bytes) -> dict:
    out = {"errors": 0, "shed_503": 0, "error_statuses": [], "latency": {k: [] for k, _ in MIX}}
    status: list[float] = []
    stop = asyncio.Event()
    poller = asyncio.create_task(status_loop(base, stop, status))
    deadline = time.monotonic() + TIME_LIMIT_S
    began = time.perf_counter()
    await asyncio.gather(*(client_loop(base, c, ids, png, deadline, out) for c in range(clients)))
    wall = time.perf_counter() - began
    stop.set()
    await poller
    every = [x for xs in out["latency"].values() for x in xs]
    ms = lambda xs, q: round(1000 * float(np.percentile(xs, q)), 1) if xs else None  # noqa: E731
    return {
        "system": "pictext serve",
        "clients": clients,
        "requests": len(every),
        "seconds": round(wall, 1),
        "requests_per_s": round(len(every) / wall, 1),
        "errors": out["errors"],
        "error_statuses": sorted({str(s) for s in out["error_statuses"]}),
        "shed_503": out["shed_503"],
        "p50_ms": ms(every, 50),
        "p99_ms": ms(every, 99),
        **{f"{k}_p50_ms": ms(v, 50) for k, v in out["latency"].items()},
        **{f"{k}_p99_ms": ms(v, 99) for k, v in out["latency"].items()},
        "status_polls": len(status),
        "status_p50_ms": ms(status, 50),
        "status_p99_ms": ms(status, 99),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        index_dir, model_file = build(Path(tmp))
        port = free_port()
        env = {**os.environ, "PICTEXT_HOME": tmp}
        cmd = [sys.executable, "-m", "pictext", "serve", "--index", str(index_dir), "--port", str(port)]
        server = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    status = httpx.get(base + "/api/status", timeout=2).json()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        reason = server.stderr.read() if server.stderr else ""
                        raise SystemExit(f"the server did not start: {reason}") from None
                    time.sleep(0.3)
            from pictext.search import Index

            ids = [r.id for r in Index(index_dir, model=model_file).catalog.records("status = 'ok'")]
            png = upload()
            rows = []
            for clients in (50, 200):
                row = asyncio.run(run(base, clients, ids, png))
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    summary = {
        "errors": sum(r["errors"] for r in rows),
        "status_p99_ms_under_load": max(r["status_p99_ms"] or 0 for r in rows),
        "shed_503": sum(r["shed_503"] for r in rows),
    }
    machine = {"cpu": platform.processor() or platform.machine(), "threads": os.cpu_count(), "images": status["images"]}
    result = {"summary": summary, "rows": rows, "machine": machine}
    (Path(__file__).parent / "results" / "serve_load.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
