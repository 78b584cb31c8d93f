"""The ensemble's like-for-like protocol, after `twner tune-vote` chose a setting
on dev with train-only members (docs/experiments/ensemble.md).

The chosen setting names members of two kinds (MiniLM seeds m0, m1, ...;
e5 seeds e0, e1, ...). Its like-for-like figure should not rest on one draw
of seeds, so the same kinds, weights and threshold are assembled again from
other train-only seeds (a rotation over the seeds trained) and each
realisation is read once on test. Every train-only member (int8, as the
ensemble runs it) is scored alone on test too.

    python benchmarks/ensemble_protocol.py metrics/ens-lfl-vote.json --members m0=training/wnut16-trf-train-s0/model-int8 ... \\
        --test corpus/wnut16-test.spacy --work training/ens-lfl --output metrics/ens-lfl-protocol.json

It prints the shipped ensemble's settings for project.yml (ensemble_members's
kinds, vote_threshold, vote_weights).
"""
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import typer

app = typer.Typer(add_completion=False)


def kind(name: str) -> str:
    return name.rstrip("0123456789")


def realisations(chosen: List[str], available: Dict[str, List[str]], count: int) -> List[List[str]]:
    """Rotations of the chosen members over the seeds of their kinds: the r-th
    takes, for each chosen member, the seed r places further in its kind's list."""
    out = []
    for r in range(count):
        picked = []
        for name in chosen:
            seeds = available[kind(name)]
            picked.append(seeds[(seeds.index(name) + r) % len(seeds)])
        if len(set(picked)) == len(picked) and picked not in out:
            out.append(picked)
    return out


def run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", *args], check=True)


@app.command()
def main(
    vote_record: Path = typer.Argument(..., exists=True, dir_okay=False),
    members: List[str] = typer.Option(..., "--members", help="NAME=PIPELINE of every train-only member, repeatable"),
    test: Path = typer.Option(..., "--test", exists=True, dir_okay=False),
    work: Path = typer.Option(..., "--work", help="Where the realisations are assembled"),
    output: Path = typer.Option(..., "--output"),
    count: int = typer.Option(3, "--count", help="Most realisations"),
    size: int = typer.Option(0, "--size", help="The best setting of this many members (0: the best of any size)"),
) -> None:
    vote = json.loads(vote_record.read_text())
    best = vote["best_by_size"][str(size)] if size else vote["best"]
    paths = dict(m.split("=", 1) for m in members)
    available: Dict[str, List[str]] = {}
    for name in paths:
        available.setdefault(kind(name), []).append(name)
    results: Dict[str, dict] = {"chosen": best, "members_alone": {}, "realisations": []}
    for name, path in paths.items():
        record = work / f"member-{name}.json"
        if record.exists():  # scored by an earlier size's run: test is read once per member
            results["members_alone"][name] = str(record)
            continue
        run("spacy_twner", "evaluate", path, str(test), "--output", str(record), "--speed-passes", "0",
            "--changes", f"train-only member {name} (int8) alone", "--info", "dataset=wnut16")  # fmt: skip
        results["members_alone"][name] = str(record)
    by_kind = {k: [best["weights"][n] for n in best["members"] if kind(n) == k] for k in {kind(n) for n in best["members"]}}
    for r, picked in enumerate(realisations(best["members"], available, count)):
        weights = [f"{new}={best['weights'][old]:g}" for old, new in zip(best["members"], picked)]
        tag = f"{len(picked)}m-r{r}"
        config, model, record = work / f"{tag}.cfg", work / tag, work / f"{tag}.json"
        run("spacy_twner", "ensemble-config", str(config), "--member", ",".join(f"{n}={paths[n]}" for n in picked),
            "--threshold", str(best["threshold"]), "--weight", ",".join(weights))  # fmt: skip
        run("spacy", "assemble", str(config), str(model))
        run("spacy_twner", "evaluate", str(model), str(test), "--output", str(record), "--speed-passes", "0",
            "--changes", f"like for like: train-only {'+'.join(picked)} voting at {best['threshold']:g}", "--info", "dataset=wnut16")  # fmt: skip
        results["realisations"].append({"members": picked, "record": str(record), "ents_f": json.loads(record.read_text())["ents_f"]})
    output.write_text(json.dumps(results, indent=2))
    kinds = [kind(n) for n in best["members"]]
    print(json.dumps({"kinds": kinds, "threshold": best["threshold"], "weights_by_kind": by_kind,
                      "test_f1": [round(100 * x["ents_f"], 2) for x in results["realisations"]]}, indent=2))  # fmt: skip


if __name__ == "__main__":
    app()
