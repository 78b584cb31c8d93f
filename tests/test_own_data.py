"""A user's own labelled tweets: every format in, every bad input named by
file and line, the corpus `twner prepare` writes, the config of each route,
rehearsal, and continuing training on the tiny pipeline."""
import json
from pathlib import Path

import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from spacy_twner.data.formats import DataError, read_labelled
from spacy_twner.data.prepare import prepare_corpus
from spacy_twner.training.own_config import own_config as build_config

from .conftest import ROOT, train_tiny, twner

EXAMPLE = ROOT / "assets" / "own-example"
TEXT = "Took an Advil before Elden Ring night at IKEA lol"
SPANS = [(8, 13, "drug"), (21, 31, "game"), (41, 45, "brand")]
WANT = [("Advil", "drug"), ("Elden Ring", "game"), ("IKEA", "brand")]
NLP = spacy.blank("en")


def write(path: Path, content) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    return path


def ents(labelled):
    return [[(e.text, e.label_) for e in doc.ents] for doc in labelled.docs]


def prodigy(text=TEXT, spans=SPANS, **extra):
    return {"text": text, "spans": [{"start": s, "end": e, "label": l} for s, e, l in spans], **extra}


NONE = "no entities here at all"


@pytest.mark.parametrize("name,content,lines", [
    ("prodigy.jsonl", "\n".join(json.dumps(r) for r in [prodigy(), prodigy(NONE, [])]), [1, 2]),
    ("doccano.jsonl", "\n\n".join(json.dumps(r) for r in [{"text": TEXT, "label": [list(s) for s in SPANS]}, {"text": NONE, "label": []}]), [1, 3]),
    ("doccano-entities.jsonl", "\n".join(json.dumps(r) for r in [{"text": TEXT, "entities": [{"id": i, "label": l, "start_offset": s, "end_offset": e} for i, (s, e, l) in enumerate(SPANS)]},
                                                                 {"text": NONE, "entities": []}]), [1, 2]),
    ("label-studio.json", json.dumps([{"id": 1, "data": {"text": TEXT}, "annotations": [{"was_cancelled": False, "result": [
        {"type": "labels", "from_name": "label", "to_name": "text", "value": {"start": s, "end": e, "text": TEXT[s:e], "labels": [l]}} for s, e, l in SPANS]}]},
        {"id": 2, "data": {"text": NONE}, "annotations": [{"result": []}]}], indent=2), [2, 54]),
    ("label-studio-min.json", json.dumps([{"text": TEXT, "id": 1, "label": [{"start": s, "end": e, "text": TEXT[s:e], "labels": [l]} for s, e, l in SPANS]},
                                          {"text": NONE, "id": 2, "label": []}]), [1, 1]),
    ("bio.conll", "-DOCSTART- O\n\nTook O\nan O\nAdvil B-drug\nbefore O\nElden B-game\nRing I-game\nnight O\nat O\nIKEA B-brand\nlol O\n\nno O\nentities O\n", [3, 14]),
    ("bilou.iob", "\ufeffTook\tO\nan\tO\nAdvil\tU-drug\nbefore\tO\nElden\tB-game\nRing\tL-game\nnight\tO\nat\tO\nIKEA\tS-brand\nlol\tO\n\nnone\tO\n", [1, 12]),
])  # fmt: skip
def test_every_format_gives_the_same_entities_and_each_tweet_its_line(tmp_path, name, content, lines):
    labelled = read_labelled(write(tmp_path / name, content), NLP)
    assert ents(labelled) == [WANT, []] and labelled.lines == lines


def test_a_docbin_reads_as_it_is_and_prodigy_tokens_are_used_as_given(tmp_path):
    doc = NLP(TEXT)
    doc.ents = [doc.char_span(s, e, label=l) for s, e, l in SPANS]
    assert ents(read_labelled(write(tmp_path / "data.spacy", DocBin(docs=[doc]).to_bytes()), NLP)) == [WANT]
    words = ["can't", "stop", "playing", "Elden", "Ring"]
    text, start, tokens = " ".join(words), 0, []
    for i, word in enumerate(words):
        tokens.append({"text": word, "start": start, "end": start + len(word), "id": i, "ws": i < 4})
        start += len(word) + 1
    labelled = read_labelled(write(tmp_path / "tok.jsonl", json.dumps({"text": text, "tokens": tokens, "spans": [{"start": 19, "end": 29, "label": "game"}]})), NLP)
    assert [t.text for t in labelled.docs[0]] == words  # spaCy's tokenizer would split "can't"
    assert ents(labelled) == [[("Elden Ring", "game")]]


