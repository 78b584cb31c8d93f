"""Charts people would rather look at than read."""
from pathlib import Path
from typing import Dict


def plot_stsb(results: Dict[str, Dict[str, float]], path: Path) -> None:
    """Grouped bars: STSb Spearman per language (and English vs language) for each model."""
    plt = _pyplot()
    keys = [k for k in next(iter(results.values())) if k not in ("sentences_per_s", "bytes_on_disk")]
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(max(8, len(keys) * 0.6), 4))
    for i, (name, scores) in enumerate(results.items()):
        ax.bar([x + i * width for x in range(len(keys))], [scores[k] for k in keys], width, label=name)
    ax.set_xticks([x + width * (len(results) - 1) / 2 for x in range(len(keys))], keys, rotation=60)
    ax.set_ylabel("Spearman x100 (cosine)")
    ax.set_title("STSb test (stsb-multi-mt)")
    ax.legend()
    _save(fig, path)


def plot_per_type(metrics: dict, path: Path, title: str) -> None:
    """P, R and F1 per entity type, F1 with its bootstrap 95% interval."""
    plt = _pyplot()
    per_type = metrics["ents_per_type"]
    intervals = metrics["ci"]["ents_per_type_f"]
    types = sorted(per_type, key=lambda t: -per_type[t]["f"])
    xs = range(len(types))
    fig, ax = plt.subplots(figsize=(max(7, len(types) * 0.9), 4))
    for offset, key, name in ((-0.27, "p", "precision"), (0.0, "r", "recall"), (0.27, "f", "F1")):
        values = [100 * per_type[t][key] for t in types]
        errors = None
        if key == "f":  # asymmetric interval around the point estimate
            errors = [[v - 100 * intervals[t][0] for t, v in zip(types, values)],
                      [100 * intervals[t][1] - v for t, v in zip(types, values)]]  # fmt: skip
        ax.bar([x + offset for x in xs], values, 0.27, yerr=errors, capsize=3, label=name)
    ax.set_xticks(list(xs), types, rotation=45, ha="right")
    ax.set_ylabel("% (exact-match entities)")
    low, high = (100 * v for v in metrics["ci"]["ents_f"])
    ax.set_title(f"{title}: F1 {100 * metrics['ents_f']:.1f} [{low:.1f}, {high:.1f}]")
    ax.legend()
    _save(fig, path)


def plot_data(table: Dict[str, dict], path: Path) -> None:
    """Entities per type, a bar per split (stats.describe_splits)."""
    plt = _pyplot()
    splits = list(table)
    types = sorted({t for s in table.values() for t in s["entities_per_type"]})
    width = 0.8 / len(splits)
    fig, ax = plt.subplots(figsize=(max(7, len(types) * 0.9), 4))
    for i, split in enumerate(splits):
        counts = [table[split]["entities_per_type"].get(t, 0) for t in types]
        ax.bar([x + i * width for x in range(len(types))], counts, width, label=split)
    ax.set_xticks([x + width * (len(splits) - 1) / 2 for x in range(len(types))], types, rotation=45, ha="right")
    ax.set_ylabel("entities")
    ax.set_title("Entities per type and split")
    ax.legend()
    _save(fig, path)


def plot_reliability(calibration: dict, path: Path, title: str) -> None:
    """Reliability diagram: the share of correct entities per confidence bin
    against the bin's mean confidence, with how many entities each bin holds."""
    plt = _pyplot()
    bins = [b for b in calibration["bins"] if b["count"]]
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", label="entities")
    ax.set_ylabel("share correct (exact match)")
    ax.set_title(f"{title}: ECE {100 * calibration['ece']:.1f}")
    ax.legend()
    edges = calibration["edges"]
    hist.bar([(a + b) / 2 for a, b in zip(edges, edges[1:])], [b["count"] for b in calibration["bins"]], width=edges[1] - edges[0])
    hist.set_xlabel("confidence")
    hist.set_ylabel("entities")
    _save(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
