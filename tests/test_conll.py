"""The WNUT reader/converter on the real files, and its error reports."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from spacy_twner.about import __version__
from spacy_twner.data.conll import ConllError, docs_to_conll, read_conll, read_marked, sentences_to_docs
from spacy_twner.data.datasets import DATASETS

from .conftest import twner, wnut_file

DATASET_LABELS = {name: dataset.labels for name, dataset in DATASETS.items()}

# Documents and entities per file: the dataset papers' and README's counts.
EXPECTED = {
    ("wnut16", "train"): (2394, 1496),
    ("wnut16", "dev"): (1000, 661),
    ("wnut16", "test"): (3850, 3473),
    ("wnut17", "train"): (3394, 1975),
    ("wnut17", "dev"): (1009, 836),
    ("wnut17", "test"): (1287, 1079),
}


def normalise_separators(text: str) -> str:
    """Whitespace-only separator lines (WNUT17 train: a lone TAB) become empty."""
    return "\n".join("" if not line.strip() else line for line in text.split("\n"))


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_wnut_file_converts_with_expected_counts_and_round_trips(assets_dir, key):
    dataset, split = key
    path = wnut_file(assets_dir, dataset, split)
    conll = read_conll(path, labels=DATASET_LABELS[dataset])
    docs = list(sentences_to_docs(Vocab(), conll.sentences))
    n_docs, n_ents = EXPECTED[key]
    assert len(docs) == n_docs
    assert sum(len(doc.ents) for doc in docs) == n_ents
    assert {e.label_ for d in docs for e in d.ents} <= set(DATASET_LABELS[dataset])
    # CoNLL -> DocBin (serialised) -> CoNLL gives back the file byte for byte.
    data = DocBin(docs=docs).to_bytes()
    restored = list(DocBin().from_bytes(data).get_docs(Vocab()))
    text = path.read_text(encoding="utf-8")
    assert docs_to_conll(restored) == normalise_separators(text)


def test_cli_convert_and_to_conll_round_trip(assets_dir, tmp_path):
    source = wnut_file(assets_dir, "wnut17", "dev")
    spacy_file = tmp_path / "dev.spacy"
    conll_file = tmp_path / "dev.conll"
    run = [sys.executable, "-m", "spacy_twner"]
    out = subprocess.run(
        run + ["convert", str(source), str(spacy_file), "--labels", "wnut17"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "1009" in out.stdout and "836" in out.stdout
    subprocess.run(run + ["to-conll", str(spacy_file), str(conll_file)], check=True)
    assert conll_file.read_bytes() == source.read_bytes()


def test_check_set_converts_with_its_text_and_entities_as_written(tmp_path):
    """assets/xx-check: every tweet's text comes back character for character,
    every marked entity is one entity, and the CLI writes the DocBin."""
    root = Path(__file__).parent.parent / "assets" / "xx-check"
    for name in ("it", "es", "de", "fr"):
        lines = (root / f"{name}.txt").read_text(encoding="utf-8").splitlines()
        docs = list(sentences_to_docs(Vocab(), read_marked(root / f"{name}.txt", labels=DATASET_LABELS["wnut16"]).sentences))
        marks = [re.findall(r"\[([^\]|]+)\|([^\]|]+)\]", line) for line in lines]
        assert len(docs) == len(lines) >= 40
        assert [d.text for d in docs] == [re.sub(r"\[([^\]|]+)\|[^\]|]+\]", r"\1", line) for line in lines]
        assert [[(e.text, e.label_) for e in d.ents] for d in docs] == marks
    spacy_file = tmp_path / "it.spacy"
    out = twner("convert", root / "it.txt", spacy_file, "--marked", "--labels", "wnut16")
    assert out.returncode == 0, out.stderr
    assert len(list(DocBin().from_disk(spacy_file).get_docs(Vocab()))) == 50


@pytest.mark.parametrize(
    "content,problem",
    [
        ("fine [Rome|geo-loc]\nbad [Rome|geo-loc\n", "unbalanced entity markup"),
        ("fine\nbad [Rome|city]\n", "unknown entity type 'city'"),
        ("fine\nbad [ |person]\n", "has no text"),
    ],
)
def test_bad_check_set_line_names_file_and_line(tmp_path, content, problem):
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConllError, match=re.escape(f"{path}:2: ")) as err:
        read_marked(path, labels=DATASET_LABELS["wnut16"])
    assert problem in str(err.value)


@pytest.mark.parametrize(
    "content,line,problem",
    [
        ("a\tO\nb\n", 2, "one column only"),
        ("a\tO\tX\n", 1, "3 columns, expected 2"),
        ("a\tB-person\nb\tX-person\n", 2, "is not O, B-X or I-X"),
        ("a\tB-alien\n", 1, "label 'alien' is not in the label set"),
        ("a\tO\nb\tI-person\n", 2, "I-person follows O"),
        ("a\tB-product\nb\tI-person\n", 2, "I-person follows B-product"),
        ("", 1, "no tokens found"),
        ("\n \n\t\n", 1, "no tokens found"),
        ("New York\tB-location\n", 1, "token contains whitespace"),
        ("\tO\n", 1, "empty token"),
    ],
)
def test_bad_input_names_file_line_and_problem(tmp_path, content, line, problem):
    path = tmp_path / "bad.conll"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConllError) as err:
        read_conll(path, labels=DATASET_LABELS["wnut17"])
    assert err.value.line == line
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert problem in str(err.value)


def test_not_utf8_reports_byte_offset(tmp_path):
    path = tmp_path / "latin1.conll"
    path.write_bytes("a\tO\n\ncaf\xe9\tO\n".encode("latin-1"))
    with pytest.raises(ConllError, match=r"latin1.conll:3: not valid UTF-8 at byte offset 8"):
        read_conll(path)


def test_tolerated_layouts(tmp_path):
    """BOM, CRLF, space separation, -DOCSTART-, odd separators, no final newline."""
    path = tmp_path / "ok.conll"
    path.write_bytes(
        "\ufeff-DOCSTART- O\r\n\r\nI O\r\nlove O\r\n \t \r\n\r\n\r\nNew B-location\r\n"
        "York I-location".encode("utf-8")
    )
    conll = read_conll(path, labels=DATASET_LABELS["wnut17"])
    assert conll.docstarts == 1
    assert [s.words for s in conll.sentences] == [["I", "love"], ["New", "York"]]
    assert [s.line for s in conll.sentences] == [3, 8]
    doc = next(sentences_to_docs(Vocab(), conll.sentences[1:]))
    assert [(e.text, e.label_) for e in doc.ents] == [("New York", "location")]


def test_repair_turns_stray_inside_tags_into_begin(tmp_path):
    path = tmp_path / "stray.conll"
    path.write_text("a\tO\nb\tI-person\nc\tI-person\n\nd\tI-group\n", encoding="utf-8")
    conll = read_conll(path, repair=True)
    assert conll.repaired == 2
    assert [s.tags for s in conll.sentences] == [["O", "B-person", "I-person"], ["B-group"]]


def flat(output: str) -> str:
    """CLI output with wasabi's line wrapping undone."""
    return " ".join(output.split())


