"""The real project workflow on a slice of WNUT17, down to offline wheel loads.

`spacy project run all` converts, looks at the data, filters the unlabeled
tweets, adapts the backbone (a few masked-LM steps), trains (60 train+dev /
30 dev tweets, a few steps), distills, tunes the embedder's head, assembles,
converts en_twner's transformer to ONNX Runtime int8, evaluates and
packages en_twner and en_twner_fp32; the wheels then go into a
fresh virtual environment without spacy_twner and are loaded there, each in
its own process, with HF_HUB_OFFLINE=1 and socket creation made to raise.
"""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy
import pytest
import spacy
import srsly

from spacy_twner.about import __version__
from safetensors.numpy import load_file

from spacy_twner.packaging.package import pipeline_code

from .conftest import ROOT, SLICE, run_workflow, source_vars

# the packages' version: project.yml's, as the workflow builds them
VERSION = __version__

# every test here runs on what the project's workflows built
pytestmark = pytest.mark.slow

TWEETS = [
    "Heading to New York with @justinbieber tomorrow #excited",
    "Apple announced the new iPhone at the event in California",
    "lol my mom just texted me from London",
]

# Runs inside the fresh venv: no spacy_twner, no network, then the pipelines
# named in argv[1] (comma-separated).
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

out = {}
for name in sys.argv[1].split(","):  # several packages: loaded one after the other, in one process
    nlp = spacy.load(name)
    result = []
    for doc in nlp.pipe(json.loads(sys.argv[2])):
        result.append({
            "ents": [[e.start_char, e.end_char, e.label_] for e in doc.ents],
            "confidence": [e._.confidence for e in doc.ents],
            "embedding": doc._.embedding.tolist(),
        })
    runtime = nlp.get_pipe("transformer").model.attrs["runtime"]
    out[name] = {"pipe_names": nlp.pipe_names, "meta": nlp.meta, "docs": result,
                 "runtime": [runtime.name, runtime.quantize]}
