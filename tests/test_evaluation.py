"""The evaluation harness: spaCy's scorer against the conlleval definition,
bootstrap intervals, error kinds, and `twner evaluate` end to end."""
import json
import random
import subprocess
import sys

import pytest
import spacy
from spacy.scorer import get_ner_prf
from spacy.tokens import Doc, DocBin
from spacy.training import Example

from spacy_twner.evaluation.compare import compare_table, throughput_markdown
from spacy_twner.data.conll import read_conll, sentences_to_docs
from spacy_twner.evaluation.ner import (
    aligned_spans, bootstrap_intervals, count_matches, error_kinds, evaluate_examples,
)  # fmt: skip

from .conftest import ROOT, wnut_file


def example(words, gold_tags, pred_tags):
    vocab = spacy.blank("en").vocab
    return Example(Doc(vocab, words=words, ents=pred_tags), Doc(vocab, words=words, ents=gold_tags))


# conlleval's definition: a predicted chunk is correct when a gold chunk has the
# same type, first and last token; P = correct / predicted chunks, R = correct /
# gold chunks. Expected (correct, predicted, gold) chunks counted by hand.
CONLLEVAL_CASES = {
    "exact": (["Justin", "Bieber", "rocks"], ["B-person", "I-person", "O"], ["B-person", "I-person", "O"], (1, 1, 1)),
    "boundary": (["Justin", "Bieber", "rocks"], ["B-person", "I-person", "O"], ["B-person", "O", "O"], (0, 1, 1)),
    "type": (["Paris", "today"], ["B-geo-loc", "O"], ["B-person", "O"], (0, 1, 1)),
    "adjacent same type": (["Ann", "Bob"], ["B-person", "B-person"], ["B-person", "I-person"], (0, 1, 2)),
    "one right, one missed, one spurious": (
        ["Ann", "in", "Rome", "at", "Nike"], ["B-person", "O", "B-geo-loc", "O", "O"],
        ["B-person", "O", "O", "O", "B-company"], (1, 2, 2)),
    "nothing to find": (["lol", "ok"], ["O", "O"], ["O", "O"], (0, 0, 0)),
}  # fmt: skip


@pytest.mark.parametrize("name", CONLLEVAL_CASES)
def test_scorer_follows_conlleval_on_hand_made_cases(name):
    words, gold, pred, (correct, n_pred, n_gold) = CONLLEVAL_CASES[name]
    eg = example(words, gold, pred)
    scores = get_ner_prf([eg])
    if n_pred or n_gold:
        assert scores["ents_p"] == pytest.approx(correct / n_pred if n_pred else 0.0)
        assert scores["ents_r"] == pytest.approx(correct / n_gold if n_gold else 0.0)
    else:  # conlleval prints 0.00; spaCy says there is no score rather than a bad one
        assert scores["ents_f"] is None
    tp, fp, fn = (sum(c[k] for c in count_matches(*aligned_spans(eg)).values()) for k in range(3))
    assert (tp, tp + fp, tp + fn) == (correct, n_pred, n_gold)


def test_scores_are_micro_averaged_over_tweets_as_conlleval_does():
    # tweet 1: 2 gold, both found; tweet 2: 1 gold, 3 predicted, none right
    egs = [
        example(["Ann", "and", "Bob"], ["B-person", "O", "B-person"], ["B-person", "O", "B-person"]),
        example(["go", "Lakers", "go", "LA"], ["O", "B-sportsteam", "O", "O"], ["B-other", "B-person", "O", "B-geo-loc"]),
    ]  # fmt: skip
    scores = get_ner_prf(egs)
    assert (scores["ents_p"], scores["ents_r"]) == (pytest.approx(2 / 5), pytest.approx(2 / 3))
    assert scores["ents_f"] == pytest.approx(0.5)
    metrics, errors = evaluate_examples(egs, n_bootstrap=50)
    assert errors == [0, 4] and metrics["ents_f"] == pytest.approx(0.5)


def test_error_kinds_and_confusions():
    gold = [("person", 0, 2), ("geo-loc", 3, 4), ("company", 5, 6), ("other", 7, 9), ("movie", 10, 11)]
    pred = [("person", 0, 1), ("person", 3, 4), ("company", 5, 6), ("product", 7, 8), ("tvshow", 12, 13)]
    kinds, confusion = error_kinds(gold, pred)
    assert kinds == {"boundary": 1, "label": 1, "label+boundary": 1, "spurious": 1, "missed": 1}
    assert confusion[("geo-loc", "person")] == 1 and confusion[("company", "company")] == 1
    assert confusion[("movie", "(none)")] == 1 and confusion[("(none)", "tvshow")] == 1
    assert sum(n for (g, _), n in confusion.items() if g != "(none)") == len(gold)


def test_bootstrap_interval_brackets_the_score_and_narrows_with_more_tweets():
    rng = random.Random(0)
    per_doc = [{"person": [rng.random() < 0.6, rng.random() < 0.3, rng.random() < 0.4]} for _ in range(2000)]
    small, large = (bootstrap_intervals(per_doc[:n], ["person"], n=500) for n in (100, 2000))
    tp, fp, fn = (sum(d["person"][k] for d in per_doc) for k in range(3))
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert large["ents_f"][0] < f1 < large["ents_f"][1]
    assert large["ents_f"][1] - large["ents_f"][0] < (small["ents_f"][1] - small["ents_f"][0]) / 2
    assert large == bootstrap_intervals(per_doc, ["person"], n=500)  # seeded
    same = bootstrap_intervals([{"person": [1, 1, 0]}] * 50, ["person"], n=100)
    assert same["ents_p"] == [0.5, 0.5] and same["ents_per_type_f"]["person"] == pytest.approx([2 / 3, 2 / 3])


