"""twner_ner: spaCy's transition-based NER, with a confidence for each entity.

The entities are the greedy parse's, exactly those of spaCy's `ner` with the
same weights. The confidence of an entity is the probability mass of the
beam-search parses that contain it (`EntityRecognizer.scored_ents`, beam of
`confidence_beam_width` parses, transition scores divided by
`confidence_temperature` first): how much of the model's belief agrees with
that entity. It is stored on the span, `ent._.confidence` (a float in [0, 1];
None where the component did not run), and survives `Doc.to_bytes` and
`DocBin(store_user_data=True)` like any span extension.

Ships inside en_twner: imports nothing from spacy_twner.
"""
from pathlib import Path
from typing import Callable, List, Optional

from spacy.language import Language
from spacy.pipeline.ner import DEFAULT_NER_MODEL, EntityRecognizer
from spacy.pipeline._parser_internals import _beam_utils
from spacy.tokens import Doc, Span
from spacy.util import import_file
from thinc.api import Model

try:
    from .registration import register_factory
except ImportError:  # loaded as a lone file, as `spacy package` checks each code file
    register_factory = import_file("twner_registration", Path(__file__).with_name("registration.py")).register_factory

FACTORY = "twner_ner"
ATTR = "confidence"

if not Span.has_extension(ATTR):
    Span.set_extension(ATTR, default=None)


class ScoredEntityRecognizer(EntityRecognizer):
    def __init__(self, vocab, model: Model, name: str = "ner", *, confidence_beam_width: int = 16,
                 confidence_temperature: float = 1.0, **kwargs) -> None:  # fmt: skip
        super().__init__(vocab, model, name, **kwargs)
        if confidence_beam_width < 0 or confidence_temperature <= 0:
            raise ValueError(f"[{name}] confidence_beam_width must be >= 0 and confidence_temperature > 0")
        self.confidence_beam_width = confidence_beam_width
        self.confidence_temperature = confidence_temperature

    def predict(self, docs):
        """The greedy parse, and the beams that score its entities: one per doc
        with an entity (none with a beam width of 0). A doc without entities has
        nothing to score, and each doc's beam is its own, so skipping those docs
        changes no confidence."""
        states = super().predict(docs)
        if isinstance(docs, Doc):
            docs = [docs]
        if not self.confidence_beam_width:
            return states, [], []
        scored = [i for i, (doc, state) in enumerate(zip(docs, states)) if len(doc) and self._has_entities(doc, state)]
        return states, scored, self.temperature_beam_parse([docs[i] for i in scored]) if scored else []

    def _has_entities(self, doc: Doc, state) -> bool:
        """Whether a greedy parse state holds an entity, read off a scratch copy
        of the doc's words (the doc itself is annotated later, in set_annotations)."""
        probe = Doc(doc.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])
        self.moves.set_annotations(state, probe)
        return bool(probe.ents)

    def temperature_beam_parse(self, docs: List[Doc]) -> list:
        """Parser.beam_parse with the transition scores divided by the temperature."""
        self._ensure_labels_are_added(docs)
        batch = _beam_utils.BeamBatch(self.moves, self.moves.init_batch(docs), None, self.confidence_beam_width, density=0.0)
        model = self.model.predict(docs)
        while not batch.is_done:
            states = batch.get_unfinished_states()
            if not states:
                break
            batch.advance(model.predict(states) / self.confidence_temperature)
        model.clear_memory()
        return list(batch)

    def set_annotations(self, docs, parse) -> None:
        states, scored, beams = parse
        super().set_annotations(docs, states)
        if isinstance(docs, Doc):
            docs = [docs]
        self.set_confidences([docs[i] for i in scored], beams)

    def set_confidences(self, docs: List[Doc], beams: list) -> None:
        """Each entity's confidence: the probability mass of its doc's beam parses that contain it."""
        for doc, scores in zip(docs, self.scored_ents(beams)):
            for ent in doc.ents:
                # Summed probabilities can overshoot 1 by a rounding error.
                ent._.set(ATTR, min(1.0, float(scores.get((ent.start, ent.end, ent.label_), 0.0))))


def make_scored_ner(
    nlp: Language,
    name: str,
    model: Model,
    moves,
    update_with_oracle_cut_size: int,
    incorrect_spans_key: Optional[str],
    scorer: Optional[Callable],
    confidence_beam_width: int,
    confidence_temperature: float,
) -> ScoredEntityRecognizer:
    return ScoredEntityRecognizer(
        nlp.vocab, model, name, moves=moves, update_with_oracle_cut_size=update_with_oracle_cut_size,
        incorrect_spans_key=incorrect_spans_key, scorer=scorer,
        confidence_beam_width=confidence_beam_width, confidence_temperature=confidence_temperature,
    )  # fmt: skip


register_factory(
    FACTORY,
    make_scored_ner,
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", f"span._.{ATTR}"],
    default_config={
        "moves": None,
        "update_with_oracle_cut_size": 100,
        "model": DEFAULT_NER_MODEL,
        "incorrect_spans_key": None,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
        "confidence_beam_width": 16,
        "confidence_temperature": 1.0,
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
