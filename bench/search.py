"""Query latency and recall@10 of pictext's exact and faiss search against rclip's approach, at 10k-1M vectors.

rclip scores every vector and sorts all the scores (`np.argsort`); pictext's exact path uses one matrix
product and `argpartition`; above 50k vectors an index uses faiss IVF with nprobe tuned at build time for
recall@10 >= 0.95. Vectors are synthetic, 512-d, normalized; queries are new draws from the same
distribution; one query at a time (as a user searches), 200 queries. Two distributions:

- `structured`: 2,000 clusters in a 64-d subspace plus a little isotropic noise; like real embeddings, whose
  intrinsic dimension is far below 512. The target is judged on this one.
- `isotropic`: 20,000 centres with noise in all 512 dimensions; a worst case for any approximate index
  (neighbours beyond a point's own cluster are barely nearer than the rest).

Writes bench/results/search.json.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from pictext.search.vectors import FaissIVF, top_k

DIM, QUERIES, LATENT = 512, 200, 64
SIZES = [int(a) for a in sys.argv[1:]] or [10_000, 100_000, 1_000_000]


class Distribution:
    def __init__(self, kind: str, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.kind = kind
        if kind == "structured":
            self.basis = np.linalg.qr(rng.normal(size=(DIM, LATENT)))[0].T.astype(np.float32)  # (64, 512)
            self.centres = rng.normal(size=(2000, LATENT)).astype(np.float32) / np.sqrt(LATENT)
        else:
            self.centres = rng.normal(size=(20_000, DIM)).astype(np.float32) / np.sqrt(DIM)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((n, DIM), np.float32)
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            centre = self.centres[rng.integers(0, len(self.centres), m)]
            if self.kind == "structured":
                z = centre + rng.normal(scale=0.6 / np.sqrt(LATENT), size=(m, LATENT))
                x = z @ self.basis + rng.normal(scale=0.15 / np.sqrt(DIM), size=(m, DIM))
            else:
                x = centre + rng.normal(scale=0.9 / np.sqrt(DIM), size=(m, DIM))
            out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


def rclip_search(matrix: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    scores = matrix @ query
    return np.argsort(scores)[::-1][:k]  # rclip: score everything, sort everything


def measure(search, queries: np.ndarray, truth: list[set[int]]) -> dict:
    search(queries[0])  # warm-up
    times, recalls = [], []
    for q, want in zip(queries, truth):
        start = time.perf_counter()
        found = search(q)
        times.append((time.perf_counter() - start) * 1000)
        recalls.append(len(want & set(int(i) for i in found[:10])) / 10)
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p99_ms": round(float(np.percentile(times, 99)), 3),
        "recall_at_10": round(float(np.mean(recalls)), 4),
    }


def run_size(n: int, data: Distribution, rng: np.random.Generator) -> list[dict]:
    matrix = data.draw(n, rng)
    queries = data.draw(QUERIES, rng)
    truth = [set(np.argpartition(-s, 10)[:10].tolist()) for s in queries @ matrix.T]
    start = time.perf_counter()
    ivf = FaissIVF.build(matrix, np.arange(n, dtype=np.int64))
    build_s = time.perf_counter() - start
    systems = {
        "rclip (matmul + full sort)": lambda q: rclip_search(matrix, q, 10),
        "pictext exact (matmul + argpartition)": lambda q: top_k(matrix, q, 10)[0],
        "pictext faiss IVF": lambda q: ivf.search(q, 10)[0],
    }
    rows = []
    for name, search in systems.items():
        row = {"data": data.kind, "system": name, "n": n, **measure(search, queries, truth)}
        if "faiss" in name:
            row |= {"nprobe": ivf.nprobe, "nlist": int(ivf.index.nlist), "build_s": round(build_s, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    rng = np.random.default_rng(0)
    rows = [row for kind in ("structured", "isotropic") for n in SIZES for row in run_size(n, Distribution(kind), rng)]
    summary = {}
    for kind in ("structured", "isotropic"):
        at = {r["system"]: r for r in rows if r["n"] == max(SIZES) and r["data"] == kind}
        faiss_row, rclip = at["pictext faiss IVF"], at["rclip (matmul + full sort)"]
        summary[kind] = {
            "n": max(SIZES),
            "faiss_p50_ms": faiss_row["p50_ms"],
            "faiss_recall_at_10": faiss_row["recall_at_10"],
            "target_met": faiss_row["p50_ms"] <= 10 and faiss_row["recall_at_10"] >= 0.95,
            "faiss_speedup_p50_vs_rclip": round(rclip["p50_ms"] / faiss_row["p50_ms"], 1),
            "exact_speedup_p50_vs_rclip": round(
                rclip["p50_ms"] / at["pictext exact (matmul + argpartition)"]["p50_ms"], 2
            ),
        }
    out = {"machine": platform.processor() or platform.machine(), "dim": DIM, "rows": rows, "summary": summary}
    path = Path(__file__).parent / "results" / "search.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
