"""Where en_twner's sentence embedder spends its time, and how close its
arithmetic runs to what this machine's matrix products reach: is the
embedder's share of the pipeline a matter of overhead (worth optimising) or
of arithmetic (a floor, short of a cheaper model)?

For N unlabeled tweets, in one process, each round: the pipeline without the
embedder, then the embedder over its docs (as benchmarks/throughput.py's
share); then the encoder's parts on the same texts (the doc texts and the
entity texts the component encodes): tokenizing, the USE-m forward, and the
linear head over the forward's vectors, the rest being the component's own
work (targets, storing vectors). Each is timed from a cold cache of piece
projections, as in a fresh process. The forward's multiply-adds are counted
from its weight shapes and the groups it runs; the reference is a plain
float32 product of the forward's largest shape on the same thread pool.

  python benchmarks/embedder_cost.py training/wnut16-trf/model-int8 --tweets assets/tweets-unlabeled \\
      --n 2000 --rounds 2 --output docs/runs/embedder-cost.json
"""
import json
import os
import time
from datetime import date
from pathlib import Path
from statistics import median
from typing import Dict, List

import typer

from spacy_twner.data.corpus import first_texts

BATCH = 64

app = typer.Typer(add_completion=False)


def forward_macs(use_m, groups: List[List[List[int]]]) -> int:
    """Multiply-adds of UseMultilingual._forward over these groups, from a cold
    cache: per token the second conv layer; per distinct piece of a group the
    first; per distinct piece of the run its projection (then cached); per
    text the output layer and head."""
    second = sum(w2.numel() for _, _, w2, _ in use_m.conv)
    first = sum(w1.numel() for w1, _, _, _ in use_m.conv)
    per_text = use_m.out_w.numel() + sum(w.numel() for w in use_m.head.values())
    macs = use_m.proj_w.numel() * len({i for group in groups for ids in group for i in ids})
    for group in groups:
        macs += second * sum(map(len, group)) + first * len({i for ids in group for i in ids}) + per_text * len(group)
    return macs


def matmul_gflops(rows: int, inner: int, cols: int, repeats: int = 50) -> float:
    """float32 GFLOP/s of a plain (rows x inner) @ (inner x cols) product."""
    import torch

    a, b = torch.randn(rows, inner), torch.randn(inner, cols)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * inner * cols * repeats / (time.perf_counter() - start) / 1e9


class Encoded:
    """Stands in for the encoder under the head: each call returns the next
    batch's vectors, so the head is timed without the forward."""

    loaded = True

    def __init__(self, batches: List) -> None:
        self.batches = iter(batches)

    def encode(self, texts: List[str]):
        return next(self.batches)


