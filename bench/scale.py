"""Beyond one machine: `pictext embed` on Ray (one node, two nodes) beside plain `pictext index`, an on-disk index
at millions of vectors, and the on-paper figures at 100 M and 1 B. Writes bench/results/scale.json.

1. Embedding: the same folder of JPEG photos, the same model (the shipped default), in one run:
   `pictext index` (this machine, its DataLoader workers), `pictext embed` here on one CPU (`taskset`, one
   thread, no workers), and `pictext embed --ray` on a local cluster of one node and of two nodes, one CPU each
   (pictext.search.distributed.LocalCluster: separate `ray start` processes on 127.0.0.1). Wall time includes
   Ray's start of the job (actors importing torch and loading the model); `steady` times run from the first
   shard written to the last. `two_node_speedup` is one node's wall time over two nodes'.
2. The index: `--vectors` synthetic clustered unit vectors (the default model's 128 dimensions) in shards of
   500,000, built by `pictext index build` in a subprocess under a `--memory` budget that forces PQ codes and
   inverted lists merged on disk; its build time, peak memory (the subprocess's max RSS, and its peak anonymous
   and file-backed resident memory, sampled), size on disk, query
   p50/p99 (one query at a time, with the exact re-scoring) and recall@10 against exact search.
3. On paper: faiss's memory formulas and the measurements above, at 100 M and 1 B vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
ROOT = HERE.parent
PY = sys.executable

# Published figures the paper rows use (cited in the JSON's notes and in README):
CLIP_RETRIEVAL_B32_IMAGES_PER_S_3080 = 1500  # clip-retrieval README: "1500 sample/s on a 3080" (ViT-B/32)
CLIP_RETRIEVAL_100M_HOURS_3080 = 20  # clip-retrieval README: "100M text+image embeddings ... in 20h using a 3080"
GFLOPS = {"ViT-B/32": 4.41, "ViT-L/14": 81.08}  # image tower GFLOPs at 224 px, open_clip's model profile table


def photos(folder: Path, n: int) -> None:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = Image.fromarray(rng.integers(0, 255, (3, 3, 3), dtype=np.uint8)).resize((256, 256))
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y = (int(v) for v in rng.integers(0, 200, 2))
            draw.ellipse((x, y, x + 50, y + 50), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        image.save(folder / f"{i:06d}.jpg", quality=90)


def timed(command: list[str], env: dict | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{command[:4]} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout


def steady_seconds(out: Path) -> float:
    stamps = sorted(p.stat().st_mtime for p in out.glob("*.parquet"))
    return stamps[-1] - stamps[0]


def vit_b32(path: Path) -> Path:
    """ViT-B/32 with random weights in pictext's format: the encoder, not decoding, takes the time."""
    import torch

    from pictext.clip import CLIP, get_config
    from pictext.clip.io import save_clip
    from pictext.text import ClipBPETokenizer

    torch.manual_seed(0)
    model = CLIP(get_config("ViT-B-32"))
    model.tokenizer = ClipBPETokenizer()
    return save_clip(model, path)


