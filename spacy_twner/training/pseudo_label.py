"""A pipeline's own annotations of unlabeled tweets, as training data.

Self-training keeps a tweet when it has at least one entity and every
entity's confidence (`ent._.confidence`) reaches the threshold; tweets
without entities are left out, since a missed entity would be taught as "no
entity". Rehearsal (continuing from a pipeline while keeping its labels)
keeps every tweet as the pipeline annotates it, empty ones included. The
texts must already be free of test text (`twner filter-text`, or the
rehearsal step's own filter). The counts per type say what the labels hold.
"""
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable

from spacy.language import Language
from spacy.tokens import Doc, DocBin


def annotated_docs(nlp: Language, texts: Iterable[str], *, min_confidence: float = 0.0, keep_empty: bool = False,
                   batch_size: int = 64, counts: Counter) -> Iterable[Doc]:  # fmt: skip
    """The pipeline's entities as plain Docs (tokens, spaces, IOB), those it keeps; counts updated on the way."""
    from tqdm import tqdm

    texts = list(texts)
    counts["read"] += len(texts)
    for doc in tqdm(nlp.pipe(texts, batch_size=batch_size), total=len(texts), desc="annotating", unit=" tweets", disable=None):
        if not doc.ents and not keep_empty:
            continue
        counts["with_entities"] += bool(doc.ents)
        if any(ent._.confidence is None or ent._.confidence < min_confidence for ent in doc.ents):
            continue
        counts["kept"] += 1
        counts.update(f"  {ent.label_}" for ent in doc.ents)
        yield Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc],
                  ents=[f"{t.ent_iob_}-{t.ent_type_}" if t.ent_type_ else "O" for t in doc])  # fmt: skip


def pseudo_label(model: str, input_path: Path, output_path: Path, *, min_confidence: float = 0.9,
                 batch_size: int = 64, gpu_id: int = -1) -> Dict[str, int]:  # fmt: skip
    """Self-training data: the tweets whose every entity is confident."""
    from ..data.corpus import read_texts
    from ..files import write_atomic
    from ..loading import load_pipeline

    nlp = load_pipeline(model, gpu_id=gpu_id)
    if min_confidence > 0 and not any(getattr(pipe, "confidence_beam_width", 0) for _, pipe in nlp.pipeline):
        raise ValueError(f"{model}: its NER gives no entity confidences (factory twner_ner with confidence_beam_width > 0)")
    counts: Counter = Counter()
    docs = annotated_docs(nlp, (t for t in read_texts(input_path) if t.strip()), min_confidence=min_confidence,
                          batch_size=batch_size, counts=counts)  # fmt: skip
    write_atomic(output_path, DocBin(docs=list(docs), attrs=["ENT_IOB", "ENT_TYPE"], store_user_data=False).to_bytes())
    return dict(counts)
