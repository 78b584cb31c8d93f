"""spacy_twner/ is grouped by concern, and no module imports a concern above its own.

From the bottom: what ships in the wheels (pipeline/), small shared helpers,
data, evaluation, training, packaging, serving, the command line. A module
may import its own concern and those below it, never one above: the data
readers cannot reach for a trained model's evaluation, nor evaluation for
the server.
"""
import ast
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "spacy_twner"
LAYERS = {
    "pipeline": 0,
    "__init__": 1, "about": 1, "files": 1, "markdown": 1, "plots": 1, "loading": 1,
    "data": 2,
    "evaluation": 3,
    "training": 4,
    "packaging": 5,
    "serve": 6,
    "cli": 7, "__main__": 7,
}  # fmt: skip
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def concern(module: str) -> str:
    """spacy_twner.data.conll -> data; spacy_twner.files -> files."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path):
    """Every spacy_twner module the file imports, absolute, wherever the import
    stands; `from .. import training` imports spacy_twner.training."""
    dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = dotted.rsplit(".", 1)[0] if path.name != "__init__.py" else dotted.removesuffix(".__init__")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            elif (node.module or "").startswith("spacy_twner"):
                base = node.module
            else:
                continue
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("spacy_twner"))


def test_every_module_belongs_to_a_known_concern():
    top = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert top == set(LAYERS), top ^ set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_module_imports_a_concern_above_its_own(path):
    own = concern(".".join(path.relative_to(ROOT).with_suffix("").parts))
    for module in imported_modules(path):
        target = concern(module)
        assert LAYERS[target] <= LAYERS[own], f"{path.relative_to(ROOT)} ({own}) imports {module} ({target}), a concern above it"
