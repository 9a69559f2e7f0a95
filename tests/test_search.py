"""The image index: incremental updates, crash safety, query semantics, faiss, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pictext.cli import main
from pictext.clip.io import load_clip
from pictext.search import Index, QueryError, SearchIndexError, Weighted, parse_terms
from pictext.search.index import scan
from pictext.search.vectors import FaissIVF, StaleIndexError, top_k

from helpers import shape_image, stub_gallery, unit, wait_for_hang, wait_until, write_gallery


def paths_in(index: Index) -> set[str]:
    return {r.path for r in index.catalog.records()}


def test_incremental_index_follows_adds_edits_renames_and_deletes(tmp_path, tiny_model_path):
    photos = tmp_path / "photos"
    write_gallery(photos / "a")
    index = Index(tmp_path / "index", model=tiny_model_path)
    first = index.add([photos])
    assert (first.embedded, first.unchanged, len(first.errors)) == (40, 0, 0)
    assert len(index) == 40

    again = index.add([photos])
    assert (again.embedded, again.reused, again.unchanged, again.removed) == (0, 0, 40, 0)

    rows = {r.path: r.row for r in index.catalog.records()}
    renamed_from, renamed_to = photos / "a" / "red-circle-large-0.png", photos / "a" / "moved.png"
    os.rename(renamed_from, renamed_to)
    (photos / "a" / "blue-square-small-0.png").unlink()
    edited = photos / "a" / "green-cross-large-0.png"
    shape_image("purple", "triangle").save(edited)
    os.utime(edited, ns=(1, 1))  # a new mtime whatever the clock's resolution
    shape_image("yellow", "circle").save(photos / "a" / "new.png")
    (photos / "a" / "notes.txt").write_text("not an image, not scanned")
    (photos / "a" / "fake.jpg").write_text("not an image either, but named like one")
    report = index.add([photos])

    assert (report.embedded, report.reused, report.removed) == (2, 1, 1)  # edited + new; the rename; the deletion
    assert [p for p, _ in report.errors] == [str(photos / "a" / "fake.jpg")]
    expected = {str(photos / "a" / p.name) for p in (photos / "a").iterdir() if p.suffix != ".txt"}
    assert paths_in(index) == expected
    records = {r.path: r for r in index.catalog.records()}
    assert records[str(renamed_to)].row == rows[str(renamed_from)]  # the rename kept its vector
    assert records[str(edited)].row != rows[str(edited)]  # the edit got a new one
    assert records[str(photos / "a" / "fake.jpg")].status == "error"
    assert "not a readable image" in records[str(photos / "a" / "fake.jpg")].error
    assert len(index) == 40

    same = index.add([photos])  # the broken file is not retried until it changes, but it is still reported
    assert (same.embedded, same.reused, same.removed, len(same.errors)) == (0, 0, 0, 0)
    assert [p for p, _ in same.failing] == [str(photos / "a" / "fake.jpg")] and "1 earlier errors" in str(same)


def test_copies_reuse_vectors_and_searches_agree_with_a_fresh_index(tmp_path, tiny_model_path):
    photos = tmp_path / "photos"
    write_gallery(photos)
    shutil.copy(photos / "red-circle-large-0.png", photos / "copy.png")
    index = Index(tmp_path / "index", model=tiny_model_path)
    index.add([photos])
    fresh = Index(tmp_path / "fresh", model=tiny_model_path)
    fresh.add([photos], workers=0, batch_size=7)
    for query in ("a red circle", ["blue", (-0.5, "square")]):
        a = [(h.path, round(h.score, 4)) for h in index.search(query, k=10)]
        b = [(h.path, round(h.score, 4)) for h in fresh.search(query, k=10)]
        assert a == b


def test_index_refuses_another_model(tmp_path, tiny_model_path, other_model_path):
    photos = tmp_path / "photos"
    write_gallery(photos)
    Index(tmp_path / "index", model=tiny_model_path).add([photos])
    with pytest.raises(SearchIndexError, match="another model"):
        Index(tmp_path / "index", model=load_clip(other_model_path))
    assert main(["search", "red", "--index", str(tmp_path / "index"), "--model", str(other_model_path)]) == 2
    assert len(Index(tmp_path / "index", model=tiny_model_path)) == 40  # nothing lost


def test_scan_skips_hidden_excluded_and_outside_symlinks_and_ends_on_loops(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    for p in (root / "a.png", root / "sub" / "b.jpg", root / ".hidden.png", outside / "secret.png"):
        Image.new("RGB", (8, 8)).save(p)
    (root / ".cache").mkdir()
    Image.new("RGB", (8, 8)).save(root / ".cache" / "c.png")
    (root / "node_modules").mkdir()
    Image.new("RGB", (8, 8)).save(root / "node_modules" / "d.png")
    os.symlink(root, root / "sub" / "loop")  # a loop back to the root
    os.symlink(outside / "secret.png", root / "link-out.png")
    os.symlink(outside, root / "dir-out")
    os.symlink(root / "a.png", root / "sub" / "alias.png")  # inside: followed
    found = scan([root])
    assert sorted(os.path.relpath(p, root) for p in found) == ["a.png", "sub/alias.png", "sub/b.jpg"]


def test_a_folder_that_disappears_mid_run_loses_nothing(tmp_path, tiny_model_path, monkeypatch):
    photos = tmp_path / "photos"
    write_gallery(photos / "keep")
    write_gallery(photos / "vanish")
    index = Index(tmp_path / "index", model=tiny_model_path)
    index.add([photos / "keep"])
    real_scan = scan

    def scan_then_vanish(roots, exclude, skip):
        found = real_scan(roots, exclude, skip)
        shutil.rmtree(photos / "vanish")
        return found

    monkeypatch.setattr("pictext.search.index.scan", scan_then_vanish)
    report = index.add([photos])
    assert report.vanished == 40 and not report.errors and report.removed == 0
    assert len(index) == 40 and all("/keep/" in p for p in paths_in(index))
    monkeypatch.undo()
    assert index.add([photos]).removed == 0  # the folder stays a root; nothing under it is left to remove


CRASH_SCRIPT = """
import sys, time
from pathlib import Path
from pictext.search import Index
from pictext.search.vectors import VectorFile