def test_cli_errors_exit_non_zero_and_leave_no_output(tmp_path):
    bad = tmp_path / "bad.conll"
    bad.write_text("a\tO\nb\tI-person\n", encoding="utf-8")
    out = tmp_path / "out.spacy"
    run = [sys.executable, "-m", "spacy_twner", "convert"]
    result = subprocess.run(run + [str(bad), str(out)], capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{bad}:2: I-person follows O" in flat(result.stdout)
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]
    missing = subprocess.run(run + [str(tmp_path / "nope"), str(out)], capture_output=True, text=True)
    assert missing.returncode == 1 and "no such file" in flat(missing.stdout)
    good = tmp_path / "good.conll"
    good.write_text("a\tO\n", encoding="utf-8")
    no_dir = subprocess.run(run + [str(good), str(tmp_path / "no" / "x.spacy")], capture_output=True, text=True)
    assert no_dir.returncode == 1 and "does not exist" in flat(no_dir.stdout)


def test_console_script_version_and_compare_table(tmp_path):
    twner = Path(sys.executable).parent / "twner"
    assert "convert" in subprocess.run([str(twner), "--help"], capture_output=True, text=True, check=True).stdout
    version = subprocess.run([str(twner), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.strip() == f"spacy_twner {__version__}"
    bad_choice = subprocess.run([str(twner), "optimize", "m", "out", "--runtime", "tensorrt"], capture_output=True, text=True)
    assert bad_choice.returncode == 2 and "tensorrt" in bad_choice.stderr and "onnxruntime" in bad_choice.stderr
    metrics = {"ents_p": 0.5, "ents_r": 0.25, "ents_f": 1 / 3, "speed": 1234.0,
               "ents_per_type": {"person": {"p": 1.0, "r": 0.5, "f": 2 / 3}}}  # fmt: skip
    path = tmp_path / "run-a.json"
    path.write_text(json.dumps(metrics))
    table = subprocess.run([str(twner), "compare", str(path)], capture_output=True, text=True, check=True).stdout
    assert "| run-a | – | – | 50.0 | 25.0 | **33.3** | – | – | 1,234 |" in table
    assert "| run | person |" in table and "| run-a | 66.7 |" in table