def test_rejected_answers_and_unannotated_tasks_are_counted_not_silently_dropped(tmp_path):
    records = [prodigy(), prodigy(answer="reject"), prodigy(answer="ignore")]
    labelled = read_labelled(write(tmp_path / "p.jsonl", "\n".join(map(json.dumps, records))), NLP)
    assert len(labelled.docs) == 1 and sum(labelled.left_out.values()) == 2
    tasks = [{"data": {"text": TEXT}, "annotations": []}, {"data": {"text": TEXT}, "annotations": [{"was_cancelled": True, "result": []}]},
             {"data": {"text": "fine"}, "annotations": [{"result": []}]}]  # fmt: skip
    labelled = read_labelled(write(tmp_path / "ls.json", tasks), NLP)
    assert len(labelled.docs) == 1 and sum(labelled.left_out.values()) == 2


BAD = [
    ("overlap.jsonl", [prodigy(), prodigy(spans=[(8, 13, "drug"), (8, 31, "game")])], 2, "overlapping spans 'Advil' (drug"),
    ("nested.jsonl", [prodigy(spans=[(21, 31, "game"), (27, 31, "brand")])], 1, "overlapping spans 'Elden Ring' (game"),
    ("boundary.jsonl", [prodigy(), prodigy(), prodigy(spans=[(8, 12, "drug"), (22, 31, "game")])], 3, "2 span(s) off token boundaries: [8, 12) 'Advi'; [22, 31) 'lden Ring'"),
    ("outside.jsonl", [prodigy(spans=[(40, 90, "brand")])], 1, "outside the text of 49 characters"),
    ("notext.jsonl", [{"spans": []}], 1, "no 'text' field"),
    ("badjson.jsonl", '{"text": "ok", "spans": []}\n{"text": nope}\n', 2, "not valid JSON"),
    ("empty.jsonl", "", 1, "no labelled tweets in the file"),
    ("empty.conll", "\n\n", 1, "no tokens found"),
    ("latin1.jsonl", '{"text": "ok", "spans": []}\n{"text": "caf\xe9"}\n'.encode("latin-1"), 2, "not valid UTF-8 at byte offset"),
    ("tasks.json", '[{"data": {"text": "ok"}, "annotations": [{"result": []}]},\n {"data": {"text": "x"}, "annotations": [{"result": [{"value": {"start": 0, "end": 1, "labels": ["a", "b"]}}]}]}]', 2, "expected one label"),
    ("bilou.conll", "Advil\tU-drug\n\nElden\tB-game\nnight\tO\n", 3, "B-game is followed by O: in BILOU an entity ends with L-game"),
    ("mixed.conll", "Advil\tU-drug\nx\tO\n\nElden\tI-game\n", 4, "I-game follows O"),
    ("data.xlsx", "whatever", 1, "unknown format '.xlsx'"),
]  # fmt: skip


