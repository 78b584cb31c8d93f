"""Side-by-side tables of runs: evaluations (`twner evaluate` or `spacy evaluate` JSON)
and benchmarks (benchmarks/*.py JSON)."""
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import srsly

from ..markdown import MISSING, pct, table


def compare_files(paths: Sequence[Path]) -> str:
    """compare_table of run records, each named by its file's stem."""
    return compare_table({Path(p).stem: srsly.read_json(p) for p in paths})


def compare_table(runs: Dict[str, dict]) -> str:
    """Two Markdown tables: a row per run (what changed, dev F1, test P/R/F1
    with its 95% interval, entity-confidence ECE, train wall time, words/s),
    then test F1 per type."""
    header = ("run", "what changed", "dev F1", "test P", "test R", "test F1 [95% CI]", "ECE", "train time", "words/s")
    rows: List[Sequence[str]] = []
    for name, m in runs.items():
        ci = m.get("ci", {}).get("ents_f")
        f1 = pct(m.get("ents_f"))
        rows.append((
            name, m.get("changes") or MISSING, pct(m.get("dev_ents_f")), pct(m.get("ents_p")), pct(m.get("ents_r")),
            f"**{f1}** [{pct(ci[0])}, {pct(ci[1])}]" if ci else f"**{f1}**",
            pct((m.get("calibration") or {}).get("ece")), _minutes(m.get("train_seconds")), f"{m['speed']:,.0f}" if "speed" in m else MISSING,
        ))  # fmt: skip
    types = sorted({t for m in runs.values() for t in m.get("ents_per_type") or {}})
    per_type = [
        (name, *(pct((m.get("ents_per_type") or {}).get(t, {}).get("f")) for t in types))
        for name, m in runs.items()
    ]
    return table(header, rows) + "\n\nTest F1 per type:\n\n" + table(("run", *types), per_type)


def _minutes(seconds: Optional[float]) -> str:
    return MISSING if seconds is None else f"{seconds / 60:.1f} min"


def throughput_markdown(results: dict) -> str:
    """benchmarks/throughput.py's record: a row per option, in the order run;
    with several rounds, tweets/s and the embedder's share of the time are
    medians, each round's figure in brackets."""
    machine = results.get("_machine", {})
    header = ("option", "what", "tweets/s", "sentence_embedder's share of the time", "peak RSS MiB", "test F1", "same entities as default")
    rows = []
    for name, r in results.items():
        if name.startswith("_"):
            continue
        same = r.get("same_entities")
        rows.append((name, r["what"], _with_rounds(r, "tweets_per_s", "{:,.1f}"), _with_rounds(r, "embedder_share", "{:.1%}"),
                     f"{r['peak_rss_mib']:,.0f}", f"{r['test_f1']:.2f}" if "test_f1" in r else MISSING,
                     MISSING if same is None else f"{100 * same:.1f}%"))  # fmt: skip
    rounds = f", {machine['rounds']} rounds" if machine.get("rounds", 1) > 1 else ""
    note = f"\n\n{machine.get('tweets', '?')} tweets per option, {machine.get('cpus', '?')} CPUs{rounds}, {machine.get('date', '')}".rstrip(", ")
    return table(header, rows) + note + _embedder_cost(results)


def _embedder_cost(results: dict) -> str:
    """default / no-embedder tweets/s: the embedder's cost as a user feels it
    (the ratio of the medians, and round by round, where the two ran in turn)."""
    default, bare = results.get("default", {}), results.get("no-embedder", {})
    if "tweets_per_s" not in default or "tweets_per_s" not in bare:
        return ""
    paired = [a / b for a, b in zip(default.get("tweets_per_s_rounds", []), bare.get("tweets_per_s_rounds", []))]
    each = f" (round by round: {', '.join(f'{x:.3f}' for x in paired)})" if len(paired) > 1 else ""
    return f"\n\ndefault / no-embedder, tweets/s: {default['tweets_per_s'] / bare['tweets_per_s']:.3f}{each}."


def _with_rounds(record: dict, key: str, form: str) -> str:
    if key not in record:
        return MISSING
    rounds = record.get(f"{key}_rounds", [])
    each = f" ({', '.join(form.format(x) for x in rounds)})" if len(rounds) > 1 else ""
    return form.format(record[key]) + each


def serve_markdown(results: dict) -> str:
    """benchmarks/serve_load.py's record: a row per server, then the batch reference."""
    header = ("server", "clients", "requests", "errors", "requests/s", "share of batch throughput", "p50 ms", "p95 ms", "p99 ms")
    batch = results["batch"]["tweets_per_s"]
    rows = [
        (name, str(r["clients"]), str(r["requests"]), str(r["errors"]), f"{r['requests_per_s']:,.1f}", f"{100 * r['requests_per_s'] / batch:.0f}%",
         f"{r['latency_ms']['p50']:.0f}", f"{r['latency_ms']['p95']:.0f}", f"{r['latency_ms']['p99']:.0f}")
        for name, r in results["servers"].items()
    ]  # fmt: skip
    return table(header, rows) + f"\n\nBatch reference: the same pipeline, `nlp.pipe(batch_size=64)` in-process: {batch:,.1f} tweets/s."
