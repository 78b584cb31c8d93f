"""The datasets' one place (spacy_twner/datasets.py) against project.yml, the
data statistics, and the filter that keeps test text out of training."""
import json
import shutil
import subprocess
import sys

import pytest
import srsly

from spacy_twner.data.assets import MIRROR_FOLDERS
from spacy_twner.data.datasets import DATASETS, SPLITS
from spacy_twner.data.corpus import first_texts, normalize, read_texts

from .conftest import ROOT, twner, wnut_file


def test_project_declares_every_split_of_every_dataset_as_an_asset():
    project = srsly.read_yaml(ROOT / "project.yml")
    assets = {a["dest"]: a for a in project["assets"]}
    for dataset in DATASETS.values():
        for split in SPLITS:
            asset = assets[f"assets/{dataset.name}/{split}.conll"]
            assert asset["url"] == f"${{vars.{dataset.name}_source}}/{dataset.files[split]}"
            assert len(asset["sha256"]) == 64 and len(asset["checksum"]) == 32
        assert f"{dataset.name}_source" in MIRROR_FOLDERS
    tweets = [a for a in project["assets"] if a["dest"].startswith("assets/tweets-unlabeled/")]
    assert len(tweets) == 4 and all("${vars.tweets_source}" in a["url"] and a["sha256"] for a in tweets)


def test_normalized_text_meets_its_tokenized_test_document():
    tokenized = "RT @ BeautyOfAnAries : What my mom sent me . Pass it along . 🙏 https : //t.co/5mKW2mdAsO & gt ;"
    raw = "RT @BeautyOfAnAries: What my mom sent me. Pass it along. 🙏🏽 https://t.co/5mKW2mdAsO &gt;"
    assert normalize(tokenized) == normalize(raw)
    assert normalize("Love it") != normalize("love it!!! ❤️ again")
    assert normalize("😀 😀") == normalize("😀😀") != normalize("😡")  # symbols only: compared as they are


def test_first_texts_skip_blank_lines_and_run_on_across_files_in_name_order(tmp_path):
    (tmp_path / "b.txt").write_text("third\n\nfourth\n   \nfifth\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first\n\nsecond\n", encoding="utf-8")
    assert first_texts(tmp_path, 3) == ["first", "second", "third"]
    assert first_texts(tmp_path, 2, skip=2) == ["third", "fourth"]
    assert first_texts(tmp_path, 10, skip=4) == ["fifth"]


def test_filter_removes_each_test_document_and_reports_it(tmp_path):
    (tmp_path / "tweets.txt").write_text("First tweet\nLeaked TEST doc!\n\nfirst tweet\nanother one\nleaked test doc\n", encoding="utf-8")
    (tmp_path / "a-test.conll").write_text("leaked\tO\ntest\tO\ndoc\tO\n.\tO\n\nnever\tO\nseen\tO\n", encoding="utf-8")
    (tmp_path / "b-test.conll").write_text("Another\tO\none\tO\n", encoding="utf-8")
    tests = [tmp_path / "a-test.conll", tmp_path / "b-test.conll"]
    run = twner("filter-text", tmp_path / "tweets.txt", "--output", tmp_path / "out.txt", "--test", tests[0], "--test", tests[1],
                "--report", tmp_path / "report.json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "First tweet\n"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sources"]["tweets"] == {
        "empty": 1, "kept": 1, "read": 6, "removed: matches a-test": 2, "removed: matches b-test": 1, "repeats": 1,
    }  # fmt: skip
    assert report["test_sets"] == {"a-test": {"documents": 2, "documents_found": 1}, "b-test": {"documents": 1, "documents_found": 1}}


def test_filter_on_the_real_data_finds_the_known_overlap_and_leaves_none(assets_dir, tmp_path):
    """588 of WNUT17's 1,287 test documents and 1 WNUT16 test tweet are among the
    unlabeled tweets; 4 WNUT16 dev tweets (in WNUT17 train too) repeat a WNUT16
    test tweet, 1 WNUT17 dev tweet a WNUT17 test one. After the filter no kept
    text matches any test document."""
    out, report_path = tmp_path / "text.txt", tmp_path / "report.json"
    sources = [assets_dir / "tweets-unlabeled", *(wnut_file(assets_dir, d, s) for d in ("wnut16", "wnut17") for s in ("train", "dev"))]
    tests = [wnut_file(assets_dir, "wnut16", "test"), wnut_file(assets_dir, "wnut17", "test")]
    run = twner("filter-text", *sources, "--output", out, "--test", tests[0], "--test", tests[1], "--report", report_path)
    assert run.returncode == 0, run.stderr
    report = json.loads(report_path.read_text())
    assert report["test_sets"]["wnut17-test"] == {"documents": 1287, "documents_found": 589}  # 588 tweets, 1 dev doc
    assert report["test_sets"]["wnut16-test"] == {"documents": 3850, "documents_found": 2}
    tweets = report["sources"]["tweets-unlabeled"]
    assert tweets["read"] == 40_000 and tweets["removed: matches wnut17-test"] == 671 and tweets["removed: matches wnut16-test"] == 1
    assert report["sources"]["wnut16-dev"]["removed: matches wnut16-test"] == 4
    assert report["sources"]["wnut17-train"]["removed: matches wnut16-test"] == 4  # WNUT17 train holds WNUT16 dev
    kept = out.read_text(encoding="utf-8").splitlines()
    assert len(kept) == report["kept"] > 35_000
    test_keys = {normalize(t) for path in tests for t in read_texts(path)}
    assert not [t for t in kept if normalize(t) in test_keys]
    # ... and the sources did hold them: the check above is not vacuous.
    assert sum(normalize(t) in test_keys for source in sources for t in read_texts(source)) >= 671 + 1 + 4 + 1


