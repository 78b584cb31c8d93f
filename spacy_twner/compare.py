"""Side-by-side tables of `spacy evaluate` metrics files."""
from typing import Dict, List, Sequence


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def compare_table(runs: Dict[str, dict]) -> str:
    """A Markdown table: one column per run, overall and per-type P/R/F1 rows."""
    names = list(runs)
    types = sorted({t for m in runs.values() for t in m.get("ents_per_type") or {}})
    rows: List[Sequence[str]] = [
        ("P / R / F1 (overall)", *(_prf(runs[n]) for n in names)),
        ("words/s (`spacy evaluate`)", *(f"{runs[n]['speed']:,.0f}" for n in names)),
    ]
    for t in types:
        cells = (_prf(runs[n]["ents_per_type"].get(t, {})) for n in names)
        rows.append((f"{t}", *cells))
    header = ("", *names)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _prf(scores: dict) -> str:
    p, r, f = (scores.get(k) for k in ("ents_p", "ents_r", "ents_f"))
    if p is None:  # per-type entries use p/r/f
        p, r, f = (scores.get(k) for k in ("p", "r", "f"))
    if f is None:
        return "–"
    return f"{_pct(p)} / {_pct(r)} / **{_pct(f)}**"

