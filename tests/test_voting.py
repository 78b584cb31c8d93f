"""twner_member and twner_vote: the vote as a unit on hand-made spans, and an
ensemble of two trained tiny members (float and int8) assembled from the
config `twner ensemble-config` writes, whose members predict inside it
exactly what they predict alone."""
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import Doc, Span, SpanGroup

from spacy_twner.packaging.ensemble import ensemble_config, in_language
from spacy_twner.packaging.optimize import convert_runtime, runtime_config
from spacy_twner.pipeline.voting import Member, Vote


def doc_with(members):
    """A doc whose doc.spans hold each member's (start, end, label, confidence)."""
    nlp = spacy.blank("en")
    doc = nlp("Justin Bieber and Selena Gomez in New York City tonight")
    for name, spans in members.items():
        groups = [Span(doc, s, e, label=label) for s, e, label, _ in spans]
        doc.spans[name] = SpanGroup(doc, name=name, spans=groups, attrs={"confidence": [c for *_, c in spans]})
    return doc


def voted(doc):
    return [(e.start, e.end, e.label_, round(e._.confidence, 3)) for e in doc.ents]


def test_a_span_scores_the_weighted_mean_of_its_members_confidences_and_zero_where_absent():
    doc = doc_with({"a": [(0, 2, "person", 0.9), (7, 10, "geo-loc", 0.6)], "b": [(0, 2, "person", 0.7), (3, 5, "person", 0.8)]})
    assert voted(Vote("vote", ["a", "b"], 0.0, {})(doc)) == [(0, 2, "person", 0.8), (3, 5, "person", 0.4), (7, 10, "geo-loc", 0.3)]
    doc = doc_with({"a": [(0, 2, "person", 0.9), (7, 10, "geo-loc", 0.6)], "b": [(0, 2, "person", 0.7), (3, 5, "person", 0.8)]})
    assert voted(Vote("vote", ["a", "b"], 0.35, {"a": 3.0})(doc)) == [(0, 2, "person", 0.85), (7, 10, "geo-loc", 0.45)]


def test_overlapping_spans_go_to_the_higher_score_and_ties_by_position():
    doc = doc_with({"a": [(7, 9, "geo-loc", 0.9)], "b": [(7, 10, "geo-loc", 0.95), (7, 9, "company", 0.2)]})
    assert voted(Vote("vote", ["a", "b"], 0.1, {})(doc)) == [(7, 10, "geo-loc", 0.475)]
    tie = doc_with({"a": [(0, 2, "person", 0.6)], "b": [(1, 3, "person", 0.6)]})
    assert voted(Vote("vote", ["a", "b"], 0.1, {})(tie)) == [(0, 2, "person", 0.3)]  # equal scores: the earlier span


def test_member_moves_entities_and_confidences_into_spans_and_leaves_ents_unset():
    nlp = spacy.blank("en")
    doc = nlp("Justin Bieber in Paris")
    doc.ents = [doc.char_span(0, 13, label="person"), doc.char_span(17, 22, label="geo-loc")]
    doc.ents[0]._.confidence, doc.ents[1]._.confidence = 0.7, 0.4
    Member("m")(doc)
    assert [(s.text, s.label_) for s in doc.spans["m"]] == [("Justin Bieber", "person"), ("Paris", "geo-loc")]
    assert doc.spans["m"].attrs["confidence"] == [0.7, 0.4]
    assert not doc.ents and all(t.ent_iob == 0 for t in doc)  # missing, so the next NER is unconstrained
    assert Doc(nlp.vocab).from_bytes(doc.to_bytes()).spans["m"].attrs["confidence"] == [0.7, 0.4]


@pytest.mark.parametrize("members,threshold,weights,problem", [
    ([], 0.2, {}, "give members"), (["a"], 1.5, {}, "threshold in [0, 1]"), (["a"], 0.2, {"b": 1.0}, "give members"),
    (["a", "b"], 0.2, {"a": 0.0, "b": 0.0}, "weights sum to 0"),
])  # fmt: skip
def test_bad_vote_settings_are_config_errors(members, threshold, weights, problem):
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        Vote("vote", members, threshold, weights)


def test_a_vote_without_its_members_spans_says_which_component_is_missing():
    with pytest.raises(ValueError, match=r"no doc.spans\['b'\]: a twner_member component of that name"):
        Vote("vote", ["a", "b"], 0.2, {})(doc_with({"a": []}))