def embedding_rows(n: int, shard_size: int, work: Path, model: str = "default", label: str = "") -> list[dict]:
    from pictext.search.distributed import LocalCluster

    photos(work / "photos", n)
    env = {**os.environ, "PICTEXT_QUIET": "1"}
    one_cpu = {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rows = []
    seconds, _ = timed([PY, "-m", "pictext", "index", str(work / "photos"), "--index", str(work / "index"),
                        "--model", model], env)  # fmt: skip
    rows.append({"system": "pictext index (this machine, 2 cores)", "images": n, "seconds": seconds})
    embed = [PY, "-m", "pictext", "embed", str(work / "photos"), "--shard-size", str(shard_size), "--model", model]
    seconds, _ = timed(["taskset", "-c", "0", *embed, "--out", str(work / "here"), "--workers", "0"], one_cpu)
    rows.append({"system": "pictext embed, here (1 CPU)", "images": n, "seconds": seconds,
                 "steady_seconds": steady_seconds(work / "here")})  # fmt: skip
    for nodes in (1, 2):
        root = Path(tempfile.mkdtemp(prefix="pictext-ray-", dir="/tmp"))
        try:
            with LocalCluster(root, nodes=nodes, cpus=1) as cluster:
                out = work / f"ray{nodes}"
                seconds, _ = timed([*embed, "--out", str(out), "--ray", cluster.address], env)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        rows.append({"system": f"pictext embed --ray, {nodes} node{'s' if nodes > 1 else ''} x 1 CPU", "images": n,
                     "seconds": seconds, "steady_seconds": steady_seconds(out)})  # fmt: skip
    for row in rows:
        row["model"] = label or model
        row["images_per_s"] = row["images"] / row["seconds"]
        if "steady_seconds" in row:
            row["steady_images_per_s"] = (row["images"] - shard_size) / max(row["steady_seconds"], 1e-9)
        print(json.dumps(row), flush=True)
    return rows


def write_vectors(emb: Path, n: int, dim: int, per_shard: int, seed: int = 0) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import write_synthetic  # the tests' writer of synthetic shards

    write_synthetic(emb, n, per_shard, dim=dim, seed=seed)


def sample_memory(every: float = 0.02) -> dict:
    """A dict that a thread keeps updated with this process's peak anonymous and file-backed resident memory
    (/proc/self/status, Linux): file-backed pages (the libraries, memory-mapped shards) are the page cache's,
    which the kernel drops under pressure; anonymous ones are what the process holds."""
    import re
    import threading

    peak = {"peak_anon_bytes": 0, "peak_file_bytes": 0}

    def watch() -> None:
        while True:
            status = Path("/proc/self/status").read_text()
            for key, field in (("peak_anon_bytes", "RssAnon"), ("peak_file_bytes", "RssFile")):
                found = re.search(field + r":\s+(\d+) kB", status)
                peak[key] = max(peak[key], int(found.group(1)) * 1024 if found else 0)
            time.sleep(every)

    threading.Thread(target=watch, daemon=True).start()
    return peak


def index_row(n: int, dim: int, memory: str, work: Path) -> dict:
    emb, big = work / "emb", work / "big"
    start = time.perf_counter()
    write_vectors(emb, n, dim, 500_000)
    written = time.perf_counter() - start
    script = ("import json, resource, sys, time; from pictext.search.ondisk import build, parse_bytes; "
              f"sys.path.insert(0, {str(HERE)!r}); from scale import sample_memory; peak = sample_memory(); "
              "t = time.perf_counter(); "
              f"r = build({str(emb)!r}, {str(big)!r}, parse_bytes({memory!r})); "
              "print(json.dumps({'seconds': time.perf_counter() - t, 'factory': r.factory, 'on_disk': r.on_disk, "
              "'nprobe': r.nprobe, 'recall_at_10': r.recall_at_10, "
              "'peak_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, **peak}))")  # fmt: skip
    _, out = timed([PY, "-c", script], {**os.environ, "PICTEXT_QUIET": "1"})
    built = json.loads(out.strip().splitlines()[-1])
    from pictext.search.ondisk import ShardedIndex

    index = ShardedIndex(big)
    rng = np.random.default_rng(7)
    vectors = [np.load(p, mmap_mode="r") for p in sorted(emb.glob("*.npy"))]
    queries = []
    for _ in range(300):
        shard = vectors[int(rng.integers(len(vectors)))]
        q = np.asarray(shard[int(rng.integers(len(shard)))], np.float32)
        q = q + rng.normal(scale=0.5 / np.sqrt(dim), size=dim).astype(np.float32)
        queries.append(q / np.linalg.norm(q))
    latencies, hits = [], []
    for q in queries:
        t = time.perf_counter()
        hits.append([r.id for r in index.search(q, 10)])
        latencies.append(time.perf_counter() - t)
    exact = index.stored.exact_top(np.stack(queries[:100]), 10)
    recall = float(np.mean([len(set(e.tolist()) & set(h)) / 10 for e, h in zip(exact, hits[:100])]))
    size = sum(f.stat().st_size for f in big.iterdir() if f.is_file())
    row = {"vectors": n, "dim": dim, "memory_budget": memory, "write_shards_seconds": written,
           "build_seconds": built["seconds"], "peak_rss_bytes": built["peak_rss_bytes"],
           "peak_anon_bytes": built["peak_anon_bytes"], "peak_file_bytes": built["peak_file_bytes"],
           "factory": built["factory"],
           "on_disk": built["on_disk"], "nprobe": built["nprobe"], "recall_at_10_at_build": built["recall_at_10"],
           "recall_at_10": recall, "index_bytes_on_disk": size,
           "shard_bytes_on_disk": sum(f.stat().st_size for f in emb.iterdir()),
           "query_p50_ms": 1000 * float(np.percentile(latencies, 50)),
           "query_p99_ms": 1000 * float(np.percentile(latencies, 99))}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def paper_rows(measured: dict) -> list[dict]:
    """100 M and 1 B vectors of ViT-B/32 (512) and ViT-L/14 (768): what each node holds and how long embedding
    takes. Index: IVF with 2^16 lists (2^18 at 1 B), PQ64 codes + 8-byte ids in on-disk lists, centroids in RAM;
    shards: float16 vectors (2 bytes a dimension) + ~100 bytes of table a row. Query latency: the measured
    per-code scan cost times the codes one query scans (nprobe lists of N / nlist codes, nprobe scaled from
    the measured nprobe / nlist), plus the exact re-scoring's reads (10 x refine rows) at an SSD's ~100 us
    each when not cached."""
    rows = []
    ns_per_code = measured["scan_ns_per_code"]
    for n in (100_000_000, 1_000_000_000):
        nlist = 1 << 16 if n <= 100_000_000 else 1 << 18
        for model, dim in (("ViT-B/32", 512), ("ViT-L/14", 768)):
            codes = n * (64 + 8)
            scanned = measured["nprobe_fraction"] * n
            images_per_s = CLIP_RETRIEVAL_B32_IMAGES_PER_S_3080 * GFLOPS["ViT-B/32"] / GFLOPS[model]
            rows.append({
                "vectors": n, "model": model, "dim": dim, "index": f"IVF{nlist},PQ64 (on-disk lists), refine 10",
                "index_disk_gb": codes / 1e9, "index_ram_gb_centroids": nlist * dim * 4 / 1e9,
                "shards_disk_gb": n * (dim * 2 + 100) / 1e9,
                "query_ms_estimate": scanned * 64 / measured["code_bytes"] * ns_per_code / 1e6 + 100 * 0.1,
                "embed_gpu_hours_3080": n / images_per_s / 3600,
                "embed_images_per_s_per_gpu": images_per_s,
            })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--vectors", type=int, default=5_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--memory", default="256MB")
    parser.add_argument("--heavy-images", type=int, default=320, help="images for the ViT-B/32 rows (0: none)")
    parser.add_argument("--skip-embedding", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pictext-scale-"))
    try:
        rows = [] if args.skip_embedding else embedding_rows(args.images, args.shard_size, work / "embedding")
        heavy = []
        if args.heavy_images and not args.skip_embedding:
            model = str(vit_b32(work / "vit-b-32.safetensors"))
            heavy = embedding_rows(args.heavy_images, args.heavy_images // 8, work / "heavy", model, "ViT-B/32")
        index = index_row(args.vectors, args.dim, args.memory, work / "index")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary: dict = {"index_vectors": index["vectors"], "recall_at_10": index["recall_at_10"]}
    out = HERE / "results" / "scale.json"
    kept = {}
    if args.skip_embedding and out.exists():  # the index measured again; the embedding rows of the last full run
        kept = json.loads(out.read_text())
        rows = [r for r in kept["rows"] if "images" in r]
        summary |= {k: v for k, v in kept["summary"].items() if k not in summary}
    for suffix, group in (("", rows), ("_vit_b32", heavy)):
        if not group or kept:
            continue
        by = {r["system"]: r for r in group}
        one, two = by["pictext embed --ray, 1 node x 1 CPU"], by["pictext embed --ray, 2 nodes x 1 CPU"]
        here = by["pictext embed, here (1 CPU)"]
        summary |= {
            f"two_node_speedup{suffix}": one["seconds"] / two["seconds"],
            f"two_node_speedup_steady{suffix}": two["steady_images_per_s"] / one["steady_images_per_s"],
            f"ray_overhead_ms_per_image{suffix}": 1000 * (one["seconds"] - here["seconds"]) / one["images"],
            f"ray_overhead_ms_per_image_steady{suffix}": 1000 * (1 / one["steady_images_per_s"]
                                                                 - 1 / here["steady_images_per_s"]),
        }  # fmt: skip
    rows = rows + heavy
    nlist = int(index["factory"].split(",")[0][3:])
    code_bytes = int(index["factory"].split("PQ")[1]) if "PQ" in index["factory"] else 2 * index["dim"]
    scanned = index["nprobe"] / nlist * index["vectors"]
    measured = {"scan_ns_per_code": 1e6 * index["query_p50_ms"] / max(scanned, 1), "code_bytes": code_bytes,
                "nprobe_fraction": index["nprobe"] / nlist}  # fmt: skip
    result = {
        "benchmark": "scale", "summary": summary, "rows": rows, "index": index, "paper": paper_rows(measured),
        "paper_inputs": measured,
        "notes": ["clip-retrieval README (rom1504/clip-retrieval): 1500 sample/s on a 3080 with ViT-B/32; 100M "
                  "text+image embeddings in 20h on a 3080", "image GFLOPs at 224 px: open_clip's model profile "
                  "(ViT-B-32 4.41, ViT-L-14 81.08); ViT-L/14's images/s scaled from ViT-B/32's by that ratio"],
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024},
    }  # fmt: skip
    result["date"] = time.strftime("%Y-%m-%d")
    result["embedding_date"] = (kept.get("embedding_date") or kept.get("date", "unknown")) if kept else result["date"]
    if kept:
        result["notes"].append(f"embedding rows kept from the run of {result['embedding_date']} (--skip-embedding)")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
