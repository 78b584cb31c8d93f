"""Every registered name resolves, and spacy_twner/pipeline/ stands on its own.

The pattern of spacy-curated-transformers' tests/test_registry.py, plus the
two promises en_twner rests on: the files that ship in it import nothing from
spacy_twner (nor from each other: spacy package imports each as a top-level
module), and each registered piece is declared as an entry point.
"""
import ast
import configparser
import importlib
import re
import subprocess
import sys

import pytest
from spacy.language import Language
from spacy.util import registry

from spacy_twner.package import pipeline_code

from .conftest import ROOT


def entry_points():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    section = parser["options.entry_points"]
    for group in section:
        for line in section[group].strip().splitlines():
            name, _, target = (part.strip() for part in line.partition("="))
            yield group, name, target


ENTRY_POINTS = sorted(entry_points())


@pytest.mark.parametrize("group,name,target", ENTRY_POINTS, ids=[f"{g}:{n}" for g, n, _ in ENTRY_POINTS])
def test_entry_point_resolves_to_what_setup_cfg_names(group, name, target):
    module_name, _, attr = target.partition(":")
    expected = getattr(importlib.import_module(module_name), attr)
    if group == "console_scripts":
        assert callable(expected)
    else:
        assert registry.get(group.removeprefix("spacy_"), name) is expected
    if group == "spacy_factories":
        assert Language.get_factory_meta(name).factory == name


def test_every_registration_in_the_code_has_an_entry_point():
    """A registered name that setup.cfg does not declare would only work once
    its module happened to be imported."""
    declared = {(group.removeprefix("spacy_"), name) for group, name, _ in ENTRY_POINTS}
    found = set()
    for path in sorted((ROOT / "spacy_twner").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        found |= set(re.findall(r'@registry\.(\w+)\("([^"]+)"\)', text))
        found |= {("factories", name) for name in re.findall(r'^FACTORY = "(\w+)"', text, re.MULTILINE)}
    assert len(found) >= 9 and found <= declared, found - declared


def test_pipeline_files_import_nothing_from_spacy_twner_nor_each_other():
    files = pipeline_code()
    assert {f.stem for f in files} >= {"transformer_model", "torch_runtime", "onnx_runtime", "case_types", "checksums",
                                       "sentence_embedder", "backbone", "pipeline_component", "entity_recognizer"}  # fmt: skip
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: relative import"
                assert not (node.module or "").startswith("spacy_twner"), f"{path.name}: imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("spacy_twner") for a in node.names), f"{path.name}: imports spacy_twner"


def test_pipeline_files_load_as_spacy_package_loads_them_without_spacy_twner():
    """Each file imported by path as a top-level module, as `spacy package` and
    en_twner's __init__ do: spacy_twner is never imported. (Loading a pipeline
    from the wheel without spacy_twner installed: tests/test_workflow.py.)"""
    script = f"""
import sys
from spacy.util import import_file
for path in {[str(p) for p in pipeline_code()]!r}:
    import_file(path.rsplit("/", 1)[1][:-3], path)
print(sorted(m for m in sys.modules if m.split(".")[0] == "spacy_twner"))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"