append, calls = VectorFile.append, []

def append_then_hang(self, vectors):
    start = append(self, vectors)
    calls.append(start)
    if len(calls) == 3:  # this batch's vectors are fsynced, its rows not committed: the window a kill must survive
        Path(sys.argv[4]).touch()
        time.sleep(600)
    return start

VectorFile.append = append_then_hang
Index(sys.argv[1], model=sys.argv[2]).add([sys.argv[3]], batch_size=4, workers=0)
"""


@pytest.mark.slow
def test_sigkill_mid_run_then_restart_ends_complete(tmp_path, tiny_model_path):
    photos = tmp_path / "photos"
    truth = write_gallery(photos, n_per_combo=3)  # 120 images, 30 batches
    index_dir, hanging = tmp_path / "index", tmp_path / "hanging"
    args = [sys.executable, "-c", CRASH_SCRIPT, str(index_dir), str(tiny_model_path), str(photos), str(hanging)]
    proc = subprocess.Popen(args, env={**os.environ, "PICTEXT_QUIET": "1"})
    try:
        wait_for_hang(proc, hanging, 120, "the indexer to reach its third batch")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with sqlite3.connect(index_dir / "catalog.sqlite") as db:
        committed = db.execute("SELECT count(*) FROM files").fetchone()[0]
    assert committed == 8  # two batches of 4 committed; the third's vectors on disk without rows

    index = Index(index_dir, model=tiny_model_path)
    report = index.add([photos])
    assert report.embedded + report.unchanged == len(truth)
    assert paths_in(index) == set(truth)
    assert len(index.catalog.records()) == len(truth)
    rows = [r.row for r in index.catalog.records()]
    assert len(set(rows)) == len(rows) and max(rows) < len(index.vectors)
    fresh = Index(tmp_path / "fresh", model=tiny_model_path)
    fresh.add([photos], workers=0)
    for path, row in ((r.path, r.row) for r in index.catalog.records()):
        want = fresh.vectors.read([fresh.catalog.at(path)[path].row])
        np.testing.assert_allclose(index.vectors.read([row]), want, atol=1e-3)


def test_weighted_queries_mean_what_they_say(tmp_path, tiny_model_path):
    """Scores follow from the weights exactly: the stub embeds each image as the sum of its colour, shape and
    size axes, and a text as the sum of its words' axes (see helpers.StubCLIP)."""
    stub, truth = stub_gallery(tmp_path / "gallery", load_clip(tiny_model_path), n_per_combo=3)
    index = Index(tmp_path / "index", model=stub)
    index.add([tmp_path / "gallery"])

    def top(query, k):
        hits = index.search(query, k=k)
        return [truth[h.path] for h in hits], [h.score for h in hits]

    found, scores = top(["red", "circle", (-1.0, "small")], k=4)
    # red+circle-small against red,circle,large: 2/sqrt(3)/sqrt(3); the runners-up share two of three words
    assert set(found[:3]) == {("red", "circle", "large")} and found[3] != ("red", "circle", "large")
    assert scores[0] == pytest.approx(2 / 3, abs=1e-3) and scores[3] == pytest.approx(1 / 3, abs=1e-3)
    found, _ = top(["blue", "square", (-1.0, "large")], k=3)
    assert set(found) == {("blue", "square", "small")}
    found, _ = top(["a purple cross", (-1.0, "large")], k=3)
    assert set(found) == {("purple", "cross", "small")}
    found, _ = top("a green triangle", k=6)
    assert {t[:2] for t in found} == {("green", "triangle")}
    query = shape_image("yellow", "cross", "large", "left")
    stub.register(query, ("yellow", "cross", "large"))
    found, scores = top(query, k=3)
    assert set(found) == {("yellow", "cross", "large")} and scores[0] == pytest.approx(1.0, abs=1e-3)
    found, _ = top([query, (-1.0, "large"), "small"], k=3)  # an image and text terms mixed
    assert set(found) == {("yellow", "cross", "small")}

    # the arithmetic itself: a weighted sum of normalized embeddings, renormalized
    red, circle = stub.embed_words(["red"]).numpy(), stub.embed_words(["circle"]).numpy()
    got = index.query_vector([Weighted(2, "red"), Weighted(-0.5, "circle")])
    np.testing.assert_allclose(got, unit(2 * red - 0.5 * circle), atol=1e-6)
    assert parse_terms(["2:red", "-", "0.5:circle"]) == [Weighted(2.0, "red"), Weighted(-0.5, "circle")]


