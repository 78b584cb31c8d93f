"""Side-by-side tables of evaluation runs (`twner evaluate` or `spacy evaluate` JSON)."""
from typing import Dict, List, Optional, Sequence

MISSING = "–"


def compare_table(runs: Dict[str, dict]) -> str:
    """Two Markdown tables: a row per run (what changed, dev F1, test P/R/F1
    with its 95% interval, train wall time, words/s), then test F1 per type."""
    header = ("run", "what changed", "dev F1", "test P", "test R", "test F1 [95% CI]", "train time", "words/s")
    rows: List[Sequence[str]] = []
    for name, m in runs.items():
        ci = m.get("ci", {}).get("ents_f")
        f1 = _pct(m.get("ents_f"))
        rows.append((
            name, m.get("changes") or MISSING, _pct(m.get("dev_ents_f")), _pct(m.get("ents_p")), _pct(m.get("ents_r")),
            f"**{f1}** [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else f"**{f1}**",
            _minutes(m.get("train_seconds")), f"{m['speed']:,.0f}" if "speed" in m else MISSING,
        ))  # fmt: skip
    types = sorted({t for m in runs.values() for t in m.get("ents_per_type") or {}})
    per_type = [
        (name, *(_pct((m.get("ents_per_type") or {}).get(t, {}).get("f")) for t in types))
        for name, m in runs.items()
    ]
    return _markdown(header, rows) + "\n\nTest F1 per type:\n\n" + _markdown(("run", *types), per_type)


def _markdown(header: Sequence[str], rows: List[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _pct(value: Optional[float]) -> str:
    return MISSING if value is None else f"{100 * value:.1f}"


def _minutes(seconds: Optional[float]) -> str:
    return MISSING if seconds is None else f"{seconds / 60:.1f} min"
