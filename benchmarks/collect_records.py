"""Copy a build's run records into docs/runs/build/, named by package, and
write the manifest the docs' package table reads (docs/runs/build/build.json):
the user pages' figures are then regenerated from them (`twner docs docs/*.md`).

    python benchmarks/collect_records.py /path/to/build --make-log build-all.log --output docs/runs/build

The build directory is a project that ran `make all`, `make multilingual`
and `make ensemble`; throughput and serving records are copied when the
benchmarks wrote them there (metrics/throughput*.json, metrics/serve.json).
The experiments' records go along when present: WNUT17 as own data
(docs/experiments/own-data.md) into docs/runs/own/, the ensemble's protocol
(docs/experiments/ensemble.md) into docs/runs/ensemble/.
"""
import json
import re
import shutil
from pathlib import Path
from typing import Dict, Optional

import typer

app = typer.Typer(add_completion=False)

# package -> (test record, its check-set record or None, throughput option, what it is)
PACKAGES = {
    "en_twner": ("wnut16-trf-int8", "xx-check-wnut16-trf", "default", "English, int8 (ONNX Runtime, one call per tweet), CPU: the default"),
    "en_twner_fp32": ("wnut16-trf", None, "torch", "English, float32 torch: GPU, further training"),
    "xx_twner": ("wnut16-xx-int8", "xx-check-wnut16-xx", "xx", "multilingual-e5-small, int8, CPU: tweets in other languages"),
    "xx_twner_fp32": ("wnut16-xx", None, "xx_fp32", "multilingual-e5-small, float32 torch"),
    "en_twner_lg": ("twner_lg", None, "lg", "English, en_twner and xx_twner voting on each entity: the most accurate"),
}
# a package whose speed comes from a throughput run of its own (beside en_twner's default in that run)
SPEED_RECORD = {"en_twner_lg": "throughput-lg.json"}


def make_log(path: Path) -> Dict[str, float]:
    """Wall time and peak memory from `/usr/bin/time -v make all`'s output."""
    text = path.read_text(encoding="utf-8", errors="replace")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    parts = [float(p) for p in wall.split(":")]
    seconds = parts[-1] + 60 * parts[-2] + (3600 * parts[-3] if len(parts) == 3 else 0)
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return {"minutes": round(seconds / 60, 1), "peak_memory_gb": round(peak * 1024 / 1e9, 1)}


@app.command()
def main(
    build: Path = typer.Argument(..., exists=True, file_okay=False),
    output: Path = typer.Option(Path("docs/runs/build"), "--output"),
    make_all_log: Optional[Path] = typer.Option(None, "--make-log", help="`/usr/bin/time -v make all` output"),
    disk_gb: Optional[float] = typer.Option(None, "--disk-gb", help="What the build directory took on disk"),
    throughput: str = typer.Option("throughput.json", "--throughput", help="The throughput record under metrics/ to copy"),
) -> None:
    output.mkdir(parents=True, exist_ok=True)
    metrics = build / "metrics"
    manifest: Dict[str, dict] = {}
    for package, (test, check, option, what) in PACKAGES.items():
        if not (metrics / f"{test}.json").is_file():
            print(f"skipped {package}: no metrics/{test}.json")
            continue
        shutil.copy(metrics / f"{test}.json", output / f"{package}.json")
        if check:
            shutil.copy(metrics / f"{check}.json", output / f"xx-check-{package}.json")
        shutil.copy(metrics / f"package-{package}.json", output / f"package-{package}.json")
        manifest[package] = {"what": what, "test": f"docs/runs/build/{package}.json", "package": f"docs/runs/build/package-{package}.json",
                             "speed": [f"docs/runs/build/{SPEED_RECORD.get(package, 'throughput.json')}", option]}  # fmt: skip
    (output / "build.json").write_text(json.dumps({"packages": manifest}, indent=2) + "\n")
    for name, target in ((throughput, "throughput.json"), *((n, n) for n in SPEED_RECORD.values()), ("stsb.json", "stsb.json"), ("serve.json", "serve.json"), ("wnut17-trf-train.json", "wnut17-trf-train.json")):
        if (metrics / name).is_file():
            shutil.copy(metrics / name, output / target)
    for record in sorted(metrics.glob("wnut16-*-train-s*.json")):
        shutil.copy(record, output / record.name)
    if make_all_log is not None:
        record = {**make_log(make_all_log), **({"disk_gb": disk_gb} if disk_gb is not None else {})}
        (output / "make-all.json").write_text(json.dumps(record, indent=2) + "\n")
    experiments(build, output.parent)
    print(f"wrote {output}: {', '.join(manifest)}")


def experiments(build: Path, runs: Path) -> None:
    """The own-data runs (metrics/w17*.json; the named route's record is the
    build's wnut17-trf-train.json) and the ensemble protocol's records."""
    metrics = build / "metrics"
    own = {p.name: p for p in metrics.glob("w17*.json") if not p.name.endswith("-text.json")}
    own.update({p.name: p for p in metrics.glob("*-old-labels.json")})
    ensemble = {p.name: p for p in metrics.glob("dev-wnut16-*.json")}
    ensemble.update({p.name: p for p in (build / "training" / "ens-lfl").glob("*.json")})
    if (metrics / "ens-lfl-vote.json").is_file():
        ensemble["vote.json"] = metrics / "ens-lfl-vote.json"
    for folder, records in (("own", own), ("ensemble", ensemble)):
        if records:
            (runs / folder).mkdir(parents=True, exist_ok=True)
        for name, path in sorted(records.items()):
            shutil.copy(path, runs / folder / name)


if __name__ == "__main__":
    app()
