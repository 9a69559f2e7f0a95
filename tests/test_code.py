"""The code stays as docs/architecture.md and STYLE say: the tree it draws is the tree there is, functions stay
short, and measured figures live in docs/measurements.md and bench/README.md, not in code comments."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pictext"
FIGURE = re.compile(r"\d+(\.\d+)?\s?%|\d+(\.\d+)? dB\b")  # a percentage or a PSNR: a measurement


def _modules() -> set[str]:
    return {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}


def _documented() -> set[str]:
    """The modules docs/architecture.md's tree names, each with its folder (e.g. 'server/routes/files.py')."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    tree = text.split("## The tree", 1)[1].split("```")[1].split("pictext/\n", 1)[1]
    named, folder = set(), ""
    for line in tree.splitlines():
        if not line.startswith(" "):
            break  # tests/, bench/, docs/: not the package
        if not line.startswith("   "):  # an entry of the package: a module, or a folder
            first = line.split()[0]
            folder = first if first.endswith("/") else ""
        named |= {folder + name for name in re.findall(r"(?<![\w/.])((?:\w+/)*\w+\.py)\b", line)}
    return named


def test_the_architecture_doc_names_every_module_and_only_those():
    modules = {m for m in _modules() if not m.endswith("__init__.py")} | {"__init__.py"}
    documented = _documented()
    assert not modules - documented, f"modules docs/architecture.md does not name: {sorted(modules - documented)}"
    assert not documented - modules, (
        f"docs/architecture.md names modules that do not exist: {sorted(documented - modules)}"
    )


def test_no_function_is_over_60_lines_without_saying_why():
    """A longer function carries a comment starting '# long:' on the line above its def."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if not lines[first - 2].strip().startswith("# long:"):
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long, f"functions over 60 lines with no '# long:' reason: {long}"


def test_measured_figures_are_not_in_code_comments():
    """Comments and docstrings say why and point to docs/measurements.md or bench/README.md; figures go stale."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        texts = [(t.start[0], t.string) for t in tokenize.generate_tokens(io.StringIO(source).readline)
                 if t.type == tokenize.COMMENT]  # fmt: skip
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    texts.append((node.body[0].lineno, doc))
        found += [f"{path.relative_to(ROOT)}:{line}" for line, text in texts if FIGURE.search(text)]
    assert not found, f"measured figures in code comments or docstrings: {found}"


def test_every_name_a_benchmark_imports_from_pictext_exists():
    """The benchmarks run rarely (minutes each); a rename in pictext must not leave them broken until then."""
    import importlib
    import importlib.util

    def submodule(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # its parent is a module, not a package
            return False

    missing = []
    for script in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pictext")):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name) and not submodule(f"{node.module}.{alias.name}"):
                    missing.append(f"bench/{script.name}:{node.lineno} {node.module}.{alias.name}")
    assert not missing, missing