@pytest.fixture(scope="module")
def ensemble_dir(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble")
    convert_runtime(str(tiny_model_dir), out / "int8", runtime_config("onnxruntime", int8=True))
    ensemble_config({"fp": str(tiny_model_dir), "q": str(out / "int8")}, threshold=0.2).to_disk(out / "ensemble.cfg")
    subprocess.run([sys.executable, "-m", "spacy", "assemble", str(out / "ensemble.cfg"), str(out / "model")], check=True, capture_output=True)
    return out


def test_members_predict_inside_the_ensemble_what_they_predict_alone(ensemble_dir, tiny_model_dir, tweets):
    nlp = spacy.load(ensemble_dir / "model")
    assert nlp.pipe_names == ["transformer_fp", "ner_fp", "fp", "transformer_q", "ner_q", "q", "vote"]
    docs = list(nlp.pipe(tweets))
    for name, path in (("fp", tiny_model_dir), ("q", ensemble_dir / "int8")):
        alone = [[(e.start_char, e.end_char, e.label_, round(e._.confidence, 5)) for e in d.ents] for d in spacy.load(path).pipe(tweets)]
        inside = [[(e.start_char, e.end_char, e.label_, round(c, 5)) for e, c in zip(d.spans[name], d.spans[name].attrs["confidence"])] for d in docs]
        assert any(alone) and inside == alone, name
    assert sum(len(d.ents) for d in docs) > 0 and all(0.2 <= e._.confidence <= 1.0 for d in docs for e in d.ents)


def test_an_ensemble_saves_loads_and_scores_as_any_pipeline(ensemble_dir, tweets, assets_dir, tmp_path):
    from spacy.training import Corpus

    nlp = spacy.load(ensemble_dir / "model")
    nlp.to_disk(tmp_path / "again")
    again = spacy.load(tmp_path / "again")
    key = lambda docs: [[(e.start, e.end, e.label_, e._.confidence) for e in d.ents] for d in docs]  # noqa: E731
    assert key(again.pipe(tweets)) == key(nlp.pipe(tweets))
    from .conftest import small_corpus

    trained_on = small_corpus(assets_dir, tmp_path, "train", 30, with_entities=True)  # what the members learnt
    assert nlp.evaluate(list(Corpus(trained_on)(nlp)))["ents_f"] > 0.0


def test_a_member_of_another_language_votes_in_the_ensembles_as_it_predicts_alone(ensemble_dir, tweets, tmp_path):
    xx = in_language(ensemble_dir / "int8", "xx", tmp_path / "xx")  # a multilingual member, as xx_twner is
    assert spacy.load(xx).lang == "xx"
    with pytest.raises(ValueError, match="member x is a 'xx' pipeline in an 'en' ensemble"):
        ensemble_config({"fp": str(ensemble_dir / "int8"), "x": str(xx)})
    cli = [sys.executable, "-m", "spacy_twner", "ensemble-config", str(tmp_path / "en" / "config.cfg"), "--member", f"q={ensemble_dir / 'int8'},x={xx}"]
    subprocess.run(cli, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "spacy", "assemble", str(tmp_path / "en" / "config.cfg"), str(tmp_path / "en" / "model")], check=True, capture_output=True)
    nlp, alone = spacy.load(tmp_path / "en" / "model"), spacy.load(xx)
    assert nlp.lang == "en" and spacy.load(tmp_path / "en" / "members" / "x").lang == "en"
    words = [[t.text for t in doc] for doc in nlp.tokenizer.pipe(tweets)]  # the ensemble's tokens, given to both
    docs = [nlp(Doc(nlp.vocab, w)) for w in words]
    inside = [[(s.start, s.end, s.label_) for s in doc.spans["x"]] for doc in docs]
    assert any(inside) and inside == [[(e.start, e.end, e.label_) for e in alone(Doc(alone.vocab, w)).ents] for w in words]


def test_ensemble_config_refuses_one_member_and_names_that_clash(tiny_model_dir):
    with pytest.raises(ValueError, match="two members or more"):
        ensemble_config({"a": str(tiny_model_dir)})
    with pytest.raises(ValueError, match="member name 'ner'"):
        ensemble_config({"ner": str(tiny_model_dir), "b": str(tiny_model_dir)})


def test_tune_vote_scores_each_setting_as_the_assembled_pipeline_would(ensemble_dir, assets_dir, tmp_path):
    """The vote redone per setting over doc.spans scores what a pipeline
    assembled at that setting scores, so the choice on dev is the pipeline's."""
    from spacy.training import Corpus

    from spacy_twner.evaluation.vote import tune_vote

    from .conftest import small_corpus

    dev = small_corpus(assets_dir, tmp_path, "dev", 60)
    report = tune_vote(str(ensemble_dir / "model"), dev, thresholds=(0.1, 0.3), weights=(1.0, 2.0))
    assert [r["members"] for r in report["rows"][:2]] == [["fp"], ["q"]] and len(report["rows"]) == 2 + 2 * 2
    best = report["best"]
    assert best["ents_f"] > 0 and len({round(r["ents_f"], 6) for r in report["rows"]}) > 1  # settings differ: the choice is real
    nlp = spacy.load(ensemble_dir / "model", config={"components.vote.threshold": best["threshold"], "components.vote.weights": best["weights"]})
    assert nlp.evaluate(list(Corpus(dev)(nlp)))["ents_f"] == pytest.approx(best["ents_f"])


def test_a_members_confidence_does_not_leak_to_the_next_member_s_span():
    """spaCy stores span extensions by offsets: the member component clears what
    it read, so a later NER's span there (without a beam) reads None, not this one's."""
    nlp = spacy.blank("en")
    doc = nlp("off to Paris now")
    doc.ents = [doc.char_span(7, 12, label="geo-loc")]
    doc.ents[0]._.confidence = 0.3
    Member("a")(doc)
    doc.ents = [doc.char_span(7, 12, label="company")]  # the next member, no confidence of its own
    Member("b")(doc)
    assert doc.spans["a"].attrs["confidence"] == [0.3] and doc.spans["b"].attrs["confidence"] == [None]
