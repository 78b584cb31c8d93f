"""What `twner annotate` and `twner serve` write for a doc, and the checks a text passes first."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span

from spacy_twner.markdown import MISSING, pct, table
from spacy_twner.pipeline import entity_recognizer  # noqa: F401  (registers span._.confidence)
from spacy_twner.serve.records import cosine, embedding_record, entity_record, unicode_problem


def test_a_lone_surrogate_is_named_with_its_position_and_text_passes():
    assert unicode_problem("ok 😀 café") is None
    assert unicode_problem("a\ud83db") == "lone surrogate U+D83D at character 1"


def test_entity_record_has_offsets_and_a_rounded_confidence_when_there_is_one():
    nlp = spacy.blank("en")
    doc = nlp("Heading to New York tomorrow")
    ent = Span(doc, 2, 4, label="geo-loc")
    assert entity_record(ent) == {"text": "New York", "label": "geo-loc", "start": 11, "end": 19}
    ent._.confidence = 0.123456
    assert entity_record(ent)["confidence"] == 0.1235


def test_embedding_record_rounds_and_a_pipeline_without_an_embedder_is_named():
    doc = spacy.blank("en")("hi")
    if not Doc.has_extension("embedding"):
        Doc.set_extension("embedding", default=None)
    with pytest.raises(ValueError, match="no sentence_embedder"):
        embedding_record(doc)
    doc._.embedding = numpy.array([0.1234567, -1.0], dtype="float32")
    assert embedding_record(doc) == [0.123457, -1.0]


def test_cosine_of_a_zero_vector_is_zero_not_nan():
    assert cosine(numpy.zeros(3), numpy.ones(3)) == 0.0
    assert cosine(numpy.array([1.0, 0.0]), numpy.array([1.0, 1.0])) == pytest.approx(2**-0.5)


def test_markdown_tables_and_percentages():
    assert table(("a", "b"), [(1, "x")]) == "| a | b |\n|---|---|\n| 1 | x |"
    assert table(("name", "n"), [], aligns="lr") == "| name | n |\n|:---|---:|"
    assert pct(0.50583) == "50.6" and pct(0.5, 2) == "50.00" and pct(None) == MISSING