@pytest.mark.slow
def test_train_and_dev_combine_without_the_dev_tweets_that_repeat_test_tweets(assets_dir, tmp_path):
    corpus = {}
    for split in ("train", "dev", "test"):
        corpus[split] = tmp_path / f"wnut16-{split}.spacy"
        assert twner("convert", wnut_file(assets_dir, "wnut16", split), corpus[split], "--labels", "wnut16").returncode == 0
    out = tmp_path / "wnut16-train+dev"
    run = twner("combine", corpus["train"], corpus["dev"], "--output-dir", out, "--test", corpus["test"], "--report", tmp_path / "r.json")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "r.json").read_text())["corpora"]
    assert [(c["docs"], c["removed"]) for c in report.values()] == [(2394, 0), (1000, 4)]
    assert sorted(p.name for p in out.iterdir()) == ["wnut16-dev.spacy", "wnut16-train.spacy"]
    test_keys = {normalize(t) for t in read_texts(corpus["test"])}
    assert not [t for t in read_texts(out / "wnut16-dev.spacy") if normalize(t) in test_keys]


@pytest.mark.slow
def test_stats_count_entities_tags_and_case_per_split(assets_dir, tmp_path):
    corpus = []
    for split in ("train", "dev"):
        corpus.append(tmp_path / f"wnut16-{split}.spacy")
        assert twner("convert", wnut_file(assets_dir, "wnut16", split), corpus[-1], "--labels", "wnut16").returncode == 0
    run = twner("stats", *corpus, "--output", tmp_path / "data.json", "--plot", tmp_path / "data.png")
    assert run.returncode == 0, run.stderr
    table = json.loads((tmp_path / "data.json").read_text())
    train, dev = table["wnut16-train"], table["wnut16-dev"]
    assert (train["tweets"], train["entities"], dev["tweets"], dev["entities"]) == (2394, 1496, 1000, 661)
    assert sum(train["entities_per_type"].values()) == train["entities"] == sum(n for t, n in train["tags"].items() if t[:2] == "B-")
    assert set(train["entities_per_type"]) == set(DATASETS["wnut16"].labels)
    # the case signal an uncased backbone loses: entity tokens are mostly capitalized
    assert train["capitalized_share"]["entity_tokens"] == pytest.approx(0.81, abs=0.01)
    assert train["capitalized_share"]["all_tokens"] == pytest.approx(0.19, abs=0.01)
    assert "| person |" in run.stdout and (tmp_path / "data.png").read_bytes()[:4] == b"\x89PNG"


def test_make_all_without_mirror_or_network_fails_fast_naming_both(tmp_path):
    """A clone with no ../shared/data and no reachable upstream: `make all` stops at
    the assets with a message that names the mirror and the upstream URLs."""
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("Makefile", "project.yml", "setup.cfg", "pyproject.toml"):
        shutil.copy(ROOT / name, clone / name)
    bin_dir = tmp_path / "bin"  # this venv stands in for the one make would build
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    (bin_dir / ".installed").touch()
    unreachable = "http://127.0.0.1:9/nowhere"
    sources = " ".join(f"--vars.{key} {unreachable}" for key in ("wnut16_source", "wnut17_source", "stsb_source", "tweets_source"))
    run = subprocess.run(["make", "all", f"BIN={bin_dir}", f"VARS={sources}"], cwd=clone, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode != 0 and "No module named" not in output
    assert "No data mirror at ../shared/data" in output
    assert "no mirror at ../shared/data" in output and "upstream URLs in project.yml could not be fetched" in output
    # nothing after the assets ran (the project's empty directories, such as corpus/xx-check, may exist)
    assert not [p for folder in ("corpus", "training") for p in (clone / folder).rglob("*") if p.is_file()]
