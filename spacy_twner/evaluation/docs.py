"""Tables in the docs, generated from the run records under docs/runs/.

A table sits between two markers that name how to make it:

    <!-- table: compare docs/runs/wnut16-trf-train.json docs/runs/wnut16-trf.json -->
    ...generated Markdown...
    <!-- end table -->

A single figure in running text sits between two inline markers that name
its record, the key (dotted for nested ones) and the form:

    en_twner scores <!-- value: docs/runs/en_twner.json ents_f pct -->50.5<!-- /value --> F1

(keys: dotted, list items by index, e.g. ci.ents_f.0; forms: pct, 100 x a
share with one decimal; int, a whole number with thousands separators;
float1; mib, bytes as MiB with one decimal; minutes, seconds as minutes;
text; code, in backticks).

`twner docs docs/*.md` rewrites every such block from its records, and the
tests check that none is stale, so a figure in the docs is always the one its
record holds. Paths (and globs) are relative to the project root.
"""
import glob
import re
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import srsly

from ..markdown import table

BLOCK = re.compile(r"(<!-- table: (?P<spec>[^\n]*?) -->\n)(?P<body>.*?)(<!-- end table -->)", re.DOTALL)
VALUE = re.compile(r"(<!-- value: (?P<record>\S+) (?P<key>\S+) (?P<form>\w+) -->)(?P<body>[^<]*)(<!-- /value -->)")
FORMS: Dict[str, Callable[[object], str]] = {
    "pct": lambda v: f"{100 * float(v):.1f}",
    "int": lambda v: f"{float(v):,.0f}",
    "float1": lambda v: f"{float(v):,.1f}",
    "mib": lambda v: f"{float(v) / 2**20:,.1f}",
    "minutes": lambda v: f"{float(v) / 60:,.1f}",
    "text": str,
    "code": lambda v: f"`{v}`",
}


def value(record: str, key: str, form: str, root: Path) -> str:
    """One figure of one record, formatted."""
    (path,) = _records([record], root)
    data = srsly.read_json(path)
    for part in key.split("."):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise KeyError(f"{record} has no {key!r}")
    if form not in FORMS:
        raise ValueError(f"unknown value form {form!r} (known: {', '.join(FORMS)})")
    return FORMS[form](data)


def _records(patterns: Sequence[str], root: Path) -> List[Path]:
    paths: List[Path] = []
    for pattern in patterns:
        found = sorted(glob.glob(str(Path(root) / pattern)))
        if not found:
            raise FileNotFoundError(f"no run record matches {pattern!r}")
        paths += [Path(p) for p in found]
    return paths


def _compare(args: Sequence[str], root: Path) -> str:
    from .compare import compare_files

    return compare_files(_records(args, root))


def _single(render: Callable[[dict], str]) -> Callable[[Sequence[str], Path], str]:
    def make(args: Sequence[str], root: Path) -> str:
        (path,) = _records(args, root)
        return render(srsly.read_json(path))

    return make


def _packages(args: Sequence[str], root: Path) -> str:
    """The table of shipped packages from a build manifest (docs/runs/build.json):
    per package its test record, throughput record and option, package record."""
    (path,) = _records(args, root)
    rows = []
    for name, entry in srsly.read_json(path)["packages"].items():
        test = srsly.read_json(Path(root) / entry["test"])
        low, high = test["ci"]["ents_f"]
        speed_record, option = entry["speed"]
        speed = srsly.read_json(Path(root) / speed_record)[option]["tweets_per_s"]
        size = srsly.read_json(Path(root) / entry["package"])["bytes"]
        rows.append((f"`{name}`", entry["what"], f"**{100 * test['ents_f']:.1f}** [{100 * low:.1f}, {100 * high:.1f}]", f"{speed:,.0f}", f"{size / 2**20:,.0f}"))
    return table(("package", "what", "WNUT16 test F1 [95% CI]", "tweets/s", "wheel MiB"), rows)


def _seeds(args: Sequence[str], root: Path) -> str:
    """Runs that differ only in their seed, in groups (NAME=GLOB ...): each run's
    test F1, and the mean and sample standard deviation of the group."""
    import statistics

    rows = []
    for arg in args:
        name, _, pattern = arg.partition("=")
        scores = [100 * srsly.read_json(path)["ents_f"] for path in _records([pattern], root)]
        spread = f" ± {statistics.stdev(scores):.1f}" if len(scores) > 1 else ""
        rows.append((name.replace("_", " "), len(scores), ", ".join(f"{x:.1f}" for x in scores), f"**{statistics.mean(scores):.1f}**{spread}"))
    return table(("runs", "seeds", "test F1 of each", "mean ± sd"), rows)


def _vote(args: Sequence[str], root: Path) -> str:
    """`twner tune-vote`'s record: each member alone, then the best setting of
    each ensemble size, on dev."""
    (path,) = _records(args, root)
    from .vote import vote_rows

    record = srsly.read_json(path)
    singles = [r for r in record["rows"] if len(r["members"]) == 1]
    best = list(record["best_by_size"].values())
    rows = vote_rows({"rows": singles + best}, top=len(best))
    return table(("members", "weights", "threshold", "dev P", "dev R", "dev F1"), rows)


def _generators() -> Dict[str, Callable[[Sequence[str], Path], str]]:
    from .compare import serve_markdown, throughput_markdown
    from ..data.corpus import filter_markdown
    from .stsb import stsb_markdown
    from ..data.stats import stats_markdown

    return {
        "compare": _compare,
        "stsb": _single(stsb_markdown),
        "stats": _single(stats_markdown),
        "filter": _single(filter_markdown),
        "throughput": _single(throughput_markdown),
        "serve": _single(serve_markdown),
        "packages": _packages,
        "seeds": _seeds,
        "vote": _vote,
    }


def render(text: str, root: Path = Path(".")) -> str:
    """The text with every table block regenerated (record paths relative to root)."""
    generators = _generators()

    def replace(match: "re.Match[str]") -> str:
        name, *args = match.group("spec").split()
        if name not in generators:
            raise ValueError(f"unknown table kind {name!r} (known: {', '.join(generators)})")
        return f"{match.group(1)}{generators[name](args, root).rstrip()}\n{match.group(4)}"

    def replace_value(match: "re.Match[str]") -> str:
        return f"{match.group(1)}{value(match['record'], match['key'], match['form'], root)}{match.group(6)}"

    return VALUE.sub(replace_value, BLOCK.sub(replace, text))


def update_tables(paths: Sequence[Path], write: bool = True, root: Path = Path(".")) -> List[Path]:
    """Regenerate the tables of each file; return the files whose tables changed
    (with write=False, the files that are stale, left as they are)."""
    stale = []
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        new = render(text, root)
        if new != text:
            stale.append(Path(path))
            if write:
                Path(path).write_text(new, encoding="utf-8")
    return stale
