"""twner_member and twner_vote: several trained NER pipelines in one, voting.

Trained pipelines err differently; a vote of their entities is more accurate
than any one of them. An ensemble pipeline runs each member's transformer and
NER in turn, each followed by a `twner_member` component, which moves the
member's entities into `doc.spans[<its name>]` (their confidences in the
group's `attrs["confidence"]`, in span order: spaCy keeps a span extension
by character offsets only, so members that find the same span would share
one `span._.confidence`) and leaves `doc.ents` unset, so that the next
member's NER predicts from scratch rather than around them. `twner_vote` comes last: a span's score
is the weighted mean over members of its confidence for that exact span and
label (0 where a member does not predict it); spans are taken by score,
highest first, skipping any that overlaps one already taken, down to
`threshold`. The vote is `doc.ents`, its score `ent._.confidence`; every
member's entities stay in `doc.spans` for inspection.

Ships inside the ensemble package: imports nothing from spacy_twner.
"""
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

from spacy.language import Language
from spacy.tokens import Doc, Span, SpanGroup
from spacy.util import import_file

try:
    from .registration import register_factory
except ImportError:  # loaded as a lone file, as `spacy package` checks each code file
    register_factory = import_file("twner_registration", Path(__file__).with_name("registration.py")).register_factory

MEMBER, VOTE = "twner_member", "twner_vote"
ATTR = "confidence"

if not Span.has_extension(ATTR):
    Span.set_extension(ATTR, default=None)


class Member:
    """Moves the preceding NER's entities into doc.spans[name], their
    confidences into the group's attrs["confidence"]."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, doc: Doc) -> Doc:
        ents = list(doc.ents)
        confidences = [ent._.get(ATTR) for ent in ents]
        for ent in ents:  # stored by offsets: the next member's span there would read this one's
            ent._.set(ATTR, None)
        doc.spans[self.name] = SpanGroup(doc, name=self.name, spans=ents, attrs={ATTR: confidences})
        doc.set_ents([], default="missing")
        return doc

    def pipe(self, docs: Iterable[Doc], batch_size: int = 128) -> Iterable[Doc]:
        for doc in docs:
            yield self(doc)


class Vote:
    """The members' weighted vote as doc.ents."""

    def __init__(self, name: str, members: List[str], threshold: float, weights: Dict[str, float]) -> None:
        unknown = set(weights) - set(members)
        if not members or unknown or not 0.0 <= threshold <= 1.0 or any(w < 0 for w in weights.values()):
            raise ValueError(f"[{name}] members {members}, weights {weights}, threshold {threshold}: give members, "
                             "weights >= 0 for some of them (the rest weigh 1.0), and a threshold in [0, 1]")  # fmt: skip
        self.name, self.members, self.threshold = name, list(members), threshold
        self.weights = {m: float(weights.get(m, 1.0)) for m in members}
        if not sum(self.weights.values()):
            raise ValueError(f"[{name}] the weights sum to 0")

    def __call__(self, doc: Doc) -> Doc:
        for member in self.members:
            if member not in doc.spans:
                raise ValueError(f"[{self.name}] no doc.spans[{member!r}]: a twner_member component of that name must run before the vote")
        chosen = vote_spans({m: member_spans(doc, m) for m in self.members}, self.weights, self.threshold)
        doc.set_ents([Span(doc, start, end, label=label) for start, end, label, _ in chosen], default="outside")
        for ent, (*_, score) in zip(doc.ents, chosen):
            ent._.set(ATTR, score)
        return doc

    def pipe(self, docs: Iterable[Doc], batch_size: int = 128) -> Iterable[Doc]:
        for doc in docs:
            yield self(doc)

    def score(self, examples, **kwargs) -> Dict[str, object]:
        """spaCy's NER scores of the vote (what `spacy evaluate` reports)."""
        from spacy.scorer import get_ner_prf

        return get_ner_prf(examples)


def member_spans(doc: Doc, member: str) -> List[Tuple[int, int, str, float]]:
    """(start, end, label, confidence) of a member's entities in doc.spans (a
    confidence of None, from a member without a beam, counts as 1.0)."""
    group = doc.spans[member]
    confidences = group.attrs.get(ATTR) or [None] * len(group)
    if len(confidences) != len(group):
        raise ValueError(f"doc.spans[{member!r}] holds {len(group)} spans and {len(confidences)} confidences")
    return [(s.start, s.end, s.label_, 1.0 if c is None else float(c)) for s, c in zip(group, confidences)]


def vote_spans(members: Dict[str, Sequence[Tuple[int, int, str, float]]], weights: Dict[str, float], threshold: float) -> List[Tuple[int, int, str, float]]:
    """The vote: each span's weighted mean confidence over the members (0 where
    one does not predict it), taken by score, highest first, without overlaps,
    down to the threshold; in text order."""
    total = sum(weights.get(m, 1.0) for m in members)
    scores: Dict[Tuple[int, int, str], float] = {}
    for member, spans in members.items():
        for start, end, label, confidence in spans:
            scores[start, end, label] = scores.get((start, end, label), 0.0) + weights.get(member, 1.0) * confidence / total
    taken, used = [], set()
    for (start, end, label), score in sorted(scores.items(), key=lambda item: (-item[1], item[0])):
        if score >= threshold and not used.intersection(range(start, end)):
            taken.append((start, end, label, min(1.0, score)))
            used.update(range(start, end))
    return sorted(taken)


def make_member(nlp: Language, name: str) -> Member:
    return Member(name)


def make_vote(nlp: Language, name: str, members: List[str], threshold: float, weights: Dict[str, float]) -> Vote:
    return Vote(name, members, threshold, weights)


register_factory(MEMBER, make_member, assigns=["doc.spans", f"span._.{ATTR}"], default_config={})
register_factory(
    VOTE,
    make_vote,
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", f"span._.{ATTR}"],
    default_config={"threshold": 0.2, "weights": {}},
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