print(json.dumps(out))
"""


def predict(nlp, texts):
    docs = list(nlp.pipe(texts))
    return [[[e.start_char, e.end_char, e.label_] for e in doc.ents] for doc in docs], docs


def test_workflow_writes_test_metrics_per_type_with_calibration(project):
    metrics = json.loads((project / "metrics" / "wnut17-trf.json").read_text())
    for key in ("ents_p", "ents_r", "ents_f", "speed"):
        assert isinstance(metrics[key], float)
    assert metrics["speed_ci"][0] <= metrics["speed"] <= metrics["speed_ci"][1]
    assert set(metrics["ents_per_type"]) <= {"corporation", "creative-work", "group", "location", "person", "product"}
    record = {k: metrics[k] for k in ("dataset", "train_corpus", "checkpoint", "seed", "data")}
    assert record == {"dataset": "wnut17", "train_corpus": "corpus/wnut17-train+dev", "checkpoint": "model-last",
                      "seed": 0, "data": "corpus/wnut17-test.spacy"}  # fmt: skip
    assert (project / "metrics" / "wnut17-trf-worst.html").is_file()
    int8 = json.loads((project / "metrics" / "wnut17-trf-int8.json").read_text())
    assert int8["model"] == "training/wnut17-trf/model-int8" and "int8" in int8["changes"]
    check = json.loads((project / "metrics" / "xx-check-wnut17-trf.json").read_text())  # the non-English check set
    assert check["data"] == "corpus/xx-check" and check["n_docs"] == 200 and check["model"] == "training/wnut17-trf/model-int8"
    data = json.loads((project / "metrics" / "data-wnut17.json").read_text())
    assert data["wnut17-train"]["tweets"] == 3394 and (project / "metrics" / "data-wnut17.png").is_file()


def test_workflow_adapts_the_backbone_on_filtered_tweets(project):
    report = json.loads((project / "metrics" / "pretrain-text.json").read_text())
    # 588 WNUT17 test documents are among the unlabeled tweets, one more is a WNUT17 dev tweet
    assert report["test_sets"]["wnut17-test"]["documents_found"] == 589
    assert report["sources"]["tweets-unlabeled"]["removed: matches wnut17-test"] >= 588
    assert report["sources"]["wnut17-dev"]["removed: matches wnut17-test"] == 1
    assert json.loads((project / "metrics" / "wnut17-train+dev.json").read_text())["corpora"]["wnut17-dev"]["removed"] == 1
    backbone = project / "training" / "backbone"
    stats = json.loads((backbone / "twner_pretrain.json").read_text())
    assert stats["texts"] == 200 and stats["steps"] == 7 and stats["case_types"] is True
    assert json.loads((backbone / "config.json").read_text())["type_vocab_size"] == 5
    # the NER run started from it
    config = spacy.util.load_config(project / "training" / "wnut17-trf" / "model-last" / "config.cfg")
    assert config["backbone"]["name"] == "training/backbone"


def test_workflow_trains_on_train_and_dev_and_ships_model_last(project, run_dir):
    """The default: train+dev with the step count chosen on dev, then model-last,
    shipped with its transformer in ONNX Runtime int8, one call per sequence
    (en_twner), and in torch (en_twner_fp32)."""
    corpus = project / "corpus" / "wnut17-train+dev"
    assert sorted(p.name for p in corpus.iterdir()) == ["wnut17-dev.spacy", "wnut17-train.spacy"]
    config = spacy.util.load_config(run_dir / "model-last" / "config.cfg")
    assert config["paths"]["train"] == "corpus/wnut17-train+dev"
    shipped = {(run_dir / name / "ner" / "model").read_bytes() for name in ("model-last", "model-final", "model-int8")}
    assert len(shipped) == 1
    runtime = {name: spacy.util.load_config(run_dir / name / "config.cfg")["components"]["transformer"]["model"]["runtime"]
               for name in ("model-final", "model-int8")}  # fmt: skip
    assert runtime == {"model-final": {"@misc": "spacy_twner.TorchRuntime.v1", "quantize": False},
                       "model-int8": {"@misc": "spacy_twner.OnnxRuntime.v1", "quantize": True, "per_sequence": True}}  # fmt: skip


def test_workflow_tunes_the_head_and_scores_the_shipped_embedder_beside_its_peers(project):
    scores = json.loads((project / "metrics" / "stsb.json").read_text())
    assert set(scores) == {"shipped", "teacher", "use-m", "student"}  # USE-m measured in the same run
    for model in scores.values():
        assert {"en", "it", "en-it", "sentences_per_s", "bytes_on_disk"} <= set(model)
    assert scores["student"]["bytes_on_disk"] > 0 and 30 * 2**20 < scores["shipped"]["bytes_on_disk"] < 40 * 2**20
    tuning = json.loads((project / "training" / "use-m-head" / "tune_head.json").read_text())
    assert tuning["rows_kept"] == 300 and tuning["encoder"] == "use-m"
    # the pipeline carries the head the workflow tuned
    shipped = load_file(project / "training" / "wnut17-trf" / "model-final" / "sentence_embedder" / "model" / "head.safetensors")
    tuned = load_file(project / "training" / "use-m-head" / "head.safetensors")
    assert all(numpy.array_equal(shipped[k], tuned[k]) for k in ("weight", "bias"))
    assert (project / "metrics" / "stsb.png").stat().st_size > 1000
    assert (project / "training" / "student" / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, project, xx_project):
    """A new virtual environment with the en_twner, en_twner_fp32 and xx_twner wheels, without spacy_twner."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    # torch first and pinned: left to the resolver it would fetch a CUDA build.
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    wheels = [project / "packages" / f"{name}-{VERSION}" / "dist" / f"{name}-{VERSION}-py3-none-any.whl" for name in ("en_twner", "en_twner_fp32", "xx_twner")]
    subprocess.run(pip + [str(w) for w in wheels], check=True)
    return venv


