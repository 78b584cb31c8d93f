import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The shared data mirror (see ../shared/data/README.md); TWNER_DATA overrides it.
DATA = Path(os.environ.get("TWNER_DATA", ROOT.parent / "shared" / "data")).resolve()

# (dataset, split) -> file name in the mirror, as project.yml fetches them.
WNUT_FILES = {
    ("wnut16", "train"): "wnut16/train",
    ("wnut16", "dev"): "wnut16/dev",
    ("wnut16", "test"): "wnut16/test",
    ("wnut17", "train"): "wnut17/wnut17train.conll",
    ("wnut17", "dev"): "wnut17/emerging.dev.conll",
    ("wnut17", "test"): "wnut17/emerging.test.annotated",
}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    # A missing mirror is an error, not a skip: these tests are the evidence.
    assert (DATA / "wnut16" / "train").is_file(), f"WNUT data not found under {DATA}"
    return DATA


@pytest.fixture(scope="session")
def project(tmp_path_factory, data_dir):
    """A copy of the project, run through the whole `all` workflow on a slice of
    WNUT17 (the first 60 tweets of the train+dev corpus, 30 dev tweets for the
    scores, a few steps, the embedded backbone)."""
    project_dir = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "project.yml", project_dir)
    shutil.copytree(ROOT / "configs", project_dir / "configs")
    shutil.copytree(ROOT / "spacy_twner", project_dir / "spacy_twner")
    overrides = {
        "wnut16_source": data_dir / "wnut16",
        "wnut17_source": data_dir / "wnut17",
        "stsb_source": data_dir / "stsb-multi-mt",
        "distill_languages": "it",
        "distill_max_pairs": 512,
        "distill_epochs": 1,
        "dataset": "wnut17",
        "max_steps": 6,
        "eval_frequency": 3,
        "train_limit": 60,
        "dev_limit": 30,
    }
    cmd = [sys.executable, "-m", "spacy", "project", "run", "all", str(project_dir)]
    for key, value in overrides.items():
        cmd += [f"--vars.{key}", str(value)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run(cmd, check=True, env=env)
    return project_dir


@pytest.fixture(scope="session")
def model_dir(project) -> Path:
    """The full pipeline (transformer + ner + sentence_embedder) that `project` built."""
    return project / "training" / "wnut17-trf" / "model-final"


@pytest.fixture(scope="module")
def nlp(model_dir):
    """model_dir loaded, once per test module (tests/test_sentence_embedder.py has its own)."""
    import spacy

    return spacy.load(model_dir)
