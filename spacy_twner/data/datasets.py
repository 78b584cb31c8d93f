"""The datasets the project trains on: one entry per dataset.

Adding a dataset means one entry here (its labels and the file name of each
split in its upstream folder or mirror) and its files declared as assets in
project.yml (`assets/<name>/<split>.conll`, with upstream URL and checksums);
tests/test_datasets.py checks that the two agree.
"""
from dataclasses import dataclass
from typing import Dict, Tuple

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Dataset:
    name: str
    # The dataset's own labels, kept as they are so that scores compare with
    # published conlleval numbers.
    labels: Tuple[str, ...]
    # split -> file name in the upstream folder (and in a mirror of it)
    files: Dict[str, str]


DATASETS: Dict[str, Dataset] = {
    "wnut16": Dataset(
        "wnut16",
        ("company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product", "sportsteam", "tvshow"),
        {"train": "train", "dev": "dev", "test": "test"},
    ),
    "wnut17": Dataset(
        "wnut17",
        ("corporation", "creative-work", "group", "location", "person", "product"),
        {"train": "wnut17train.conll", "dev": "emerging.dev.conll", "test": "emerging.test.annotated"},
    ),
}
