"""A user's labelled tweets as the corpus a pipeline trains on: `twner prepare`.

Train (and dev and test, where given) in any format of data/formats.py
become corpus/<name>/: train/train.spacy (a folder, so that rehearsal data
can sit beside it), dev.spacy, test.spacy (empty when there is no test set)
and labels.json. The label set is the data's, or the one asked for; dev and
test may hold no label that train lacks. Without a dev file a seeded share of
train is held out as dev. A tweet whose text is also a test tweet is taken
out of train and dev. Everything is read and checked before anything is
written, so a problem leaves no half-made corpus.
"""
import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import spacy
import srsly
from spacy.tokens import Doc, DocBin

from ..files import write_atomic
from .corpus import normalize
from .formats import DataError, Labelled, label_counts, read_labelled


def prepare_corpus(
    train: Path,
    output_dir: Path,
    *,
    dev: Optional[Path] = None,
    test: Optional[Path] = None,
    labels: Sequence[str] = (),
    lang: str = "en",
    dev_share: float = 0.2,
    seed: int = 0,
    limit: int = 0,
    snap: bool = False,
    repair: bool = False,
) -> dict:
    """Read, check, split and write; return the report (also written as report.json)."""
    if not 0.0 < dev_share < 1.0:
        raise ValueError(f"dev share {dev_share}: give a share of train in (0, 1)")
    nlp = spacy.blank(lang)
    read = {name: read_labelled(path, nlp, snap=snap, repair=repair) for name, path in (("train", train), ("dev", dev), ("test", test)) if path}
    allowed = _label_set(read, labels)
    test_keys = {normalize(doc.text) for doc in read["test"].docs} if "test" in read else set()
    report: Dict[str, dict] = {"labels": allowed, "lang": lang, "files": {}, "splits": {}}
    docs: Dict[str, List[Doc]] = {}
    for name, labelled in read.items():
        kept = [doc for doc in labelled.docs if name == "test" or normalize(doc.text) not in test_keys]
        report["files"][name] = {
            "path": str(labelled.path), "format": labelled.format, "docs": len(labelled.docs),
            "left_out": dict(labelled.left_out), "snapped": len(labelled.snapped), "snapped_spans": labelled.snapped[:50],
            "removed_as_test_text": len(labelled.docs) - len(kept),
            "repeated_texts": len(labelled.docs) - len({normalize(doc.text) for doc in labelled.docs}),
        }  # fmt: skip
        docs[name] = kept
    if "dev" not in docs:
        docs["train"], docs["dev"] = _split(docs["train"], dev_share, seed)
        report["dev_split"] = {"share": dev_share, "seed": seed, "docs": len(docs["dev"]), "from": str(train)}
    if limit:
        docs["train"] = docs["train"][:limit]
        report["train_limit"] = limit
    docs.setdefault("test", [])
    for name in ("train", "dev"):
        if not docs[name]:
            raise DataError(read.get(name, read["train"]).path, 1, f"no {name} tweets left (after taking out the tweets that repeat test tweets)")
    for name, split in docs.items():
        report["splits"][name] = {"docs": len(split), "entities": dict(sorted(label_counts(split).items()))}
    output_dir = Path(output_dir)
    (output_dir / "train").mkdir(parents=True, exist_ok=True)
    for name, path in (("train", output_dir / "train" / "train.spacy"), ("dev", output_dir / "dev.spacy"), ("test", output_dir / "test.spacy")):
        write_atomic(path, DocBin(docs=docs[name], store_user_data=False).to_bytes())
    write_atomic(output_dir / "labels.json", srsly.json_dumps(allowed).encode("utf-8"))
    write_atomic(output_dir / "report.json", srsly.json_dumps(report, indent=2).encode("utf-8"))
    return report


def _label_set(read: Dict[str, Labelled], labels: Sequence[str]) -> List[str]:
    """The labels to train: those asked for (each must occur in train), or
    train's; a label elsewhere that is not among them is an error at its line."""
    train = read["train"]
    in_train = set(label_counts(train.docs))
    allowed = list(labels) or sorted(in_train)
    if not allowed:
        raise DataError(train.path, 1, "train holds no entity at all: nothing to learn")
    missing = [label for label in allowed if label not in in_train]
    if missing:
        raise DataError(train.path, 1, f"label(s) {', '.join(map(repr, missing))} asked for but without an example in train")
    for name, labelled in read.items():
        for doc, line in zip(labelled.docs, labelled.lines):
            for ent in doc.ents:
                if ent.label_ not in allowed:
                    where = "not in train" if not labels else f"not among the labels asked for ({', '.join(allowed)})"
                    raise DataError(labelled.path, line, f"label {ent.label_!r} ({ent.text!r}) is {where}")
    return allowed


def _split(docs: List[Doc], share: float, seed: int):
    """A seeded share of the docs as dev, the rest as train, each in file
    order; tweets of the same text go to the same side."""
    groups: Dict[str, List[int]] = {}
    for i, doc in enumerate(docs):
        groups.setdefault(normalize(doc.text), []).append(i)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    held, target = set(), max(1, round(share * len(docs)))
    for key in keys:
        if len(held) >= target:
            break
        held.update(groups[key])
    return [d for i, d in enumerate(docs) if i not in held], [d for i, d in enumerate(docs) if i in held]


def report_rows(report: dict) -> List[tuple]:
    """(split, tweets, entities per label) rows for the CLI's table."""
    labels = report["labels"]
    return [(name, s["docs"], *(s["entities"].get(label, 0) for label in labels)) for name, s in report["splits"].items()]
