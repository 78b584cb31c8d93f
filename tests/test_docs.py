"""The README and docs say what the project and its run records say."""
import re
import subprocess
import sys

from spacy_twner.evaluation.docs import BLOCK, update_tables

from .conftest import ROOT

USER_PAGES = sorted((ROOT / "docs").glob("*.md"))  # how to use, train, what it scores
DOCS = USER_PAGES + sorted((ROOT / "docs" / "experiments").glob("*.md"))  # and the experiment logs
README_LIMIT, HAND_WRITTEN_LIMIT = 10_000, 4_500


def test_readme_is_short_and_its_project_block_is_current(tmp_path):
    """README under 10,000 characters, at most 4,500 of them hand-written (the
    quickstart; the rest is docs/), then the block `spacy project document`
    generates, as project.yml stands now."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- WEASEL: AUTO-GENERATED DOCS START (do not remove) -->", "<!-- WEASEL: AUTO-GENERATED DOCS END (do not remove) -->"
    assert readme.count(start) == readme.count(end) == 1
    assert readme.index(start) <= HAND_WRITTEN_LIMIT and len(readme) <= README_LIMIT, (readme.index(start), len(readme))
    generated = subprocess.run([sys.executable, "-m", "spacy", "project", "document", str(ROOT)], capture_output=True, text=True, check=True).stdout
    ours = readme[readme.index(start) : readme.index(end) + len(end)]
    assert ours.strip() == generated[generated.index(start) : generated.index(end) + len(end)].strip()


def test_every_docs_table_is_what_its_records_give():
    assert DOCS and any(BLOCK.search(path.read_text(encoding="utf-8")) for path in DOCS)
    assert update_tables(DOCS, write=False, root=ROOT) == []


def test_every_record_a_doc_names_is_committed_and_every_link_resolves():
    text = "\n".join(path.read_text(encoding="utf-8") for path in [*DOCS, ROOT / "README.md"])
    for record in re.findall(r"docs/runs/[\w./+-]+\.json", text):
        assert (ROOT / record).is_file(), record
    for path in [*DOCS, ROOT / "README.md"]:  # a link resolves from its own page's folder, as Markdown reads it
        for link in re.findall(r"\]\(((?!https?:)[^)#]+)", path.read_text(encoding="utf-8")):
            assert (path.parent / link).exists(), f"{path.relative_to(ROOT)}: {link}"


def test_twner_docs_check_fails_on_a_stale_table(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- table: stats docs/runs/data-wnut16.json -->\n| stale |\n<!-- end table -->\n", encoding="utf-8")
    check = subprocess.run([sys.executable, "-m", "spacy_twner", "docs", str(page), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert check.returncode == 1 and "differ" in check.stdout
    fix = subprocess.run([sys.executable, "-m", "spacy_twner", "docs", str(page)], capture_output=True, text=True, cwd=ROOT)
    assert fix.returncode == 0 and "| company | 171 | 39 | 621 |" in page.read_text(encoding="utf-8")


def registered(group: str):
    import configparser

    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return [line.partition("=")[0].strip() for line in parser["options.entry_points"][group].strip().splitlines()]


def test_usage_names_every_factory_registered_name_and_extension_attribute():
    """docs/usage.md is the reference: every factory and registered function of
    setup.cfg, and every extension attribute a component sets, appear in it."""
    import spacy_twner.pipeline.entity_recognizer  # noqa: F401  (each registers its attributes)
    import spacy_twner.pipeline.pipeline_component  # noqa: F401
    import spacy_twner.pipeline.sentence_embedder  # noqa: F401
    import spacy_twner.pipeline.voting  # noqa: F401
    from spacy.language import Language

    usage = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    names = [n for group in ("spacy_factories", "spacy_misc", "spacy_architectures", "spacy_callbacks", "spacy_loggers") for n in registered(group)]
    assert len(names) >= 18 and [n for n in names if f"`{n}`" not in usage] == []
    attributes = {a for name in registered("spacy_factories") for a in Language.get_factory_meta(name).assigns if "._." in a}
    assert attributes >= {"doc._.embedding", "span._.embedding", "span._.confidence", "doc._.trf_data"}
    assert [a for a in attributes if f"`{a}`" not in usage] == []


def test_user_pages_speak_of_the_product_not_of_the_work():
    """User pages (README, docs/*.md; the experiment logs aside) say no "issue",
    "bar" or first-person "I": they describe the pipelines, not how they were made."""
    for path in [ROOT / "README.md", *USER_PAGES]:
        text = re.sub(r"<!--.*?-->", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
        for word in (r"\bissues?\b", r"\bbars?\b", r"(^|[\s(])I\s"):
            found = re.search(word, text, flags=re.IGNORECASE if "I" not in word else 0)
            assert found is None, f"{path.name}: {text[max(0, found.start() - 60) : found.end() + 60]!r}"


def test_user_pages_give_one_figure_per_build_figure():
    """A figure of the shipped build on a user page comes from its record
    (a generated table or an inline value), so two pages cannot disagree: the
    test F1 and tweets/s of each package appear nowhere as bare numbers."""
    import srsly

    manifest = srsly.read_json(ROOT / "docs" / "runs" / "build" / "build.json")["packages"]
    figures = set()  # patterns: an F1 as a bare number, a speed as a number of tweets
    for entry in manifest.values():
        figures.add(re.escape(f"{100 * srsly.read_json(ROOT / entry['test'])['ents_f']:.1f}") + r"(?![\d])")
        record, option = entry["speed"]
        figures.add(re.escape(f"{srsly.read_json(ROOT / record)[option]['tweets_per_s']:,.0f}") + r"\s*(tweets|/s)")
    for path in [ROOT / "README.md", *USER_PAGES]:
        text = path.read_text(encoding="utf-8")
        text = BLOCK.sub("", text)
        text = re.sub(r"<!-- value: [^>]*-->[^<]*<!-- /value -->", "", text)
        bare = [f for f in figures if re.search(rf"(?<![\d.,]){f}", text)]
        assert bare == [], f"{path.name} writes {bare} by hand: generate them from the records"
