"""Choosing an ensemble's vote on dev (`twner tune-vote`): which members,
their weights and the threshold. Never on test.

The ensemble runs once over dev; every member's entities and confidences are
in doc.spans, so each setting is only a new vote over them (the same
vote_spans the pipeline's twner_vote runs), scored with spaCy's NER scorer.
Each member alone is scored too, as the vote's baseline.
"""
from itertools import combinations, product
from pathlib import Path
from typing import Dict, List, Sequence

from spacy.scorer import get_ner_prf
from spacy.tokens import Span

from ..pipeline.voting import member_spans, vote_spans
from .ner import predict

THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
WEIGHTS = (0.5, 1.0, 2.0)


def tune_vote(model: str, dev_path: Path, thresholds: Sequence[float] = THRESHOLDS, weights: Sequence[float] = WEIGHTS) -> Dict[str, object]:
    """Every member subset (two or more), every weight of the grid for each
    member but the first (fixed at 1), every threshold: dev P/R/F1 of each,
    the best (ties: fewer members, equal weights, the higher threshold), and the best
    of each number of members (a faster and a larger ensemble)."""
    import spacy
    from tqdm import tqdm

    nlp = spacy.load(model)
    vote = next((pipe for _, pipe in nlp.pipeline if hasattr(pipe, "members") and hasattr(pipe, "threshold")), None)
    if vote is None:
        raise ValueError(f"{model}: no twner_vote component: build the ensemble with `twner ensemble-config` and `spacy assemble`")
    examples = predict(nlp, dev_path)
    spans = [{m: member_spans(eg.predicted, m) for m in vote.members} for eg in examples]
    rows: List[Dict[str, object]] = []
    for member in vote.members:
        rows.append({"members": [member], "weights": {member: 1.0}, "threshold": 0.0, **_score(examples, spans, {member: 1.0}, 0.0)})
    settings = [
        (subset, dict(zip(subset, (1.0, *grid))), threshold)
        for size in range(2, len(vote.members) + 1) for subset in combinations(vote.members, size)
        for grid in product(weights, repeat=size - 1) for threshold in thresholds
    ]  # fmt: skip
    for subset, weight, threshold in tqdm(settings, desc="vote settings", unit=" settings", disable=None):
        rows.append({"members": list(subset), "weights": weight, "threshold": threshold, **_score(examples, spans, weight, threshold)})
    votes = [r for r in rows if len(r["members"]) > 1]
    # ties: fewer members, equal weights, the higher threshold
    rank = lambda r: (round(r["ents_f"], 6), -len(r["members"]), -sum(abs(w - 1.0) for w in r["weights"].values()), r["threshold"])  # noqa: E731
    best_by_size = {size: max((r for r in votes if len(r["members"]) == size), key=rank) for size in sorted({len(r["members"]) for r in votes})}
    return {"model": str(model), "data": str(dev_path), "members": list(vote.members), "best": max(votes, key=rank),
            "best_by_size": best_by_size, "rows": rows}  # fmt: skip


def _score(examples, spans, weights: Dict[str, float], threshold: float) -> Dict[str, float]:
    for eg, by_member in zip(examples, spans):
        chosen = vote_spans({m: by_member[m] for m in weights}, weights, threshold)
        eg.predicted.set_ents([Span(eg.predicted, s, e, label=label) for s, e, label, _ in chosen], default="outside")
    scores = get_ner_prf(examples)
    return {"ents_p": scores["ents_p"], "ents_r": scores["ents_r"], "ents_f": scores["ents_f"]}


def vote_rows(report: Dict[str, object], top: int = 12) -> List[tuple]:
    """The members alone and the best vote settings, for the CLI's table."""
    rows = report["rows"]
    singles = [r for r in rows if len(r["members"]) == 1]
    votes = sorted((r for r in rows if len(r["members"]) > 1), key=lambda r: -r["ents_f"])[:top]
    return [("+".join(r["members"]), ", ".join(f"{m} {w:g}" for m, w in r["weights"].items()), f"{r['threshold']:g}",
             f"{100 * r['ents_p']:.1f}", f"{100 * r['ents_r']:.1f}", f"{100 * r['ents_f']:.1f}") for r in singles + votes]  # fmt: skip
