"""Rehearsal for route (b): data that keeps a base pipeline's own labels in
the pipeline continued from it on a user's new labels.

The source is either labelled data with the base's labels (a share of its
original training data) or unlabeled tweets, which the base pipeline
annotates itself (every tweet, as it sees it). Texts that repeat a test
tweet are taken out first. The docs go beside the user's train file, so
spaCy reads both as one training corpus.

The user's own tweets are marked for the user's labels only: a person in
them that the base would find is, to the trainer, no entity at all, which
works against the rehearsal. So the base's entities of its other labels are
added to them, wherever they overlap none of the user's spans (`fill`).
"""
from collections import Counter
from pathlib import Path
from typing import Dict, Optional, Sequence

import spacy
import srsly
from spacy.tokens import DocBin

from ..data.corpus import TestKeys, read_texts
from ..data.formats import FORMATS, read_labelled
from ..files import write_atomic
from ..loading import load_pipeline
from .own_config import base_pipeline
from .pseudo_label import annotated_docs


def rehearsal(output_path: Path, base: str, source: Optional[Path], *, limit: int = 1000, test_paths: Sequence[Path] = (),
              fill: Optional[Path] = None, labels: Sequence[str] = ()) -> Dict[str, object]:  # fmt: skip
    """Write up to `limit` rehearsal docs to output_path (none: remove it), and
    add the base's other entities to the user's train docs at `fill`; the counts."""
    output_path = Path(output_path)
    if source is None:
        output_path.unlink(missing_ok=True)  # a previous run's rehearsal must not linger in the corpus
        return {"rehearsal": "none"}
    if not base:
        raise ValueError("rehearsal keeps a base pipeline's labels: it needs --base (route b)")
    info = base_pipeline(base)
    tests = TestKeys([p for p in test_paths if Path(p).is_file()])
    counts: Counter = Counter()
    if Path(source).suffix.lower() in FORMATS:
        labelled = read_labelled(Path(source), spacy.blank(info["lang"]))
        docs = [doc for doc in labelled.docs if not tests.matches(doc.text)][:limit]
        found = {e.label_ for d in docs for e in d.ents}
        if not found & set(info["labels"]):
            raise ValueError(f"{source}: none of its entities carries one of {base}'s labels ({', '.join(info['labels'])}): not rehearsal data for it")
        counts.update(read=len(labelled.docs), kept=len(docs))
        counts.update(f"  {e.label_}" for d in docs for e in d.ents)
        kind = f"labelled ({labelled.format})"
        nlp = load_pipeline(base) if fill else None
    else:
        nlp = load_pipeline(base)
        texts = [t for t in read_texts(Path(source)) if t.strip() and not tests.matches(t)][:limit]
        docs = list(annotated_docs(nlp, texts, keep_empty=True, counts=counts))
        kind = f"annotated by {base}"
    write_atomic(output_path, DocBin(docs=docs, attrs=["ENT_IOB", "ENT_TYPE"], store_user_data=False).to_bytes())
    if fill:
        counts["  added to your tweets"] = fill_user_docs(nlp, Path(fill), set(labels))
    return {"rehearsal": kind, "source": str(source), **dict(counts)}


def fill_user_docs(nlp, path: Path, labels: set) -> int:
    """The base's entities of labels not in `labels` added to the docs at path
    where they overlap no entity of the user's; how many were added."""
    vocab = nlp.vocab
    docs = list(DocBin().from_disk(path).get_docs(vocab))
    added = 0
    for doc, predicted in zip(docs, nlp.pipe(doc.text for doc in docs)):
        taken = {i for ent in doc.ents if ent.label_ in labels for i in range(ent.start_char, ent.end_char)}
        extra = []
        for ent in predicted.ents:
            span = doc.char_span(ent.start_char, ent.end_char, label=ent.label_)
            if ent.label_ not in labels and span is not None and not taken.intersection(range(ent.start_char, ent.end_char)):
                extra.append(span)
        kept = [ent for ent in doc.ents if ent.label_ in labels]
        doc.set_ents(sorted(kept + extra, key=lambda s: s.start), default="outside")
        added += len(extra)
    write_atomic(path, DocBin(docs=docs, store_user_data=False).to_bytes())
    return added
