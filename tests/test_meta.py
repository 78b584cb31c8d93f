"""The package meta: shared template plus a per-pipeline overlay (configs/meta*.json)."""
import pytest
import srsly

from spacy_twner.packaging.meta import build_meta, overlay

from .conftest import ROOT

METRICS = {"ents_p": 0.5, "ents_r": 0.4, "ents_f": 0.44, "ents_per_type": {}}


def templates(*names):
    return overlay(*(srsly.read_json(ROOT / "configs" / name) for name in names))


def test_overlay_merges_objects_extends_lists_and_replaces_the_rest():
    base = {"a": 1, "d": {"x": 1, "y": 2}, "l": [1]}
    assert overlay(base, {"a": 2, "d": {"y": 3}, "l": [2]}) == {"a": 2, "d": {"x": 1, "y": 3}, "l": [1, 2]}
    assert base == {"a": 1, "d": {"x": 1, "y": 2}, "l": [1]}  # inputs untouched


@pytest.mark.parametrize("lang,overlay_file,backbones,embedder", [
    ("en", "meta-en.json", ["MiniLM"], True), ("xx", "meta-xx.json", ["multilingual-e5-small"], True),
    ("en", "meta-ensemble.json", ["MiniLM", "multilingual-e5-small"], False),
])  # fmt: skip
def test_each_package_gets_the_shared_sources_its_own_backbones_and_the_embedder_s_where_it_has_one(lang, overlay_file, backbones, embedder):
    meta = build_meta({"lang": lang, "performance": {}}, METRICS, templates("meta.json", overlay_file))
    names = [s["name"] for s in meta["sources"]]
    assert meta["lang"] == lang and any("WNUT 2016" in n for n in names)
    assert all(sum(b in n for n in names) == 1 and b in meta["licenses"]["weights"] for b in backbones)
    assert any("Universal Sentence Encoder" in n for n in names) == embedder
    assert ("stsb-multi-mt" in meta["licenses"]["data"]) == embedder and "WNUT16" in meta["licenses"]["data"]


def test_a_template_that_contradicts_the_pipelines_language_is_an_error():
    with pytest.raises(ValueError, match="lang 'en'.*'xx'"):
        build_meta({"lang": "xx"}, METRICS, templates("meta.json", "meta-en.json"))