@pytest.mark.parametrize("name,content,line,problem", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_file_line_and_problem(tmp_path, name, content, line, problem):
    path = tmp_path / name
    if isinstance(content, list):
        content = "\n".join(map(json.dumps, content)) + "\n"
    write(path, content)
    with pytest.raises(DataError) as err:
        read_labelled(path, NLP)
    assert str(err.value).startswith(f"{path}:{line}: "), str(err.value)
    assert problem in str(err.value)


def test_snap_moves_spans_to_token_boundaries_and_lists_each(tmp_path):
    path = write(tmp_path / "s.jsonl", json.dumps(prodigy(spans=[(8, 12, "drug"), (20, 31, "game")])))
    labelled = read_labelled(path, NLP, snap=True)
    assert ents(labelled) == [[("Advil", "drug"), ("Elden Ring", "game")]]
    assert labelled.snapped == [f"{path}:1: 'Advi' -> 'Advil'", f"{path}:1: ' Elden Ring' -> 'Elden Ring'"]


def test_prepare_splits_a_seeded_dev_set_apart_from_train_and_takes_test_text_out(tmp_path):
    report = prepare_corpus(EXAMPLE / "train.jsonl", tmp_path / "corpus", test=EXAMPLE / "test.jsonl", seed=3)
    assert report["labels"] == ["brand", "drug", "game"] and report["dev_split"]["docs"] == 40
    assert [report["splits"][s]["docs"] for s in ("train", "dev", "test")] == [160, 40, 40]
    prepare_corpus(EXAMPLE / "train.jsonl", tmp_path / "again", test=EXAMPLE / "test.jsonl", seed=3)
    prepare_corpus(EXAMPLE / "train.jsonl", tmp_path / "other", test=EXAMPLE / "test.jsonl", seed=4)
    read = lambda p: [d.text for d in DocBin().from_disk(p).get_docs(Vocab())]  # noqa: E731
    dev = read(tmp_path / "corpus" / "dev.spacy")
    assert dev == read(tmp_path / "again" / "dev.spacy") and dev != read(tmp_path / "other" / "dev.spacy")  # seeded
    assert not set(dev) & set(read(tmp_path / "corpus" / "train" / "train.spacy"))
    assert srsly.read_json(tmp_path / "corpus" / "labels.json") == ["brand", "drug", "game"]
    # a test tweet repeated in train leaves train
    lines = (EXAMPLE / "train.jsonl").read_text(encoding="utf-8").splitlines() + [(EXAMPLE / "test.jsonl").read_text(encoding="utf-8").splitlines()[0]]
    report = prepare_corpus(write(tmp_path / "leak.jsonl", "\n".join(lines)), tmp_path / "c2", test=EXAMPLE / "test.jsonl")
    assert report["files"]["train"]["removed_as_test_text"] == 1


def test_dev_or_test_labels_that_train_lacks_are_errors_at_their_line(tmp_path):
    dev = write(tmp_path / "dev.jsonl", "\n".join(json.dumps(r) for r in [prodigy(), prodigy(spans=[(8, 13, "medicine")])]))
    with pytest.raises(DataError, match=r"dev.jsonl:2: label 'medicine' \('Advil'\) is not in train"):
        prepare_corpus(EXAMPLE / "train.jsonl", tmp_path / "out", dev=dev)
    assert not (tmp_path / "out").exists()  # nothing half-written
    with pytest.raises(DataError, match=r"label\(s\) 'person' asked for but without an example in train"):
        prepare_corpus(EXAMPLE / "train.jsonl", tmp_path / "out", labels=["brand", "person"])


def test_prepare_cli_refuses_the_projects_own_name_and_reports_the_split(tmp_path):
    from typer.testing import CliRunner

    from spacy_twner.cli import app

    refused = CliRunner().invoke(app, ["prepare", str(EXAMPLE / "train.jsonl"), str(tmp_path / "twner")])
    assert refused.exit_code != 0 and "this project's own pipeline" in " ".join(refused.output.replace("│", " ").split())
    run = twner("prepare", EXAMPLE / "train.jsonl", tmp_path / "mine", "--snap", "False")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No dev file: 40 train tweets (20%, seed 0) held out as dev" in " ".join(run.stdout.split())


def test_route_a_is_trf_cfg_and_route_b_sources_what_it_continues(tiny_model_dir, tmp_path):
    a = own_config(["brand", "drug"], backbone="training/x/backbone")
    assert a["components"]["transformer"]["factory"] == "twner_transformer" and a["backbone"]["name"] == "training/x/backbone"
    b = own_config(["brand", "drug"], base=str(tiny_model_dir))
    assert b["components"]["transformer"] == {"source": str(tiny_model_dir)} and b["components"]["ner"]["factory"] == "twner_ner"
    with pytest.raises(ValueError, match="neither a pipeline directory nor an installed pipeline package"):
        own_config(["drug"], base=str(tmp_path / "nope"))
    shared = own_config(["person", "drug"], base=str(tiny_model_dir), labels_path="labels.json")
    assert shared["components"]["ner"] == {"source": str(tiny_model_dir)}
    assert shared["initialize"]["before_init"] == {"@callbacks": "spacy_twner.add_labels.v1", "path": "labels.json", "component": "ner"}
    kept = own_config(["drug"], base=str(tiny_model_dir), keep_labels=True)
    assert kept["components"]["ner"] == {"source": str(tiny_model_dir)}
    with pytest.raises(ValueError, match="reads 'en' tokens, so train with lang 'en'"):
        own_config(["drug"], base=str(tiny_model_dir), lang="xx")


def test_an_int8_base_is_refused_with_its_float_twin_named(tiny_model_dir, tmp_path):
    from spacy_twner.packaging.optimize import convert_runtime, runtime_config

    convert_runtime(str(tiny_model_dir), tmp_path / "int8", runtime_config("onnxruntime", int8=True))
    with pytest.raises(ValueError, match="cannot be trained further: continue from its float32 twin"):
        own_config(["drug"], base=str(tmp_path / "int8"))


def test_continuing_starts_from_the_base_and_learns_a_new_label_beside_its_own(tiny_model_dir, assets_dir, tmp_path):
    """Route (b) on the tiny pipeline: 'person' (shared) and a new label; the
    transformer starts as the base's, the sourced NER gets the new label and
    keeps the base's others."""
    from spacy.training.initialize import init_nlp
    from spacy.util import load_config

    from spacy_twner.pipeline.transformer_model import transformer_module

    labels = ["person", "drug"]
    texts = [("Justin Bieber took an Advil", [(0, 13, "person"), (22, 27, "drug")]), ("Advil for Taylor Swift", [(0, 5, "drug"), (10, 22, "person")])]
    rows = [prodigy(t, s) for t, s in texts] * 20
    data = write(tmp_path / "train.jsonl", "\n".join(map(json.dumps, rows)))
    prepare_corpus(data, tmp_path / "corpus", dev=data, labels=labels)
    config = own_config(labels, base=str(tiny_model_dir), labels_path=str(tmp_path / "corpus" / "labels.json"))
    config.to_disk(tmp_path / "config.cfg")
    base = spacy.load(tiny_model_dir)
    base_labels = set(base.get_pipe("ner").labels)
    start = init_nlp(load_config(tmp_path / "config.cfg", overrides={"paths.train": str(tmp_path / "corpus" / "train"), "paths.dev": str(tmp_path / "corpus" / "dev.spacy")}))
    weights = dict(transformer_module(base).named_parameters())
    assert all(p.detach().equal(weights[n].detach()) for n, p in transformer_module(start).named_parameters())
    assert set(start.get_pipe("ner").labels) == base_labels | {"drug"}
    model = train_tiny(tmp_path / "config.cfg", tmp_path / "training", tiny_model_dir, tmp_path / "corpus" / "train", tmp_path / "corpus" / "dev.spacy", steps=30)
    nlp = spacy.load(model)
    assert set(nlp.get_pipe("ner").labels) == base_labels | {"drug"}
    assert "drug" in {e.label_ for doc in nlp.pipe(t for t, _ in texts) for e in doc.ents}


def own_config(labels, **kwargs):
    return build_config(labels, template=ROOT / "configs" / "trf.cfg", **kwargs)


def test_unlabelled_text_is_an_error_not_tweets_without_entities(tmp_path):
    path = write(tmp_path / "plain.jsonl", '{"text": "just a tweet"}\n{"text": "another"}\n')
    with pytest.raises(DataError, match=r"plain.jsonl:1: no spans, entities or labels field: unlabeled text"):
        read_labelled(path, NLP)
    mixed = write(tmp_path / "mixed.jsonl", json.dumps(prodigy()) + '\n{"text": "an unlabelled one"}\n')
    with pytest.raises(DataError, match=r"mixed.jsonl:2: no spans, entities or labels field"):
        read_labelled(mixed, NLP)


def test_label_studio_json_min_under_its_own_name_and_utf16_offsets_after_an_emoji(tmp_path):
    text = "😀 off to Paris"  # the emoji is one code point but two UTF-16 units: Label Studio counts Paris as 10-15
    records = [{"text": text, "ner": [{"start": 10, "end": 15, "text": "Paris", "labels": ["geo-loc"]}]}]
    assert ents(read_labelled(write(tmp_path / "min.json", records), NLP)) == [[("Paris", "geo-loc")]]


def test_prodigy_whitespace_tokens_are_tokens(tmp_path):
    text = "hi  Paris"
    tokens = [{"text": "hi", "start": 0, "end": 2, "ws": True}, {"text": " ", "start": 3, "end": 4, "ws": False}, {"text": "Paris", "start": 4, "end": 9, "ws": False}]
    labelled = read_labelled(write(tmp_path / "ws.jsonl", json.dumps({"text": text, "tokens": tokens, "spans": [{"start": 4, "end": 9, "label": "geo-loc"}]})), NLP)
    assert ents(labelled) == [[("Paris", "geo-loc")]] and labelled.docs[0].text == text


def test_a_closed_bilou_entity_does_not_go_on(tmp_path):
    with pytest.raises(DataError, match=r"x.conll:2: L-LOC follows U-LOC"):
        read_labelled(write(tmp_path / "x.conll", "a\tU-LOC\nb\tL-LOC\n"), NLP)


def test_a_name_that_is_no_python_identifier_is_refused_before_anything_runs(tmp_path):
    from typer.testing import CliRunner

    from spacy_twner.cli import app

    out = CliRunner().invoke(app, ["prepare", str(EXAMPLE / "train.jsonl"), str(tmp_path / "my-tweets")])
    assert out.exit_code != 0 and "letters, digits and _ only" in " ".join(out.output.replace("│", " ").split())


def test_rehearsal_fills_the_users_tweets_with_the_base_s_other_entities(tiny_model_dir, tmp_path):
    from spacy_twner.training.rehearsal import fill_user_docs

    base = spacy.load(tiny_model_dir)
    texts = ["Justin Bieber took an Advil in New York", "Taylor Swift and an Advil"]
    predicted = [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in base.pipe(texts)]
    docs = []
    for text in texts:
        doc = NLP(text)
        doc.ents = [doc.char_span(text.index("Advil"), text.index("Advil") + 5, label="drug")]
        docs.append(doc)
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    added = fill_user_docs(base, tmp_path / "train.spacy", {"drug"})
    filled = list(DocBin().from_disk(tmp_path / "train.spacy").get_docs(base.vocab))
    want = [sorted({(s, e, l) for s, e, l in p if not (s < t.index("Advil") + 5 and t.index("Advil") < e)} | {(t.index("Advil"), t.index("Advil") + 5, "drug")}) for p, t in zip(predicted, texts)]
    assert [sorted((e.start_char, e.end_char, e.label_) for e in d.ents) for d in filled] == want
    assert added == sum(len(w) - 1 for w in want)
    assert fill_user_docs(base, tmp_path / "train.spacy", {"drug"}) == added  # the same again: it does not pile up


@pytest.mark.parametrize("n,max_texts,want", [(300, 0, (270, 30)), (3000, 100, (100, 60)), (120, 0, (108, 12))])
def test_pretraining_holds_out_a_tenth_of_a_small_text_and_trains_on_at_most_max_texts(tiny_backbone_dir, tmp_path, n, max_texts, want):
    from spacy_twner.training import Schedule
    from spacy_twner.training.pretrain import pretrain

    (tmp_path / "text.txt").write_text("\n".join(f"tweet number {i} about #things" for i in range(n)), encoding="utf-8")
    stats = pretrain(str(tiny_backbone_dir), [tmp_path / "text.txt"], tmp_path / "out", Schedule(epochs=0.01, batch_size=32, learning_rate=1e-4), max_texts=max_texts)
    assert (stats["texts"], stats["held_out_texts"]) == want