def test_query_parsing_errors():
    assert parse_terms(["a", "dog", "+", "beach"]) == [Weighted(1.0, "a dog"), Weighted(1.0, "beach")]
    for bad in ([], [""], ["+", "a"], ["a", "-"], ["2:"]):
        with pytest.raises(QueryError):
            parse_terms(bad)


def clustered(n: int, dim: int = 64, clusters: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    x = centers[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_faiss_ivf_meets_its_recall_and_updates_exactly(tmp_path):
    x, queries = np.split(clustered(6100), [6000])  # queries: new points from the same distribution
    ids = np.arange(100, 6100)
    ivf = FaissIVF.build(x, ids, target_recall=0.95)
    exact = [set(ids[top_k(x, q, 10)[0]]) for q in queries]
    recall = np.mean([len(e & set(ivf.search(q, 10)[0])) / 10 for e, q in zip(exact, queries)])
    assert recall >= 0.9, f"recall@10 {recall:.3f} on fresh queries"
    assert ivf.recall_at_10 >= 0.95

    keep = ids % 3 != 0
    ivf.update(x[keep], ids[keep])
    assert ivf.index.ntotal == keep.sum()
    ivf.update(x, ids)
    assert ivf.index.ntotal == len(ids)
    ivf.save(tmp_path / "f.index")
    back = FaissIVF.load(tmp_path / "f.index")
    assert (back.nprobe, back.index.ntotal) == (ivf.nprobe, len(ids))
    ivf.ids = ids[:10]  # an index and a sidecar that disagree, as a crash between the two writes would leave
    ivf.save(tmp_path / "g.index")
    with pytest.raises(StaleIndexError):
        FaissIVF.load(tmp_path / "g.index")


def test_a_synced_index_answers_through_faiss_and_drops_rows_no_longer_live(tmp_path, tiny_model_path, monkeypatch):
    """The wiring between the index and faiss: ids map back to the right files, and a row deleted since the sync
    is never returned. Probing every list makes faiss exact, so its answers must be exact search's (the recall of
    a partial probe is tested on 6,000 vectors above)."""
    write_gallery(tmp_path / "g", n_per_combo=3)
    index = Index(tmp_path / "index", model=tiny_model_path)
    index.add([tmp_path / "g"])
    exact = index.search("red", k=6, exact=True)
    ivf = index.sync_faiss(force=True)
    assert ivf is not None and ivf.recall_at_10 >= 0.95
    ivf.nprobe = ivf.index.nlist
    ivf.save(index.path / "faiss.index")
    asked, real_search = [], FaissIVF.search
    monkeypatch.setattr(FaissIVF, "search", lambda self, q, k: asked.append(k) or real_search(self, q, k))
    same = index.search("red", k=6)
    assert asked, "the exact scan answered, not faiss"
    assert [(h.id, h.path) for h in same] == [(h.id, h.path) for h in exact]
    assert [h.score for h in same] == pytest.approx([h.score for h in exact], abs=1e-5)
    with index.catalog.transaction():
        index.catalog.delete([exact[0].id])
    index._bump()
    after = index.search("red", k=5)  # faiss still holds the deleted row; the index filters it out
    assert asked[-1] > 5 and [h.id for h in after] == [h.id for h in exact[1:]]


def test_cli_index_search_dupes(tmp_path, tiny_model_path, capsys):
    write_gallery(tmp_path / "g")
    shutil.copy(tmp_path / "g" / "red-circle-large-0.png", tmp_path / "g" / "zz-copy.png")
    common = ["--index", str(tmp_path / "index"), "--model", str(tiny_model_path)]
    assert main(["index", str(tmp_path / "g"), *common]) == 0
    assert "41 embedded" in capsys.readouterr().out
    assert main(["search", "red", "+", "circle", "-k", "3", "--json", "--index", str(tmp_path / "index")]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 3 and results[0]["score"] >= results[2]["score"]
    query = tmp_path / "g" / "blue-cross-small-0.png"
    assert main(["search", "--image", str(query), "-k", "1", "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["path"] == str(query)
    assert main(["index", "--faiss", *common]) == 0  # no folders: re-scan the known ones
    out = capsys.readouterr().out
    assert "0 embedded" in out and "recall@10 vs exact" in out
    assert main(["dupes", "--threshold", "0.9999", "--json", *common]) == 0
    groups = json.loads(capsys.readouterr().out)
    assert any({os.path.basename(h["path"]) for h in g} >= {"red-circle-large-0.png", "zz-copy.png"} for g in groups)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search"], "query is empty"),
        (["search", "a", "-"], "ends with an operator"),
        (["search", "--image", "missing.jpg"], "missing.jpg: no such file"),
        (["index", "no/such/folder"], "no/such/folder: no such file or folder"),
        (["search", "--image", "{notimage}"], "not a readable image"),
    ],
)
def test_cli_bad_input_is_a_clear_error(tmp_path, tiny_model_path, capsys, argv, message):
    write_gallery(tmp_path / "g")
    common = ["--index", str(tmp_path / "index"), "--model", str(tiny_model_path)]
    assert main(["index", str(tmp_path / "g"), *common]) == 0
    (tmp_path / "text.jpg").write_text("hello")
    argv = [a.replace("{notimage}", str(tmp_path / "text.jpg")) for a in argv]
    assert main([*argv, *common]) == 2
    assert message in capsys.readouterr().err
    assert len(Index(tmp_path / "index", model=tiny_model_path)) == 40


def test_bad_files_are_recorded_with_reasons_and_the_run_goes_on(tmp_path, tiny_model_path):
    photos = tmp_path / "photos"
    write_gallery(photos)
    good = (photos / "red-circle-large-0.png").read_bytes()
    (photos / "truncated.png").write_bytes(good[: len(good) // 2])
    (photos / "empty.jpg").write_bytes(b"")
    Image.new("1", (10_001, 10_001)).save(photos / "huge.png")  # 100 Mpixel in a few kB: refused before decoding
    (photos / "text.webp").write_text("plain text with an image extension")
    report = Index(tmp_path / "index", model=tiny_model_path).add([photos])
    reasons = {os.path.basename(p): r for p, r in report.errors}
    assert report.embedded == 40 and set(reasons) == {"truncated.png", "empty.jpg", "huge.png", "text.webp"}
    assert "truncated" in reasons["truncated.png"] and "empty" in reasons["empty.jpg"]
    assert "over the limit" in reasons["huge.png"] and "not a readable image" in reasons["text.webp"]


def test_searching_where_there_is_no_index_says_so(tmp_path, capsys):
    assert main(["search", "red", "--index", str(tmp_path / "nowhere")]) == 2
    assert "no index at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


# ---- reliability: concurrent writers, odd names, damaged files, leftovers -----------------------------------------


@pytest.mark.slow
def test_a_second_writer_is_refused_while_readers_keep_working(tmp_path, tiny_model_path, capsys):
    photos = tmp_path / "photos"
    truth = write_gallery(photos, n_per_combo=3)
    index_dir, hanging = tmp_path / "index", tmp_path / "hanging"
    args = [sys.executable, "-c", CRASH_SCRIPT, str(index_dir), str(tiny_model_path), str(photos), str(hanging)]
    writer = subprocess.Popen(args, env={**os.environ, "PICTEXT_QUIET": "1"})
    try:
        wait_for_hang(writer, hanging, 120, "the first writer to be mid-run")
        common = ["--index", str(index_dir), "--model", str(tiny_model_path)]
        second = subprocess.run(
            [sys.executable, "-m", "pictext", "index", str(photos), *common], capture_output=True, text=True
        )
        assert second.returncode == 2 and "another process is adding" in second.stderr
        assert main(["search", "red", "--json", *common]) == 0  # a reader is not blocked by the writer
        assert len(json.loads(capsys.readouterr().out)["results"]) == 8
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    index = Index(index_dir, model=tiny_model_path)
    index.add([photos])  # the lock died with its holder
    rows = [r.row for r in index.catalog.records()]
    assert len(rows) == len(truth) and len(set(rows)) == len(rows)


# Runs `pictext index` on a new folder each round, started by the test at the same instant in two processes
RACER = """
import contextlib, io, sys, time
from pathlib import Path
from pictext.cli import main
photos, model, work, me, rounds = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])
for r in range(rounds):
    (work / f"ready-{r}-{me}").touch()
    while not (work / f"go-{r}").exists():
        time.sleep(0.001)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["index", photos, "--index", str(work / f"index-{r}"), "--model", model])
    (work / f"done-{r}-{me}").write_text(f"{code}\\n{err.getvalue()}")
"""


@pytest.mark.slow
def test_two_first_runs_together_leave_one_intact_index(tmp_path, tiny_model_path):
    photos, work, rounds = tmp_path / "photos", tmp_path / "work", 12
    truth = write_gallery(photos)
    work.mkdir()
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(photos), str(tiny_model_path), str(work), me, str(rounds)],
            env={**os.environ, "PICTEXT_QUIET": "1"},
        )  # fmt: skip
        for me in "ab"
    ]

    def both(step: str, r: int) -> bool:
        assert all(racer.poll() is None for racer in racers), f"round {r}: a run died with a traceback"
        return all((work / f"{step}-{r}-{me}").exists() for me in "ab")

    try:
        for r in range(rounds):
            wait_until(lambda r=r: both("ready", r), 120, "both racers")
            (work / f"go-{r}").touch()
            wait_until(lambda r=r: both("done", r), 120, "both runs")
            outcomes = [(work / f"done-{r}-{me}").read_text().split("\n", 1) for me in "ab"]
            for code, err in outcomes:  # each run indexed everything, or was refused by the lock and said so
                assert code == "0" or (code == "2" and "another process is adding" in err), (r, code, err)
            assert "0" in [code for code, _ in outcomes], (r, outcomes)
            index = Index(work / f"index-{r}", create=False, model=tiny_model_path)
            assert len(index) == len(truth), (r, outcomes)  # the winner's index is whole
            index.close()
    finally:
        for racer in racers:
            racer.kill()
            racer.wait()


def test_a_name_that_is_not_utf8_is_skipped_by_name_and_the_run_goes_on(tmp_path, tiny_model_path, capsys):
    photos = tmp_path / "photos"
    write_gallery(photos)
    bad = os.path.join(os.fsencode(photos), b"caf\xe9-\xff.png")  # Latin-1 bytes from an old camera or disk
    shape_image("red", "circle").save(os.fsdecode(bad))
    common = ["--index", str(tmp_path / "index"), "--model", str(tiny_model_path)]
    assert main(["index", str(photos), *common]) == 1
    captured = capsys.readouterr()
    assert "40 embedded" in captured.out and "caf\\xe9-\\xff.png" in captured.err and "not valid UTF-8" in captured.err
    index = Index(tmp_path / "index", model=tiny_model_path)
    before = len(index.vectors)
    assert main(["index", *common]) == 1  # again: still named, still no orphan vectors
    assert len(index.vectors) == before == 40 and len(index) == 40


def test_damaged_vectors_are_detected_and_rebuilt_keeping_what_is_intact(tmp_path, tiny_model_path, capsys):
    photos = tmp_path / "photos"
    truth = write_gallery(photos)
    common = ["--index", str(tmp_path / "index"), "--model", str(tiny_model_path)]
    assert main(["index", str(photos), *common]) == 0
    vectors = tmp_path / "index" / "vectors.f16"
    keep = 10 * (vectors.stat().st_size // 40)
    vectors.write_bytes(vectors.read_bytes()[: keep + 7])  # truncated mid-row, after 10 whole rows
    capsys.readouterr()
    assert main(["search", "red", *common]) == 2
    assert "holds 10 vectors but the catalog needs 40" in capsys.readouterr().err
    assert main(["index", str(photos), *common]) == 2  # adding to it is refused too, with the same advice
    assert "--rebuild" in capsys.readouterr().err
    assert main(["index", "--rebuild", *common]) == 0
    out = capsys.readouterr().out
    assert "kept 10 vectors; 30 files lost theirs" in out and "30 embedded" in out
    index = Index(tmp_path / "index", model=tiny_model_path)
    assert len(index) == 40 and len(index.search("red", k=40)) == 40
    fresh = Index(tmp_path / "fresh", model=tiny_model_path)
    fresh.add([photos], workers=0)
    for path in truth:
        mine, theirs = index.catalog.at(path)[path].row, fresh.catalog.at(path)[path].row
        np.testing.assert_allclose(index.vectors.read([mine]), fresh.vectors.read([theirs]), atol=1e-3)

    vectors.unlink()  # deleted outright
    assert main(["search", "red", *common]) == 2 and "is missing" in capsys.readouterr().err
    assert main(["index", "--rebuild", *common]) == 0 and "40 embedded" in capsys.readouterr().out


def test_a_garbage_catalog_is_named_and_rebuilt(tmp_path, tiny_model_path, capsys):
    photos = tmp_path / "photos"
    write_gallery(photos)
    common = ["--index", str(tmp_path / "index"), "--model", str(tiny_model_path)]
    assert main(["index", str(photos), *common]) == 0
    for name in ("catalog.sqlite-wal", "catalog.sqlite-shm"):
        (tmp_path / "index" / name).unlink(missing_ok=True)
    (tmp_path / "index" / "catalog.sqlite").write_bytes(os.urandom(8192))
    capsys.readouterr()
    assert main(["search", "red", *common]) == 2
    assert "not a readable catalog" in capsys.readouterr().err
    assert main(["index", "--rebuild", str(photos), *common]) == 0
    assert "catalog.sqlite.broken" in capsys.readouterr().out
    assert len(Index(tmp_path / "index", model=tiny_model_path)) == 40


def test_leftovers_thumbnails_own_folder_and_failed_runs(tmp_path, tiny_model_path, capsys):
    photos = tmp_path / "photos"
    write_gallery(photos)
    index = Index(photos / "my-index", model=tiny_model_path)  # an index inside the folder it indexes
    index.add([photos])
    thumbs = index.path / "thumbs"
    thumbs.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shape_image("red", "circle").save(thumbs / name)  # would be indexed if the scan entered the index
    records = {r.path: r.id for r in index.catalog.records()}
    gone, kept = records[str(photos / "red-circle-large-0.png")], records[str(photos / "blue-cross-small-0.png")]
    for file_id in (gone, kept):
        shape_image("red", "circle").save(thumbs / f"{file_id}.jpg")
    (photos / "red-circle-large-0.png").unlink()
    report = index.add([photos])
    assert report.removed == 1 and report.scanned == 39 and len(index) == 39
    assert not (thumbs / f"{gone}.jpg").exists() and (thumbs / f"{kept}.jpg").exists()

    new = tmp_path / "never"
    assert main(["index", "no/such/folder", "--index", str(new)]) == 2
    assert main(["index", str(photos), "--index", str(new), "--model", str(tmp_path / "nope.pt")]) == 2
    assert not new.exists()  # a run that failed leaves no empty index behind


def test_an_index_records_its_precision_and_refuses_to_mix(tmp_path, tiny_model_path, capsys):
    photos = tmp_path / "photos"
    write_gallery(photos / "a")
    write_gallery(photos / "b")
    common = ["--index", str(tmp_path / "index"), "--model", str(tiny_model_path)]
    assert main(["index", str(photos / "a"), *common, "--precision", "fp32"]) == 0
    assert "inference in fp32" in capsys.readouterr().err
    assert main(["index", str(photos / "b"), *common, "--precision", "bf16"]) == 2
    assert "were made in fp32, and this model runs in bf16" in capsys.readouterr().err
    assert len(Index(tmp_path / "index", model=tiny_model_path)) == 40  # nothing was added
    assert main(["index", str(photos / "b"), *common, "--precision", "bf16", "--mixed-precision"]) == 0
    index = Index(tmp_path / "index", model=tiny_model_path)
    assert len(index) == 80 and index.catalog.get("precision") == "mixed"
