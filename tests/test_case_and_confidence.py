"""Case as token types inside the transformer, the tweet-adapted backbone, and
the entity confidences with their calibration, and the averaged weights that
spaCy scores and saves with `use_averages = true`."""
import json

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_config, load_model_from_config

from spacy_twner.evaluation.ner import calibration
from spacy_twner.pipeline import entity_recognizer  # noqa: F401  (registers span._.confidence)
from spacy_twner.pipeline.case_types import CAPITALIZED, LOWER, MIXED, NO_LETTERS, UPPER, CaseTokenTypes, word_case

from spacy_twner.pipeline.transformer_model import transformer_module
from spacy_twner.training.pretrain import HELD_OUT

from .conftest import ROOT

TEXT = "Heading to New York with APPLE and my iPhone 😀 #Apple @Bieber lol"


@pytest.mark.parametrize(
    "word,case",
    [("apple", LOWER), ("Apple", CAPITALIZED), ("I", CAPITALIZED), ("#Apple", CAPITALIZED), ("APPLE", UPPER),
     ("U.S.", UPPER), ("iPhone", MIXED), ("McDonald's", MIXED), ("@JustinBieber", MIXED), ("2017", NO_LETTERS),
     ("😀", NO_LETTERS), ("東京", NO_LETTERS), ("Ελλάδα", CAPITALIZED), ("ß", LOWER)],
)  # fmt: skip
def test_word_case(word, case):
    assert word_case(word) == case


def build(token_types: bool):
    overrides = {} if token_types else {"components.transformer.model.token_types": None}
    config = load_config(ROOT / "configs" / "trf.cfg", overrides=overrides, interpolate=True)
    nlp = load_model_from_config(config, auto_fill=True)
    nlp.initialize()
    return nlp


def test_each_wordpiece_gets_its_words_case_and_the_grown_model_starts_where_it_was():
    """Types reach the model; every new token-type row is a copy of row 0, so
    before training the output is exactly the backbone's without types."""
    cased, plain = build(True), build(False)
    trf = transformer_module(cased)
    table = trf.embeddings.token_type_embeddings.weight.detach().numpy()
    assert table.shape[0] == CaseTokenTypes.n_types and trf.config.type_vocab_size == 5
    assert all(numpy.array_equal(row, table[0]) for row in table)
    doc = cased(TEXT)
    wordpieces = doc._.trf_data.wordpieces
    pieces, types = wordpieces.strings[0], wordpieces.token_type_ids[0].tolist()
    by_piece = {}
    for piece, type_id in zip(pieces, types):
        by_piece.setdefault(piece, type_id)  # the first time: "APPLE" comes before "#Apple"
    assert pieces[0] == "[CLS]" and types[0] == 0 and types[len(pieces) - 1] == 0
    assert (by_piece["heading"], by_piece["new"], by_piece["apple"], by_piece["my"]) == (CAPITALIZED, CAPITALIZED, UPPER, LOWER)
    assert by_piece["iphone"] == MIXED and by_piece["[UNK]"] == NO_LETTERS
    # every piece of a word carries the word's class: "@Bieber" -> bi ##eber, "lol" -> lo ##l
    assert (by_piece["bi"], by_piece["##eber"], by_piece["lo"], by_piece["##l"]) == (CAPITALIZED, CAPITALIZED, LOWER, LOWER)
    other = plain(TEXT)
    assert transformer_module(plain).config.type_vocab_size == 2
    assert numpy.allclose(doc._.trf_data.model_output.last_hidden_state, other._.trf_data.model_output.last_hidden_state, atol=1e-5)


@pytest.mark.slow
def test_trained_pipeline_learnt_case_rows_and_keeps_them_through_every_runtime(model_dir, run_dir):
    nlp = spacy.load(model_dir)
    trf = transformer_module(nlp)
    table = trf.embeddings.token_type_embeddings.weight.detach().numpy()
    assert table.shape[0] == 5 and not numpy.allclose(table[1], table[0])
    torch_doc = nlp(TEXT)
    ort_doc = spacy.load(model_dir, config={"components.transformer.model.runtime": {"@misc": "spacy_twner.OnnxRuntime.v1", "quantize": False}})(TEXT)
    assert numpy.array_equal(ort_doc._.trf_data.wordpieces.token_type_ids, torch_doc._.trf_data.wordpieces.token_type_ids)
    assert numpy.allclose(ort_doc._.trf_data.model_output.last_hidden_state, torch_doc._.trf_data.model_output.last_hidden_state, atol=1e-4)


