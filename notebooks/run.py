"""Execute the notebooks: each `NAME.py` (a jupytext percent script, the form reviewed in diffs) runs in a fresh
kernel and is written as `NAME.ipynb` with its outputs (`make notebooks`). tests/test_notebooks.py runs the same
function and checks that each committed .ipynb holds the cells of its .py."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
TIMEOUT = 240  # seconds per cell


def execute(script: Path, cwd: Path | None = None) -> nbformat.NotebookNode:
    """The notebook of `script`, executed top to bottom in a fresh Python kernel (working folder `cwd`)."""
    notebook = jupytext.read(script)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(
        notebook, timeout=TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(cwd or HERE)}}
    ).execute()
    return notebook


def main(names: list[str]) -> None:
    scripts = [HERE / f"{n}.py" for n in names] if names else sorted(p for p in HERE.glob("*.py") if p.name != "run.py")
    for script in scripts:
        start = time.perf_counter()
        notebook = execute(script)
        target = script.with_suffix(".ipynb")
        tmp = target.with_suffix(".ipynb.tmp")
        nbformat.write(notebook, tmp)
        tmp.replace(target)  # atomic: a failed run leaves the committed notebook as it was
        print(f"{target.relative_to(HERE.parent)}: executed in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
