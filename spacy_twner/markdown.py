"""The one Markdown table writer: every table the CLI prints and the docs hold."""
from typing import Iterable, Optional, Sequence

MISSING = "–"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], aligns: Optional[str] = None) -> str:
    """A GitHub Markdown table; aligns: one of l/r/c per column (default: none)."""
    rule = {"l": ":---", "r": "---:", "c": ":---:", None: "---"}
    marks = [rule[a] for a in aligns] if aligns else [rule[None]] * len(header)
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(value: Optional[float], digits: int = 1) -> str:
    """A share in [0, 1] as a percentage with `digits` decimals, or MISSING."""
    return MISSING if value is None else f"{100 * value:.{digits}f}"