@app.command()
def main(
    model: str = typer.Argument(..., help="Pipeline with a USE-m sentence_embedder (en_twner or a run's model-int8)"),
    tweets_dir: Path = typer.Option(..., "--tweets", help="Folder of unlabeled tweets (*.txt, one per line)", exists=True, file_okay=False),
    n: int = typer.Option(2000, "--n", help="Tweets"),
    rounds: int = typer.Option(2, "--rounds", help="Rounds; each figure is the median"),
    output: Path = typer.Option(Path("metrics/embedder-cost.json"), "--output", "-o", help="JSON to write"),
) -> None:
    """Time the pipeline's parts and the embedder's, print them and write the JSON."""
    import spacy
    import torch

    from spacy_twner.pipeline.use_multilingual import TOKEN_BUDGET

    tweets = first_texts(tweets_dir, n)
    nlp = spacy.load(model)
    embedder = nlp.get_pipe("sentence_embedder")
    head, use_m = embedder.encoder, getattr(embedder.encoder, "encoder", None)
    if type(use_m).__name__ != "UseMultilingual":  # by name: a package carries its own copy of the class
        raise typer.BadParameter(f"{model}: the sentence_embedder is not USE-m under a head", param_hint="MODEL")
    list(nlp.pipe(tweets[:BATCH], batch_size=BATCH))  # warm-up
    times: Dict[str, List[float]] = {}

    def timed(key: str, fn):
        use_m._reset_projection_cache()  # each timing from a cold cache, as a fresh process
        start = time.perf_counter()
        out = fn()
        times.setdefault(key, []).append(time.perf_counter() - start)
        return out

    for _ in range(rounds):
        docs = timed("rest of the pipeline", lambda: list(nlp.pipe(tweets, batch_size=BATCH, disable=["sentence_embedder"])))
        timed("sentence_embedder", lambda: list(embedder.pipe(docs, batch_size=BATCH)))
        batches = [[t.text for d in docs[i : i + BATCH] for t in embedder._targets(d)] for i in range(0, len(docs), BATCH)]
        texts = timed("preprocess", lambda: [[embedder.preprocess(t) for t in b] for b in batches])
        ids = timed("tokenize", lambda: [use_m.token_ids(b) for b in texts])
        vectors = timed("encode (tokenize + forward)", lambda: [use_m.encode(b) for b in texts])
        head.encoder = Encoded(vectors)  # the head's own code over vectors already encoded
        timed("head", lambda: [head.encode(b) for b in texts])
        head.encoder = use_m
    groups: List[List[List[int]]] = []  # the groups the forward runs, as encode forms them (untimed)
    use_m._forward = lambda group, run=use_m._forward: (groups.append(group), run(group))[1]
    for batch in texts:
        use_m.encode(batch)
    del use_m._forward
    largest = max((tuple(w2.shape) for _, _, w2, _ in use_m.conv), key=lambda shape: shape[0] * shape[1])
    m = {k: median(v) for k, v in times.items()}
    forward = m["encode (tokenize + forward)"] - m["tokenize"]
    parts = {
        "preprocess": m["preprocess"], "tokenize": m["tokenize"], "forward": forward,
        "head": m["head"],
        "component's own work": m["sentence_embedder"] - m["preprocess"] - m["encode (tokenize + forward)"] - m["head"],
    }  # fmt: skip
    macs = forward_macs(use_m, groups)
    n_texts, n_tokens = sum(map(len, ids)), sum(len(seq) for b in ids for seq in b)
    result = {
        "model": model, "tweets": len(tweets), "texts": n_texts, "entity_texts": n_texts - len(tweets), "tokens": n_tokens,
        "seconds": {k: round(v, 3) for k, v in m.items()},
        "seconds_rounds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "embedder_share": round(m["sentence_embedder"] / (m["sentence_embedder"] + m["rest of the pipeline"]), 4),
        "embedder_parts": {k: round(v, 3) for k, v in parts.items()},
        "forward_gmacs": round(macs / 1e9, 2),
        "forward_gflops_per_s": round(2 * macs / forward / 1e9, 1),
        "matmul_gflops_per_s": round(matmul_gflops(TOKEN_BUDGET, *largest), 1),
        "_machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "date": str(date.today()), "rounds": rounds},
    }  # fmt: skip
    output.write_text(json.dumps(result, indent=2))
    print(f"{len(tweets)} tweets: {n_texts} texts to encode ({n_texts - len(tweets)} entities), {n_tokens} USE-m tokens")
    print(f"rest of the pipeline {m['rest of the pipeline']:.2f} s, sentence_embedder {m['sentence_embedder']:.2f} s: share {result['embedder_share']:.1%}")
    for k, v in parts.items():
        print(f"  {k:<22} {v:6.3f} s  {v / m['sentence_embedder']:5.1%}")
    print(f"forward: {macs / 1e9:.1f} G multiply-adds, {result['forward_gflops_per_s']} GFLOP/s; "
          f"a plain {TOKEN_BUDGET}x{largest[0]} @ {largest[0]}x{largest[1]} product: {result['matmul_gflops_per_s']} GFLOP/s")  # fmt: skip
    print(f"wrote {output}")


if __name__ == "__main__":
    app()
