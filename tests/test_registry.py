"""Every registered name resolves, and spacy_twner/pipeline/ stands on its own.

The pattern of spacy-curated-transformers' tests/test_registry.py, plus the
promises en_twner rests on: the files that ship in it import nothing from
spacy_twner, each registered piece is declared as an entry point, and the
copies of those files (spacy_twner's, and one per model package) can all be
imported in one process, in any order.
"""
import ast
import configparser
import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from spacy.language import Language
from spacy.util import registry

from spacy_twner.packaging.package import pipeline_code

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


def test_pipeline_files_import_nothing_from_spacy_twner_and_of_each_other_only_registration():
    files = pipeline_code()
    assert {f.stem for f in files} >= {"transformer_model", "torch_runtime", "onnx_runtime", "case_types", "checksums",
                                       "sentence_embedder", "backbone", "pipeline_component", "entity_recognizer",
                                       "registration"}  # fmt: skip
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0 or (node.level == 1 and node.module == "registration"), f"{path.name}: imports .{node.module}"
                assert not (node.module or "").startswith("spacy_twner"), f"{path.name}: imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("spacy_twner") for a in node.names), f"{path.name}: imports spacy_twner"


def test_pipeline_files_load_as_lone_files_as_spacy_package_checks_them():
    """`spacy package --code` imports each file on its own before it packages
    it: no relative import may fail there, and spacy_twner is never imported."""
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


def copy_as_package(tmp_path: Path, name: str) -> Path:
    """spacy_twner/pipeline/ as `spacy package --code` lays it out: the modules
    beside an __init__.py that imports each (spaCy's own template)."""
    from spacy.cli.package import TEMPLATE_INIT

    package = tmp_path / name
    package.mkdir()
    for path in pipeline_code():
        shutil.copy(path, package / path.name)
    imports = "\n".join(f"from . import {p.stem}" for p in pipeline_code())
    (package / "__init__.py").write_text(TEMPLATE_INIT.format(imports=imports), encoding="utf-8")
    (package / "meta.json").write_text('{"lang": "en", "name": "%s", "version": "0.0.0"}' % name, encoding="utf-8")
    return package


def run_python(script: str, cwd: Path, *, isolated: bool = False) -> subprocess.CompletedProcess:
    """A fresh interpreter; isolated: without spacy_twner on its path (it is
    installed in this venv, so its folder is blocked with a meta path finder)."""
    prelude = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "spacy_twner":
            raise ImportError("spacy_twner is blocked in this test")
sys.meta_path.insert(0, Block())
import catalogue, importlib.metadata as md
# spaCy would import spacy_twner's factories through its entry points
found = {e for dist in md.distributions() for e in dist.entry_points}
catalogue.AVAILABLE_ENTRY_POINTS = md.EntryPoints(e for e in found if not e.value.startswith("spacy_twner"))
"""
    return subprocess.run([sys.executable, "-c", (prelude if isolated else "") + script],
                          capture_output=True, text=True, cwd=cwd)  # fmt: skip


LOAD_ALL = """
import warnings
warnings.simplefilter("error")
import sys
sys.path.insert(0, ".")
import spacy
{imports}
nlp = spacy.blank("en")
for factory in ("twner_transformer", "twner_ner", "twner_sentence_embedder"):
    nlp.add_pipe(factory, name=factory, config={{"model": "none"}} if factory == "twner_sentence_embedder" else {{}})
from spacy.util import registry
print(registry.factories.get("twner_ner").__module__)
print(sorted(m for m in sys.modules if m.split(".")[0] == "spacy_twner" and "pipeline" in m))
"""


def test_pipeline_files_load_as_a_package_without_spacy_twner(tmp_path):
    """Imported as en_twner imports them, with spacy_twner blocked: every
    factory comes from the package. (The real wheel: tests/test_workflow.py.)"""
    copy_as_package(tmp_path, "en_copy")
    out = run_python(LOAD_ALL.format(imports="import en_copy"), tmp_path, isolated=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["en_copy.entity_recognizer", "[]"]


@pytest.mark.parametrize("imports,first", [
    ("import en_a, en_b", "en_a.entity_recognizer"),  # two model packages (en_twner, en_twner_fp32)
    pytest.param("import en_b, en_a", "en_b.entity_recognizer", marks=pytest.mark.slow),  # the mirror order: slow tier
    pytest.param("import spacy_twner.pipeline.entity_recognizer, en_a, en_b", "spacy_twner.pipeline.entity_recognizer", marks=pytest.mark.slow),
    ("import en_a; import spacy_twner.pipeline.entity_recognizer", "en_a.entity_recognizer"),  # spacy.load("en_twner") next to the plugin
])  # fmt: skip
def test_copies_of_the_pipeline_code_share_one_process_in_any_order(tmp_path, imports, first):
    """spacy_twner's entry points and two packaged copies in one process: the
    first copy imported registers each factory, the others use it, no E004 and
    no warning (warnings are errors here)."""
    copy_as_package(tmp_path, "en_a")
    copy_as_package(tmp_path, "en_b")
    out = run_python(LOAD_ALL.format(imports=imports), tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[0] == first


def test_another_version_of_a_factory_warns_and_a_foreign_one_fails(tmp_path):
    changed = copy_as_package(tmp_path, "en_old")
    module = changed / "entity_recognizer.py"
    module.write_text(module.read_text(encoding="utf-8") + "\n# built by another spacy_twner\n", encoding="utf-8")
    script = "import spacy_twner.pipeline.entity_recognizer\nimport en_old\n"
    out = run_python(script, tmp_path)
    assert out.returncode == 0 and "TwnerFactoryWarning" in out.stderr and "en_old/entity_recognizer.py" in out.stderr, out.stderr

    foreign = "from spacy.language import Language\n@Language.factory('twner_ner')\ndef make_scored_ner(nlp, name):\n    return None\n"
    (tmp_path / "other_plugin.py").write_text(foreign, encoding="utf-8")
    out = run_python("import other_plugin\nimport en_old\n", tmp_path)
    assert out.returncode == 1 and "already registered by 'other_plugin'" in out.stderr, out.stderr[-2000:]
