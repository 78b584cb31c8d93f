import os
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
