"""A look at the data before training: tweets, tokens, tags and entity types per split.

What people otherwise count by hand in a notebook: how many entities of each
type a split holds (the rare types are where scores are lowest), the IOB2
tag counts, and how often an entity token starts with a capital letter
compared with any token (the case signal an uncased backbone loses).
"""
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import srsly
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from ..files import write_atomic
from ..markdown import table as markdown_table


def describe(path: Path) -> Dict[str, object]:
    docs = list(DocBin().from_disk(path).get_docs(Vocab()))
    entities = Counter(ent.label_ for doc in docs for ent in doc.ents)
    tags = Counter(f"{t.ent_iob_}-{t.ent_type_}" if t.ent_type_ else "O" for doc in docs for t in doc)
    tokens = [t for doc in docs for t in doc]
    entity_tokens = [t for t in tokens if t.ent_type_]
    return {
        "tweets": len(docs),
        "tokens": len(tokens),
        "entities": sum(entities.values()),
        "entities_per_type": dict(sorted(entities.items())),
        "tags": dict(sorted(tags.items())),
        "capitalized_share": {
            "entity_tokens": _capitalized(entity_tokens),
            "all_tokens": _capitalized(tokens),
        },
    }


def _capitalized(tokens: Sequence) -> Optional[float]:
    return round(sum(t.text[:1].isupper() for t in tokens) / len(tokens), 4) if tokens else None


def describe_splits(paths: Sequence[Path], output_path: Path, plot_path: Optional[Path] = None) -> Dict[str, dict]:
    """describe() of each DocBin, named by file stem, written as JSON (and a plot)."""
    table = {Path(p).stem: describe(p) for p in paths}
    write_atomic(output_path, srsly.json_dumps(table, indent=2).encode("utf-8"))
    if plot_path:
        from ..plots import plot_data

        plot_data(table, plot_path)
    return table


def stats_markdown(table: Dict[str, dict]) -> str:
    """Entities per type and split, then the totals and the case shares."""
    splits = list(table)
    types = sorted({t for s in table.values() for t in s["entities_per_type"]})
    rows: List[tuple] = [(t, *(table[s]["entities_per_type"].get(t, 0) for s in splits)) for t in types]
    for name, key in (("**entities**", "entities"), ("tweets", "tweets"), ("tokens", "tokens")):
        rows.append((name, *(f"{table[s][key]:,}" for s in splits)))
    for name, key in (("capitalized, entity tokens", "entity_tokens"), ("capitalized, all tokens", "all_tokens")):
        rows.append((name, *(f"{table[s]['capitalized_share'][key]:.2f}" for s in splits)))
    return markdown_table(["type", *splits], rows)
