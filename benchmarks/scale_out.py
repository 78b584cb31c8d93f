"""Throughput of `twner annotate-files` on a local Dask cluster: 1 worker x 2 torch
threads vs 2 workers x 1 thread, on the same files, in one run.

  python benchmarks/scale_out.py training/wnut16-trf/model-final \
      --tweets ../shared/data/tweets-unlabeled --output metrics/scale_out.json

The clock runs from submitting the files to the last one written; starting the
cluster and loading the pipeline on each worker (the WorkerPlugin) are timed apart.
"""
import json
import tempfile
import time
from pathlib import Path

import typer
from distributed import Client, LocalCluster

from spacy_twner.serve.distributed import PipelinePlugin, annotate_files

app = typer.Typer(add_completion=False)


@app.command()
def main(
    model: Path = typer.Argument(..., help="Pipeline directory", exists=True),
    tweets_dir: Path = typer.Option(..., "--tweets", help="tweets-unlabeled folder", exists=True),
    n: int = typer.Option(2000, help="Tweets in all"),
    files: int = typer.Option(8, help="Files they are split into (one task each)"),
    output: Path = typer.Option(Path("metrics/scale_out.json"), help="JSON to write"),
) -> None:
    tweets = (sorted(tweets_dir.glob("*.txt"))[0]).read_text(encoding="utf-8").splitlines()[:n]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        inputs = []
        for i in range(files):
            path = Path(scratch) / f"part{i}.txt"
            path.write_text("\n".join(tweets[i::files]) + "\n", encoding="utf-8")
            inputs.append(path)
        for workers, threads in ((1, 2), (2, 1)):
            out = Path(scratch) / f"out{workers}"
            out.mkdir()
            start = time.perf_counter()
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster, Client(cluster) as client:
                client.register_plugin(PipelinePlugin(str(model), threads))  # load now, timed apart
                ready = time.perf_counter()
                done = annotate_files(client, str(model), inputs, out, torch_threads=threads)
                seconds = time.perf_counter() - ready
            written = sum(r["written"] for r in done)
            name = f"{workers} worker(s) x {threads} thread(s)"
            results[name] = {"tweets": written, "seconds": round(seconds, 2), "tweets_per_s": round(written / seconds, 1),
                             "startup_s": round(ready - start, 1)}  # fmt: skip
            print(name, results[name], flush=True)
    output.write_text(json.dumps(results, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    app()
