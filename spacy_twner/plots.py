"""Charts people would rather look at than read."""
from pathlib import Path
from typing import Dict


def plot_stsb(results: Dict[str, Dict[str, float]], path: Path) -> None:
    """Grouped bars: STSb Spearman per language (and English vs language) for each model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in next(iter(results.values())) if k not in ("sentences_per_s", "bytes_on_disk")]
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(max(8, len(keys) * 0.6), 4))
    for i, (name, scores) in enumerate(results.items()):
        ax.bar([x + i * width for x in range(len(keys))], [scores[k] for k in keys], width, label=name)
    ax.set_xticks([x + width * (len(results) - 1) / 2 for x in range(len(keys))], keys, rotation=60)
    ax.set_ylabel("Spearman x100 (cosine)")
    ax.set_title("STSb test (stsb-multi-mt)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
