"""The notebooks (notebooks/*.py, jupytext percent scripts; notebooks/*.ipynb, the same with their outputs)
execute from top to bottom in a fresh kernel, and each committed .ipynb holds exactly its script's cells.

`make notebooks` re-executes them and rewrites the .ipynb files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SCRIPTS = sorted(p for p in NOTEBOOKS.glob("*.py") if p.name != "run.py")

jupytext = pytest.importorskip("jupytext")
pytestmark = pytest.mark.slow  # each notebook runs for up to a minute


def cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_there_is_a_notebook_for_each_system():
    assert {p.stem for p in SCRIPTS} == {"clip", "vqgan_clip", "dalle", "unclip"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_the_committed_notebook_holds_its_scripts_cells_with_outputs(script):
    import nbformat

    committed = script.with_suffix(".ipynb")
    assert committed.is_file(), f"{committed.name} is missing: `make notebooks` writes it"
    notebook = nbformat.read(committed, as_version=4)
    assert cells(notebook) == cells(jupytext.read(script)), f"{committed.name} is stale: run `make notebooks`"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{committed.name} was not executed"
    assert any(o.get("output_type") == "display_data" for c in code for o in c.outputs)  # pictures and plots
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_the_notebook_executes_offline_in_a_fresh_kernel(script, tmp_path, monkeypatch):
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        from run import execute
    finally:
        sys.path.remove(str(NOTEBOOKS))
    monkeypatch.setenv("PICTEXT_QUIET", "1")
    notebook = execute(script, cwd=tmp_path)  # nbclient raises CellExecutionError on any error
    texts = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "skipped: " in texts  # the published-weights section: no weights here (a private PICTEXT_HOME)
