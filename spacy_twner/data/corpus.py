"""Training text with every test document taken out.

The 40,000 unlabeled tweets are the raw source of WNUT17's test set: 588 of
its 1,287 documents (and 1 WNUT16 test tweet) are among them. The labeled
splits overlap too: WNUT17 train is WNUT16 train + dev and holds 1 WNUT16
test tweet, WNUT16 dev repeats 4 of WNUT16's test tweets, WNUT17 dev 1 of
WNUT17's. So text is filtered against every test set before any training
use, whichever dataset is trained: unlabeled text for masked-LM pretraining
and self-training (`filter_text`), labeled docs for the train+dev corpus
(`combine`).

Normalized: NFKC, whitespace dropped, HTML entities decoded ("& gt ;" in a
tokenized test document is "&gt;" in its tweet), lowercased, everything but
letters and digits dropped, so that the tokenized test text ("RT @ user : Pass
it along . 🙏") meets its raw tweet ("RT @user: Pass it along. 🙏🏽"). This also
removes a few short texts that merely look like a test document ("yo" vs
"[ Yo ."): the safe direction.
"""
import html
import re
import unicodedata
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

import srsly
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from .datasets import DATASETS
from ..files import write_atomic
from ..markdown import table

_NOT_WORD = re.compile(r"[\W_]+")
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """The key two texts are compared by; a text of symbols only keeps them
    (without whitespace) so that it does not collide with every other one."""
    text = _SPACE.sub("", unicodedata.normalize("NFKC", text))
    return _NOT_WORD.sub("", html.unescape(html.unescape(text)).lower()) or text


def read_docs(path: Path) -> List[Doc]:
    """The docs of a DocBin or, tokens and entities, of a WNUT CoNLL file."""
    if Path(path).suffix == ".spacy":
        return list(DocBin().from_disk(path).get_docs(Vocab()))
    from .conll import read_conll, sentences_to_docs

    return list(sentences_to_docs(Vocab(), read_conll(path).sentences))


def read_texts(path: Path) -> Iterator[str]:
    """The texts of a source: a folder of text files, a text file (one text per
    line), a DocBin or a CoNLL file."""
    path = Path(path)
    if path.is_dir():
        for file in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
            yield from read_texts(file)
    elif path.suffix in (".spacy", ".conll"):
        yield from (doc.text for doc in read_docs(path))
    else:
        with path.open(encoding="utf-8") as f:
            for line in f:
                yield line.rstrip("\r\n")


def first_texts(path: Path, n: int, skip: int = 0) -> List[str]:
    """The non-blank texts of a source, skipping the first `skip`, at most n:
    the tweets a benchmark runs (a blank line is no tweet to time)."""
    return list(islice((t for t in read_texts(path) if t.strip()), skip, skip + n))


def source_name(path: Path) -> str:
    """assets/wnut17/test.conll -> wnut17-test, corpus/wnut17-dev.spacy -> wnut17-dev,
    assets/tweets-unlabeled -> tweets-unlabeled."""
    path = Path(path)
    if path.is_dir():
        return path.name
    return f"{path.parent.name}-{path.stem}" if path.parent.name in DATASETS else path.stem


class TestKeys:
    """The normalized documents of the test sets, and which set each belongs to."""

    def __init__(self, test_paths: Sequence[Path]) -> None:
        self.owners: Dict[str, List[str]] = {}
        self.documents: Dict[str, List[str]] = {}
        for path in test_paths:
            name = source_name(path)
            self.documents[name] = [normalize(t) for t in read_texts(path)]
            for key in set(self.documents[name]):
                self.owners.setdefault(key, []).append(name)

    def matches(self, text: str) -> List[str]:
        return self.owners.get(normalize(text), [])

    def report(self, found: Iterable[str]) -> Dict[str, Dict[str, int]]:
        found = set(found)
        return {name: {"documents": len(keys), "documents_found": sum(k in found for k in keys)}
                for name, keys in self.documents.items()}  # fmt: skip


def filter_text(sources: Sequence[Path], output_path: Path, test_paths: Sequence[Path], report_path: Path) -> dict:
    """Write the texts of the sources, one per line, without empty ones,
    repeats and any text that matches a test document; report what went and why."""
    tests = TestKeys(test_paths)
    seen, found, kept = set(), set(), []
    report: dict = {"sources": {}}
    for source in sources:
        counts: Counter = Counter()
        for text in read_texts(source):
            counts["read"] += 1
            if not text.strip():
                counts["empty"] += 1
                continue
            owners = tests.matches(text)
            if owners:
                found.add(normalize(text))
                counts.update(f"removed: matches {name}" for name in owners)
                continue
            key = normalize(text)
            if key in seen:
                counts["repeats"] += 1
                continue
            seen.add(key)
            kept.append(text)
            counts["kept"] += 1
        report["sources"][source_name(source)] = dict(sorted(counts.items()))
    report["test_sets"] = tests.report(found)
    report["kept"] = len(kept)
    write_atomic(output_path, "".join(f"{t}\n" for t in kept).encode("utf-8"))
    write_atomic(report_path, srsly.json_dumps(report, indent=2).encode("utf-8"))
    return report


def combine(corpora: Sequence[Path], output_dir: Path, test_paths: Sequence[Path], report_path: Path) -> dict:
    """Copy each corpus into output_dir (a corpus directory spaCy reads as one)
    without the docs that match a test document."""
    tests = TestKeys(test_paths)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    report: dict = {"corpora": {}}
    for corpus in corpora:
        docs = read_docs(corpus)
        kept = [doc for doc in docs if not tests.matches(doc.text)]
        write_atomic(Path(output_dir) / f"{Path(corpus).stem}.spacy", DocBin(docs=kept, store_user_data=False).to_bytes())
        report["corpora"][source_name(corpus)] = {"docs": len(docs), "kept": len(kept), "removed": len(docs) - len(kept)}
    write_atomic(report_path, srsly.json_dumps(report, indent=2).encode("utf-8"))
    return report


def removed_rows(report: dict) -> List[Tuple[str, str, int]]:
    """(source, reason, count) for every text a filter report says was dropped."""
    rows = []
    for source, counts in report.get("sources", report.get("corpora", {})).items():
        for reason, n in counts.items():
            if reason not in ("read", "kept", "docs") and n:
                rows.append((source, reason, n))
    return rows


def filter_markdown(report: dict) -> str:
    """filter_text's report: per source, texts read, kept, and dropped by reason."""
    sources = report["sources"]
    reasons = sorted({r for counts in sources.values() for r in counts} - {"read", "kept"})
    header = ["source", "read", *reasons, "kept"]
    rows = [(name, *(f"{counts.get(k, 0):,}" for k in ["read", *reasons, "kept"])) for name, counts in sources.items()]
    tests = "; ".join(f"{name}: {s['documents_found']:,} of its {s['documents']:,} documents found" for name, s in report["test_sets"].items())
    return table(header, rows) + f"\n\nTest sets: {tests}. Texts kept in all: {report['kept']:,}."