def load_in_venv(venv: Path, packages: str, cwd: Path) -> dict:
    """What OFFLINE_LOAD prints, per package."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", OFFLINE_LOAD, packages, json.dumps(TWEETS)],
                         capture_output=True, text=True, env=env, cwd=cwd)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("package,pipeline,runtime", [("en_twner", "model-int8", ["onnxruntime", True]), ("en_twner_fp32", "model-final", ["torch", False])])
def test_wheel_loads_offline_in_fresh_venv_without_spacy_twner(project, run_dir, fresh_venv, tmp_path, package, pipeline, runtime):
    wheel = project / "packages" / f"{package}-{VERSION}" / "dist" / f"{package}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        packaged = set(z.namelist())
        meta = json.loads(z.read(f"{package}/meta.json"))
        card = z.read(f"{package}/{package}-{VERSION}/README.md").decode("utf-8")
        licence = [n for n in packaged if n.endswith("/LICENSE") and ".dist-info/" in n]
    # the code that ships is spacy_twner/pipeline/, every module of it
    assert {f"{package}/{p.name}" for p in pipeline_code()} <= packaged
    # USE-m's weights, tokenizer and licence under the tuned head: what the embedder runs, nothing else
    embedder = {p.split("sentence_embedder/model/", 1)[1] for p in packaged if "sentence_embedder/model/" in p}
    assert embedder == {"head.safetensors", "encoder/weights.npz", "encoder/tokenizer.json", "encoder/LICENSE"}
    assert meta["version"] == VERSION  # one version: spacy_twner's, stamped by twner package
    assert not any(r.startswith("spacy-twner") for r in meta["requirements"])
    required = {r.split(">")[0].split("=")[0] for r in meta["requirements"]}
    assert "spacy-transformers" in required and "sentence-transformers" not in required  # USE-m runs without it
    assert ("onnxruntime" in required) == (package == "en_twner")
    assert meta["url"] and meta["licenses"]["code"] == "MIT" and "Apache-2.0" in meta["licenses"]["weights"]
    assert "ents_per_type" in meta["performance"] and meta["sources"] and licence
    # spaCy's own model card header (feature table, label scheme, accuracy), then the project's sections
    assert card.startswith(f"# {package} {VERSION}\n") and f"| **Name** | `{package}` |" in card and "### Label Scheme" in card
    assert meta["labels"]["ner"] and all(f"`{label}`" in card for label in meta["labels"]["ner"])  # the slice's labels (WNUT17)
    assert "### Accuracy" in card and "| `ENTS_F` |" in card
    for section in ("## Intended use", "## Limitations", "## Citation", "Yang et al.", "| person |"):
        assert section in card

    loaded = load_in_venv(fresh_venv, package, tmp_path)[package]
    assert loaded["pipe_names"] == ["transformer", "ner", "sentence_embedder"]
    assert loaded["runtime"] == runtime
    assert loaded["meta"]["performance"]["ents_f"] == pytest.approx(meta["performance"]["ents_f"])
    # The wheel predicts exactly what its pipeline directory predicts here.
    expected, docs = predict(spacy.load(run_dir / pipeline), TWEETS)
    assert [d["ents"] for d in loaded["docs"]] == expected
    for doc, want in zip(loaded["docs"], docs):
        assert doc["embedding"] == pytest.approx(want._.embedding.tolist(), abs=1e-5)
        assert all(0.0 <= c <= 1.0 for c in doc["confidence"])


def test_xx_twner_loads_offline_next_to_en_twner_without_spacy_twner(fresh_venv, run_dir, xx_run_dir, tmp_path):
    """The multilingual wheel, then the English one, in one offline process:
    each predicts what its pipeline directory predicts."""
    loaded = load_in_venv(fresh_venv, "xx_twner,en_twner", tmp_path)
    assert loaded["xx_twner"]["meta"]["lang"] == "xx" and loaded["xx_twner"]["runtime"] == ["onnxruntime", True]
    for name, directory in (("xx_twner", xx_run_dir / "model-int8"), ("en_twner", run_dir / "model-int8")):
        expected, docs = predict(spacy.load(directory), TWEETS)
        assert [d["ents"] for d in loaded[name]["docs"]] == expected, name
        for doc, want in zip(loaded[name]["docs"], docs):
            assert doc["embedding"] == pytest.approx(want._.embedding.tolist(), abs=1e-5)


def test_repackaging_leaves_nothing_stale_in_the_wheel(project, run_dir, tmp_path):
    """A second package run ships exactly the pipeline, not an earlier build's
    files (into its own folder: the workflow's wheels stay as built)."""
    model = run_dir / "model-int8"
    stale = tmp_path / f"en_twner-{VERSION}" / "build" / "lib" / "en_twner" / f"en_twner-{VERSION}"
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "stale-weights.bin").write_bytes(b"x" * 1024)
    subprocess.run(
        [sys.executable, "-m", "spacy_twner", "package", str(model), str(project / "metrics" / "wnut17-trf-int8.json"),
         str(tmp_path), "--template", str(project / "configs" / "meta.json"),
         "--template", str(project / "configs" / "meta-en.json"), "--card", str(project / "configs" / "model-card.md"), "--name", "twner", "--version", VERSION],
        check=True, cwd=project,
    )  # fmt: skip
    wheel = tmp_path / f"en_twner-{VERSION}" / "dist" / f"en_twner-{VERSION}-py3-none-any.whl"
    prefix = f"en_twner/en_twner-{VERSION}/"
    with zipfile.ZipFile(wheel) as z:
        shipped = {n[len(prefix):] for n in z.namelist() if n.startswith(prefix)}
    expected = {str(p.relative_to(model)) for p in model.rglob("*") if p.is_file()}
    assert shipped == expected | {"README.md", "meta.json"}