@pytest.mark.slow
def test_pretraining_lowered_the_held_out_masked_lm_loss(project):
    stats = json.loads((project / "training" / "backbone" / "twner_pretrain.json").read_text())
    # the slice reads its 200 training texts and 500 more, and holds out a tenth of what it read (a small text's share)
    assert stats["texts"] == 200 and stats["held_out_texts"] == (200 + HELD_OUT) // 10
    assert stats["held_out_mlm_loss_after"] < stats["held_out_mlm_loss_before"] - 0.5


@pytest.mark.slow
def test_confidences_score_the_greedy_entities_without_changing_them(model_dir, assets_dir):
    texts = (assets_dir / "tweets-unlabeled" / "ile.10000.txt").read_text(encoding="utf-8").splitlines()[:200]
    scored = spacy.load(model_dir)
    plain = spacy.load(model_dir, config={"components.ner.confidence_beam_width": 0})
    docs, plain_docs = list(scored.pipe(texts)), list(plain.pipe(texts))
    ents = [[(e.start, e.end, e.label_) for e in d.ents] for d in docs]
    assert ents == [[(e.start, e.end, e.label_) for e in d.ents] for d in plain_docs]
    confidences = [e._.confidence for d in docs for e in d.ents]
    assert confidences and all(0.0 <= c <= 1.0 for c in confidences)
    assert all(e._.confidence is None for d in plain_docs for e in d.ents)
    hot = spacy.load(model_dir, config={"components.ner.confidence_temperature": 5.0})
    hot_confidences = [e._.confidence for d in hot.pipe(texts) for e in d.ents]
    assert hot_confidences != confidences
    with pytest.raises(ValueError, match="confidence_temperature"):
        spacy.load(model_dir, config={"components.ner.confidence_temperature": 0.0})


@pytest.mark.slow
def test_the_beam_runs_only_for_docs_with_entities_and_confidences_stay_those_of_a_beam_over_all(model_dir, assets_dir):
    """Skipping the beam for docs without entities changes no confidence: each
    doc's beam is its own, as a beam over every doc of the batch shows."""
    texts = (assets_dir / "tweets-unlabeled" / "ile.10000.txt").read_text(encoding="utf-8").splitlines()[:200]
    nlp = spacy.load(model_dir, exclude=["sentence_embedder"])
    ner = nlp.get_pipe("ner")
    beamed = []
    beam_parse = ner.temperature_beam_parse
    ner.temperature_beam_parse = lambda docs: beamed.extend(d.text for d in docs) or beam_parse(docs)
    docs = list(nlp.pipe(texts, batch_size=64))
    del ner.temperature_beam_parse
    with_ents = [d.text for d in docs if d.ents]
    # the parser sorts each batch by length, so the beams come in another order
    assert 0 < len(with_ents) < len(docs) and sorted(beamed) == sorted(with_ents)

    every = list(nlp.pipe(texts, batch_size=64, disable=["ner"]))  # transformer output, no entities yet
    beams = ner.temperature_beam_parse(every)
    for doc, predicted in zip(every, docs):
        doc.set_ents([doc.char_span(e.start_char, e.end_char, label=e.label_) for e in predicted.ents], default="outside")
    ner.set_confidences(every, beams)
    ours = [e._.confidence for d in docs for e in d.ents]
    assert ours == pytest.approx([e._.confidence for d in every for e in d.ents], abs=1e-5)


def test_expected_calibration_error_on_hand_made_entities():
    """Four entities at 0.9 of which 3 are right, two at 0.2 of which 1 is right:
    ECE = 4/6 |0.75 - 0.9| + 2/6 |0.5 - 0.2| = 0.2."""
    vocab = spacy.blank("en").vocab
    words = ["A", "B", "C", "D", "E", "F"]
    gold = Doc(vocab, words=words, ents=["B-x", "B-x", "B-x", "O", "B-x", "O"])
    pred = Doc(vocab, words=words, ents=["B-x", "B-x", "B-x", "B-x", "B-x", "B-x"])
    for ent, confidence in zip(pred.ents, [0.9, 0.9, 0.9, 0.9, 0.2, 0.2]):
        ent._.confidence = confidence
    result = calibration([Example(pred, gold)])
    assert result["entities"] == 6 and result["ece"] == pytest.approx(0.2)
    assert result["brier"] == pytest.approx((3 * 0.1**2 + 0.9**2 + 0.8**2 + 0.2**2) / 6)
    assert [b["count"] for b in result["bins"]] == [0, 0, 2, 0, 0, 0, 0, 0, 0, 4]
    assert result["bins"][9]["accuracy"] == pytest.approx(0.75) and result["bins"][2]["accuracy"] == pytest.approx(0.5)
    assert calibration([Example(Doc(vocab, words=words, ents=["B-x"] + ["O"] * 5), gold)]) is None


