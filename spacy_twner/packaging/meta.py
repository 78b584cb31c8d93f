"""The meta.json and the model card (README) that `spacy package` puts into en_twner."""
from pathlib import Path
from string import Template
from typing import Any, Dict, Iterable, List, Optional

from ..markdown import table

# What `spacy evaluate` reports that belongs in a package's meta.
SCORE_KEYS = ("ents_p", "ents_r", "ents_f", "ents_per_type", "speed")


def build_meta(
    model_meta: Dict[str, Any],
    test_metrics: Dict[str, Any],
    template: Dict[str, Any],
    *,
    requirements: Iterable[str] = (),
    name: Optional[str] = None,
    version: Optional[str] = None,
    description: Optional[str] = None,
    data_report: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Template fields, test-set scores and the packaged code's requirements;
    for a user's own data, its description and files (data_report).

    `performance` holds the test scores users compare with the literature; the
    dev scores that chose the checkpoint stay under `performance_dev`.
    """
    meta = dict(template)
    if meta.get("lang", model_meta.get("lang")) != model_meta.get("lang"):
        raise ValueError(f"the meta template says lang {meta['lang']!r}, the pipeline is {model_meta.get('lang')!r}: "
                         "the package name would lie about its language (overlay a template with the right lang)")
    meta["lang"] = model_meta.get("lang", meta.get("lang"))
    if name:
        meta["name"] = name
    if version:
        meta["version"] = version
    if description:
        meta["description"] = description
    for key in ("url", "author", "email"):  # empty in a user's template: spaCy's card would link to nowhere
        if not meta.get(key):
            meta.pop(key, None)
    if data_report is not None:
        meta["sources"] = data_sources(data_report) + list(meta.get("sources", []))
    if test_metrics.get("base"):
        meta.setdefault("sources", []).insert(0, {"name": f"continued from the pipeline {test_metrics['base']}"})
    meta["performance"] = {k: test_metrics[k] for k in SCORE_KEYS if k in test_metrics}
    if test_metrics.get("calibration"):
        meta["performance"]["ents_confidence_ece"] = test_metrics["calibration"]["ece"]
    meta["performance_dev"] = model_meta.get("performance", {})
    meta["requirements"] = sorted(set(meta.get("requirements", [])) | set(requirements))
    return meta


def overlay(base: Dict[str, Any], *overlays: Dict[str, Any]) -> Dict[str, Any]:
    """base with each overlay on top: objects merge key by key, lists extend
    (an xx template adds its sources to the shared ones), anything else replaces."""
    out = dict(base)
    for top in overlays:
        for key, value in top.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = overlay(out[key], value)
            elif isinstance(value, list) and isinstance(out.get(key), list):
                out[key] = out[key] + value
            else:
                out[key] = value
    return out


def data_sources(report: Dict[str, Any]) -> List[Dict[str, str]]:
    """meta.json sources for a user's own data (`twner prepare`'s report): each file with its format and size."""
    sources = []
    for split, info in report.get("files", {}).items():
        sources.append({"name": f"{split}: {Path(info['path']).name} ({info['format']}, {info['docs']:,} tweets)"})
    if "dev_split" in report:
        split = report["dev_split"]
        sources.append({"name": f"dev: {split['docs']:,} tweets held out of train (share {split['share']}, seed {split['seed']})"})
    return sources


def model_card(meta: Dict[str, Any], metrics: Dict[str, Any], template: str) -> str:
    """The package README as spaCy's own packages have it (spaCy's generator:
    description, the feature table, label scheme, accuracy), then the
    template (configs/model-card*.md) with $-fields filled from meta.json
    and the build's test record."""
    from spacy.cli.package import generate_readme

    ci = metrics.get("ci", {})
    rows = []
    for label, s in sorted(metrics["ents_per_type"].items()):
        low, high = ci.get("ents_per_type_f", {}).get(label, (None, None))
        interval = f"[{100 * low:.1f}, {100 * high:.1f}]" if low is not None else "–"
        rows.append((label, f"{100 * s['p']:.1f}", f"{100 * s['r']:.1f}", f"{100 * s['f']:.1f}", interval))
    low, high = ci.get("ents_f", (metrics["ents_f"], metrics["ents_f"]))
    calibration = metrics.get("calibration")
    name = f"{meta['lang']}_{meta['name']}"
    header = generate_readme({**meta, "description": meta.get("description", "")}).strip()
    body = Template(template).substitute(
        name=name,
        version=meta["version"],
        description=meta.get("description", ""),
        pipeline=", ".join(f"`{p}`" for p in meta.get("pipeline", [])),
        labels=", ".join(f"`{label}`" for label in meta.get("labels", {}).get("ner", [])),
        dataset=metrics.get("dataset", "the training data"),
        test_data=metrics.get("data", "the test split"),
        scored_on=metrics.get("scored_on", "test"),
        base=metrics.get("base") or "none (route a: from the backbone)",
        ents_p=f"{100 * metrics['ents_p']:.1f}",
        ents_r=f"{100 * metrics['ents_r']:.1f}",
        ents_f=f"{100 * metrics['ents_f']:.1f}",
        ents_f_ci=f"[{100 * low:.1f}, {100 * high:.1f}]",
        per_type=table(("type", "P", "R", "F1", "F1 95% interval"), rows),
        ece=f"{100 * calibration['ece']:.1f}" if calibration else "–",
        speed=f"{metrics['speed']:,.0f}" if "speed" in metrics else "–",
        n_docs=f"{metrics.get('n_docs', 0):,}",
        requirements=", ".join(f"`{r}`" for r in meta.get("requirements", [])),
        license=meta.get("license", ""),
    )
    return f"# {name} {meta['version']}\n\n{header}\n\n{body.strip()}\n"
