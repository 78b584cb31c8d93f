"""What `twner annotate` and `twner serve` share: the check a text passes
before it reaches the pipeline, and how a doc's entities and embedding are
written out."""
from typing import Any, Dict, List, Optional

from spacy.tokens import Doc, Span

EMBEDDING_DIGITS = 6
CONFIDENCE_DIGITS = 4


def unicode_problem(text: str) -> Optional[str]:
    """Why spaCy's tokenizer would reject the text, or None: a lone surrogate,
    which JSON escapes can smuggle in."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"lone surrogate U+{ord(text[e.start]):04X} at character {e.start}"
    return None


def entity_record(ent: Span) -> Dict[str, Any]:
    """An entity as JSON: text, label, character offsets, and its confidence if the pipeline gives one."""
    record = {"text": ent.text, "label": ent.label_, "start": ent.start_char, "end": ent.end_char}
    confidence = ent._.get("confidence") if ent.has_extension("confidence") else None
    if confidence is not None:
        record["confidence"] = round(confidence, CONFIDENCE_DIGITS)
    return record


def embedding_record(doc: Doc) -> List[float]:
    """doc._.embedding as a JSON list; an error names the missing component."""
    vector = doc._.get("embedding") if Doc.has_extension("embedding") else None
    if vector is None:
        raise ValueError("the pipeline sets no doc._.embedding (it has no sentence_embedder)")
    return [round(float(x), EMBEDDING_DIGITS) for x in vector]


def cosine(u, v) -> float:
    """Cosine of two vectors; 0.0 where either is all zeros."""
    import numpy

    norm = float(numpy.linalg.norm(u) * numpy.linalg.norm(v))
    return float(numpy.dot(u, v) / norm) if norm else 0.0