@pytest.mark.slow
def test_calibrate_chooses_the_temperature_with_the_lowest_brier_score_on_dev(project, model_dir, tmp_path):
    from .conftest import twner

    applied = tmp_path / "calibrated"
    run = twner("calibrate", model_dir, project / "corpus" / "wnut17-dev.spacy", "--output", tmp_path / "cal.json", "--apply", applied)
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "cal.json").read_text())
    table = result["table"]
    assert [row["temperature"] for row in table] == [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0]
    assert result["best_temperature"] == min(table, key=lambda row: row["brier"])["temperature"]
    assert len({row["accuracy"] for row in table}) == 1  # the entities do not change, only their confidences
    assert len({row["mean_confidence"] for row in table}) > 1  # the temperature reaches the confidences
    # At the pipeline's own temperature the confidences are the ones it sets itself.
    from spacy_twner.evaluation.ner import calibration, predict

    nlp = spacy.load(model_dir)
    own = calibration(predict(nlp, project / "corpus" / "wnut17-dev.spacy"))
    temperature = nlp.get_pipe("ner").confidence_temperature
    assert next(row for row in table if row["temperature"] == temperature)["mean_confidence"] == pytest.approx(own["mean_confidence"])
    # --apply saved the same pipeline with the chosen temperature, checksums and all:
    # it loads (checked), finds the same entities, and its confidences are the table's.
    calibrated = spacy.load(applied)
    assert calibrated.get_pipe("ner").confidence_temperature == result["best_temperature"]
    chosen = calibration(predict(calibrated, project / "corpus" / "wnut17-dev.spacy"))
    assert chosen["accuracy"] == pytest.approx(own["accuracy"]) and chosen["entities"] == own["entities"]
    best = next(row for row in table if row["temperature"] == result["best_temperature"])
    assert chosen["mean_confidence"] == pytest.approx(best["mean_confidence"])


@pytest.mark.slow
def test_averaged_weights_reach_the_transformer_when_spacy_evaluates_and_saves(project, tmp_path):
    """`use_averages = true`: inside nlp.use_params(optimizer.averages), which
    spaCy enters to score dev and to write model-best/model-last, the
    transformer runs on the averaged weights, not only the NER head; after it,
    the raw weights are back, bit for bit."""
    from spacy.tokens import DocBin
    from thinc.api import Adam

    nlp = build(True)
    gold = list(DocBin().from_disk(project / "corpus" / "wnut17-dev.spacy").get_docs(nlp.vocab))[:16]
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in gold]
    optimizer = Adam(0.001, use_averages=True)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    shim = nlp.get_pipe("transformer").model.layers[0].shims[0]
    params = dict(shim._model.named_parameters())
    raw = {name: p.detach().clone() for name, p in params.items()}
    averaged = {n: optimizer.averages[(shim.id, n)].reshape(p.shape) for n, p in params.items() if (shim.id, n) in optimizer.averages}
    assert set(params) - set(averaged) == {n for n in params if n.startswith("pooler.")}  # the pooler gets no gradient
    raw_output = nlp(TEXT)._.trf_data.model_output.last_hidden_state
    with nlp.use_params(optimizer.averages):
        assert all(numpy.array_equal(params[name].detach().numpy(), average) for name, average in averaged.items())
        assert max(float(abs(raw[name].numpy() - average).max()) for name, average in averaged.items()) > 1e-3
        assert not numpy.allclose(nlp(TEXT)._.trf_data.model_output.last_hidden_state, raw_output, atol=1e-4)
        nlp.to_disk(tmp_path / "averaged")
    assert all(p.detach().equal(raw[name]) for name, p in params.items())
    saved = dict(transformer_module(spacy.load(tmp_path / "averaged")).named_parameters())
    assert all(numpy.array_equal(saved[name].detach().numpy(), average) for name, average in averaged.items())