ENSEMBLE_LOAD = """
import json, sys
import spacy
lg, en = spacy.load("en_twner_lg"), spacy.load("en_twner")
out = []
for doc, alone in zip(lg.pipe(json.loads(sys.argv[1])), en.pipe(json.loads(sys.argv[1]))):
    out.append({"ents": [[e.start_char, e.end_char, e.label_, e._.confidence] for e in doc.ents],
                "members": {k: [[s.start_char, s.end_char, s.label_] for s in doc.spans[k]] for k in ("minilm", "e5")},
                "en_twner": [[e.start_char, e.end_char, e.label_] for e in alone.ents]})
print(json.dumps({"pipe_names": lg.pipe_names, "meta": lg.meta, "docs": out}))
"""


def test_the_ensemble_workflow_packages_a_vote_that_loads_offline_next_to_en_twner(xx_project, fresh_venv, tmp_path):
    """make ensemble on the slice: en_twner's and xx_twner's runs (the xx one
    copied into English) assembled, scored once, packaged; the wheel votes in a
    fresh venv without spacy_twner, its minilm member seeing what en_twner sees."""
    run_workflow(xx_project, "ensemble", {**source_vars(), **SLICE})
    record = json.loads((xx_project / "metrics" / "twner_lg.json").read_text())
    assert record["model"] == "training/twner_lg/model-final" and 0.0 <= record["ents_f"] <= 1.0
    wheel = xx_project / "packages" / f"en_twner_lg-{VERSION}" / "dist" / f"en_twner_lg-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        card = z.read(f"en_twner_lg/en_twner_lg-{VERSION}/README.md").decode("utf-8")
    assert card.startswith(f"# en_twner_lg {VERSION}") and "sentence_embedder" not in card
    subprocess.run([str(fresh_venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run([str(fresh_venv / "bin" / "python"), "-c", ENSEMBLE_LOAD, json.dumps(TWEETS)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["pipe_names"] == ["transformer_minilm", "ner_minilm", "minilm", "transformer_e5", "ner_e5", "e5", "vote"]
    assert loaded["meta"]["lang"] == "en" and loaded["meta"]["performance"]["ents_f"] == pytest.approx(record["ents_f"])
    for doc in loaded["docs"]:
        assert doc["members"]["minilm"] == doc["en_twner"]
        members = {tuple(s) for spans in doc["members"].values() for s in spans}
        assert all(tuple(e[:3]) in members and 0.0 < e[3] <= 1.0 for e in doc["ents"])
