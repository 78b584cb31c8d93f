"""Self-training data: a pipeline's own confident annotations of unlabeled tweets.

A tweet is kept when it has at least one entity and every entity's
confidence (`ent._.confidence`, twner_ner) reaches the threshold; tweets
without entities are left out, since a missed entity would be taught as
"no entity". The input must already be free of test text (`twner
filter-text`). Rare types are where self-training tends to repeat its own
mistakes: the counts per type say what the pseudo-labels hold.
"""
from collections import Counter
from pathlib import Path
from typing import Dict

from spacy.tokens import Doc, DocBin


def pseudo_label(model: str, input_path: Path, output_path: Path, *, min_confidence: float = 0.9,
                 batch_size: int = 64, gpu_id: int = -1) -> Dict[str, int]:  # fmt: skip
    from tqdm import tqdm

    from ..loading import load_pipeline
    from ..files import write_atomic
    from ..data.corpus import read_texts

    nlp = load_pipeline(model, gpu_id=gpu_id)
    if not any(getattr(pipe, "confidence_beam_width", 0) for _, pipe in nlp.pipeline):
        raise ValueError(f"{model}: its NER gives no entity confidences (factory twner_ner with confidence_beam_width > 0)")
    texts = [t for t in read_texts(input_path) if t.strip()]
    kept = DocBin(attrs=["ENT_IOB", "ENT_TYPE"], store_user_data=False)
    counts: Counter = Counter(read=len(texts))
    for doc in tqdm(nlp.pipe(texts, batch_size=batch_size), total=len(texts), desc="pseudo-labelling", unit=" tweets", disable=None):
        if not doc.ents:
            continue
        counts["with_entities"] += 1
        if any(ent._.confidence is None or ent._.confidence < min_confidence for ent in doc.ents):
            continue
        counts["kept"] += 1
        counts.update(f"  {ent.label_}" for ent in doc.ents)
        kept.add(Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc],
                     ents=[f"{t.ent_iob_}-{t.ent_type_}" if t.ent_type_ else "O" for t in doc]))  # fmt: skip
    write_atomic(output_path, kept.to_bytes())
    return dict(counts)