def test_counts_agree_with_spacy_scorer_on_real_tweets_with_other_tokenization(assets_dir):
    """Damaged predictions on WNUT16 dev, re-tokenized by spaCy's English
    tokenizer (so alignment matters): per-tweet counts sum to spaCy's scores."""
    nlp = spacy.blank("en")
    gold_docs = list(sentences_to_docs(nlp.vocab, read_conll(wnut_file(assets_dir, "wnut16", "dev")).sentences))
    rng = random.Random(1)
    examples = []
    for gold in gold_docs:
        pred = nlp.make_doc(gold.text)
        spans = []
        for ent in gold.ents:
            start, end, label = ent.start_char, ent.end_char, ent.label_
            roll = rng.random()
            if roll < 0.2:
                continue
            if roll < 0.35:
                label = "other" if label != "other" else "person"
            elif roll < 0.5 and len(ent) > 1:
                end = ent[:-1].end_char
            span = pred.char_span(start, end, label=label, alignment_mode="expand")
            if span is not None and not any(s.start < span.end and span.start < s.end for s in spans):
                spans.append(span)
        pred.ents = spans
        examples.append(Example(pred, gold))
    assert sum(len(eg.predicted) != len(eg.reference) for eg in examples) > 50
    scores = get_ner_prf(examples)
    totals = {}
    for eg in examples:
        for label, counts in count_matches(*aligned_spans(eg)).items():
            totals[label] = [a + b for a, b in zip(totals.get(label, [0, 0, 0]), counts)]
    tp, fp, fn = (sum(c[k] for c in totals.values()) for k in range(3))
    assert scores["ents_p"] == pytest.approx(tp / (tp + fp)) and scores["ents_r"] == pytest.approx(tp / (tp + fn))
    for label, (tp, fp, fn) in totals.items():
        assert scores["ents_per_type"][label]["f"] == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    assert 0.4 < scores["ents_f"] < 0.9


@pytest.mark.slow
def test_twner_evaluate_writes_metrics_plot_and_worst_tweets(tmp_path, project, model_dir):
    """On the trained slice pipeline: the scores equal `spacy evaluate`'s, the
    interval holds them, and the outputs exist and can be compared."""
    docs = list(DocBin().from_disk(project / "corpus" / "wnut17-test.spacy").get_docs(spacy.blank("en").vocab))[:80]
    data = tmp_path / "test80.spacy"
    DocBin(docs=docs).to_disk(data)
    out = {k: tmp_path / f"run.{k}" for k in ("json", "png", "html")}
    log = project / "training" / "wnut17-trf" / "train_log.jsonl"
    subprocess.run(
        [sys.executable, "-m", "spacy_twner", "evaluate", str(model_dir), str(data), "--output", str(out["json"]),
         "--plot", str(out["png"]), "--worst", str(out["html"]), "--train-log", str(log), "--changes", "slice",
         "--bootstrap", "200"], check=True)  # fmt: skip
    subprocess.run([sys.executable, "-m", "spacy", "evaluate", str(model_dir), str(data), "--output", str(tmp_path / "spacy.json")], check=True)
    ours, theirs = (json.loads(p.read_text()) for p in (out["json"], tmp_path / "spacy.json"))
    for key in ("ents_p", "ents_r", "ents_f"):
        assert ours[key] == pytest.approx(theirs[key])
    assert ours["ents_per_type"].keys() == theirs["ents_per_type"].keys()
    for label, scores in theirs["ents_per_type"].items():
        assert ours["ents_per_type"][label] == pytest.approx(scores)
    low, high = ours["ci"]["ents_f"]
    assert low <= ours["ents_f"] <= high and ours["n_docs"] == 80
    assert ours["train_seconds"] > 0 and ours["train_steps"] == 6 and ours["changes"] == "slice"
    n_gold = sum(len(d.ents) for d in docs)
    assert sum(n for g, _, n in ours["confusion"] if g != "(none)") == n_gold
    assert out["png"].read_bytes()[:4] == b"\x89PNG"
    page = out["html"].read_text()
    assert "gold" in page and "predicted" in page and page.count("<tr>") > 1
    assert "| run | what changed |" in compare_table({"a": ours, "b": theirs})


def test_info_may_not_overwrite_what_the_record_sets(tmp_path):
    """`--info model=...` once raised a TypeError from dict.update; now a clear error, no record."""
    data = tmp_path / "test.spacy"
    DocBin(docs=[Doc(spacy.blank("en").vocab, words=["hi"])]).to_disk(data)
    out = tmp_path / "record.json"
    run = subprocess.run(
        [sys.executable, "-m", "spacy_twner", "evaluate", "any-model", str(data), "--output", str(out), "--info", "model=x"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 1 and "--info model=...: the record sets model itself" in run.stdout + run.stderr
    assert not out.exists()


def test_throughput_table_states_default_over_no_embedder_round_by_round():
    """The embedder's cost as the issue's bar reads it (ratio of the medians),
    with each round's pair beside it, from a committed record."""
    record = json.loads((ROOT / "docs/runs/throughput-4.json").read_text())
    text = throughput_markdown(record)
    assert "default / no-embedder, tweets/s: 0.881 (round by round: 1.009, 0.835, 0.868, 0.862, 0.886, 0.897)." in text
    del record["no-embedder"]
    assert "no-embedder, tweets/s" not in throughput_markdown(record)
