"""The real project workflow on a slice of WNUT17, down to an offline wheel load.

`spacy project run all` converts, trains (60 train+dev / 30 dev tweets, a few
steps, the embedded backbone), evaluates and packages; the wheel then goes
into a fresh virtual environment without spacy_twner and is loaded there with
HF_HUB_OFFLINE=1 and socket creation made to raise.
"""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import spacy


TWEETS = [
    "Heading to New York with @justinbieber tomorrow #excited",
    "Apple announced the new iPhone at the event in California",
    "lol my mom just texted me from London",
]

# Runs inside the fresh venv: no spacy_twner, no network, then the pipeline.
OFFLINE_LOAD = """
import importlib.util, json, socket, sys

def no_network(event, args):
    # An audit hook sees every socket the interpreter or a C extension opens.
    if event in ("socket.__new__", "socket.connect", "socket.getaddrinfo"):
        raise OSError(f"network access attempted: {event}")

sys.addaudithook(no_network)
try:
    socket.socket()
except OSError:
    pass
else:
    raise SystemExit("the socket block does not work")
assert importlib.util.find_spec("spacy_twner") is None, "spacy_twner is installed"

import spacy
nlp = spacy.load("en_twner")
result = []
for doc in nlp.pipe(json.loads(sys.argv[1])):
    result.append({
        "ents": [[e.start_char, e.end_char, e.label_] for e in doc.ents],
        "trf": float(abs(doc._.trf_data.model_output.last_hidden_state).sum()),
        "embedding": doc._.embedding.tolist(),
    })
print(json.dumps({"pipe_names": nlp.pipe_names, "meta": nlp.meta, "docs": result}))
"""


def predict(nlp, texts):
    return [
        {
            "ents": [[e.start_char, e.end_char, e.label_] for e in doc.ents],
            "trf": float(abs(doc._.trf_data.model_output.last_hidden_state).sum()),
            "embedding": doc._.embedding.tolist(),
        }
        for doc in nlp.pipe(texts)
    ]


def test_workflow_writes_test_metrics_per_type(project):
    metrics = json.loads((project / "metrics" / "wnut17-trf.json").read_text())
    for key in ("ents_p", "ents_r", "ents_f", "speed"):
        assert isinstance(metrics[key], float)
    assert set(metrics["ents_per_type"]) <= {
        "corporation", "creative-work", "group", "location", "person", "product"
    }  # fmt: skip
    assert (project / "metrics" / "wnut17-trf-worst.html").is_file()


def test_workflow_trains_on_train_and_dev_and_ships_model_last(project):
    """The default: train+dev with the step count chosen on dev, then model-last."""
    corpus = project / "corpus" / "wnut17-train+dev"
    assert sorted(p.name for p in corpus.iterdir()) == ["wnut17-dev.spacy", "wnut17-train.spacy"]
    run = project / "training" / "wnut17-trf"
    config = spacy.util.load_config(run / "model-final" / "config.cfg")
    assert config["paths"]["train"] == "corpus/wnut17-train+dev"
    shipped = (run / "model-final" / "ner" / "model").read_bytes()
    assert shipped == (run / "model-last" / "ner" / "model").read_bytes()


def test_workflow_distills_and_scores_the_student_on_stsb(project):
    scores = json.loads((project / "metrics" / "stsb.json").read_text())
    assert set(scores) == {"teacher", "student"}
    for model in scores.values():
        assert {"en", "it", "en-it", "sentences_per_s", "bytes_on_disk"} <= set(model)
    assert scores["student"]["bytes_on_disk"] > 0
    assert (project / "metrics" / "stsb.png").stat().st_size > 1000
    assert (project / "training" / "student" / "model.safetensors").is_file()


def test_wheel_loads_offline_in_fresh_venv_without_spacy_twner(project, tmp_path):
    wheel = project / "packages" / "en_twner-0.1.0" / "dist" / "en_twner-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        packaged = set(z.namelist())
        meta = json.loads(z.read("en_twner/meta.json"))
    assert {"en_twner/backbone.py", "en_twner/safe_loading.py", "en_twner/sentence_embedder.py"} <= packaged
    assert any(p.endswith("sentence_embedder/model/model.safetensors") for p in packaged)
    assert not any(r.startswith("spacy-twner") for r in meta["requirements"])
    assert any(r.startswith("spacy-transformers") for r in meta["requirements"])
    assert any(r.startswith("sentence-transformers") for r in meta["requirements"])
    assert meta["sources"] and "ents_per_type" in meta["performance"]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    # torch first and pinned: left to the resolver it would fetch a CUDA build.
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    subprocess.run(pip + [str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", OFFLINE_LOAD, json.dumps(TWEETS)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["pipe_names"] == ["transformer", "ner", "sentence_embedder"]
    performance = loaded["meta"]["performance"]
    assert performance["ents_f"] == pytest.approx(meta["performance"]["ents_f"])
    assert performance["ents_per_type"].keys() == meta["performance"]["ents_per_type"].keys()
    # The wheel predicts exactly what the trained pipeline predicts here.
    nlp = spacy.load(project / "training" / "wnut17-trf" / "model-final")
    expected = predict(nlp, TWEETS)
    assert [d["ents"] for d in loaded["docs"]] == [d["ents"] for d in expected]
    for doc, want, text in zip(loaded["docs"], expected, TWEETS):
        assert doc["trf"] > 0.0 and doc["trf"] == pytest.approx(want["trf"], rel=1e-4)
        assert doc["embedding"] == pytest.approx(want["embedding"], abs=1e-5)
        for start, end, label in doc["ents"]:
            assert 0 <= start < end <= len(text) and label


def test_repackaging_leaves_nothing_stale_in_the_wheel(project):
    """A second package run ships exactly the pipeline, not an earlier build's files."""
    model = project / "training" / "wnut17-trf" / "model-last"
    stale = project / "packages" / "en_twner-0.1.0" / "build" / "lib" / "en_twner" / "en_twner-0.1.0"
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "stale-weights.bin").write_bytes(b"x" * 1024)
    subprocess.run(
        [sys.executable, "-m", "spacy_twner", "package", str(model),
         str(project / "metrics" / "wnut17-trf.json"), str(project / "packages"),
         "--template", str(project / "configs" / "meta.json"), "--name", "twner",
         "--version", "0.1.0", "--code", str(project / "spacy_twner" / "backbone.py")],
        check=True, cwd=project,
    )  # fmt: skip
    wheel = project / "packages" / "en_twner-0.1.0" / "dist" / "en_twner-0.1.0-py3-none-any.whl"
    prefix = "en_twner/en_twner-0.1.0/"
    with zipfile.ZipFile(wheel) as z:
        shipped = {n[len(prefix):] for n in z.namelist() if n.startswith(prefix)}
    expected = {str(p.relative_to(model)) for p in model.rglob("*") if p.is_file()}
    assert shipped == expected | {"README.md", "meta.json"}
