"""The README and docs say what the project and its run records say."""
import re
import subprocess
import sys

from spacy_twner.evaluation.docs import BLOCK, update_tables

from .conftest import ROOT

DOCS = sorted((ROOT / "docs").glob("*.md"))


def test_readme_is_short_and_its_project_block_is_current(tmp_path):
    """README under 8,000 characters, at most 3,500 of them hand-written (the
    rest is docs/), then the block `spacy project document` generates, as
    project.yml stands now."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- WEASEL: AUTO-GENERATED DOCS START (do not remove) -->", "<!-- WEASEL: AUTO-GENERATED DOCS END (do not remove) -->"
    assert readme.count(start) == readme.count(end) == 1
    assert readme.index(start) <= 3500 and len(readme) <= 8000, (readme.index(start), len(readme))
    generated = subprocess.run([sys.executable, "-m", "spacy", "project", "document", str(ROOT)], capture_output=True, text=True, check=True).stdout
    ours = readme[readme.index(start) : readme.index(end) + len(end)]
    assert ours.strip() == generated[generated.index(start) : generated.index(end) + len(end)].strip()


def test_every_docs_table_is_what_its_records_give():
    assert DOCS and any(BLOCK.search(path.read_text(encoding="utf-8")) for path in DOCS)
    assert update_tables(DOCS, write=False, root=ROOT) == []


def test_every_record_a_doc_names_is_committed_and_every_link_resolves():
    text = "\n".join(path.read_text(encoding="utf-8") for path in [*DOCS, ROOT / "README.md"])
    for record in re.findall(r"docs/runs/[\w.+-]+\.json", text):
        assert (ROOT / record).is_file(), record
    for link in re.findall(r"\]\(((?!https?:)[^)#]+)", text):
        base = ROOT if not (ROOT / "docs" / link).exists() else ROOT / "docs"
        assert (base / link).exists() or (ROOT / link).exists(), link


def test_twner_docs_check_fails_on_a_stale_table(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- table: stats docs/runs/data-wnut16.json -->\n| stale |\n<!-- end table -->\n", encoding="utf-8")
    check = subprocess.run([sys.executable, "-m", "spacy_twner", "docs", str(page), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert check.returncode == 1 and "differ" in check.stdout
    fix = subprocess.run([sys.executable, "-m", "spacy_twner", "docs", str(page)], capture_output=True, text=True, cwd=ROOT)
    assert fix.returncode == 0 and "| company | 171 | 39 | 621 |" in page.read_text(encoding="utf-8")
