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
from typing import Callable, List, Optional

from spacy.language import Language
from spacy.pipeline.ner import DEFAULT_NER_MODEL, EntityRecognizer
from spacy.pipeline._parser_internals import _beam_utils
from spacy.tokens import Doc, Span
from thinc.api import Model

from .registration import register_factory

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
        """The greedy parse, and the beams that score its entities (none with a beam width of 0)."""
        states = super().predict(docs)
        if isinstance(docs, Doc):
            docs = [docs]
        if not self.confidence_beam_width or not any(len(doc) for doc in docs):
            return states, []
        return states, self.temperature_beam_parse(docs)

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

    def set_annotations(self, docs, states_and_beams) -> None:
        states, beams = states_and_beams
        super().set_annotations(docs, states)
        if not beams:
            return
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
