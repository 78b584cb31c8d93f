"""What the sentence embedder should read: a tweet as it is, or without its
web addresses (`[components.sentence_embedder] preprocess`)? For each
setting, on N unlabeled tweets: the encoder's tokens per tweet, its speed
(tweets/s, the component's `encode` on batches of 64 texts, as `pipe`
calls it; a freshly loaded pipeline per round, so no cache is warm) and
the mean cosine of random pairs of different tweets, split by whether both,
one or neither carry a link. Unrelated
tweets should not look alike because both carry a link.

  python benchmarks/embedder_text.py training/wnut16-trf/model-int8 --tweets assets/tweets-unlabeled \\
      --n 2000 --rounds 2 --output docs/runs/embedder-text.json
"""
import json
import re
import time
from datetime import date
from pathlib import Path
from statistics import median
from typing import Dict, List

import numpy
import typer

from spacy_twner.data.corpus import first_texts

PAIRS = 20000
BATCH = 64  # the component's batch_size
MENTION = re.compile(r"@\w+")

app = typer.Typer(add_completion=False)


@app.command()
def main(
    model: str = typer.Argument(..., help="Pipeline with a sentence_embedder (directory or package name)"),
    tweets_dir: Path = typer.Option(..., "--tweets", help="Folder of unlabeled tweets (*.txt, one per line)", exists=True, file_okay=False),
    n: int = typer.Option(2000, "--n", help="Tweets"),
    rounds: int = typer.Option(2, "--rounds", help="Timed rounds per setting"),
    output: Path = typer.Option(Path("metrics/embedder-text.json"), "--output", "-o", help="JSON to write"),
) -> None:
    import spacy

    from spacy_twner.pipeline.sentence_embedder import URL, without_urls

    strip = without_urls()
    settings = {"as-is": None, "without_urls": strip, "without_urls, mentions as @user": lambda t: MENTION.sub("@user", strip(t))}
    texts = first_texts(tweets_dir, n)
    rng = numpy.random.default_rng(0)
    i, j = rng.integers(0, len(texts), PAIRS), rng.integers(0, len(texts), PAIRS)
    groups = {}
    for kind, pattern in (("link", URL), ("mention", MENTION)):
        has = numpy.array([bool(pattern.search(t)) for t in texts])
        groups[kind] = {"both": has[i] & has[j], "one": has[i] ^ has[j], "neither": ~has[i] & ~has[j], "share": has.mean()}
    results: Dict[str, Dict] = {}
    for name, preprocess in settings.items():
        speeds: List[float] = []
        for _ in range(rounds):
            nlp = spacy.load(model)
            component = nlp.get_pipe("sentence_embedder")
            component.preprocess = preprocess
            component.encode(["warm up the thread pool"])
            start = time.perf_counter()
            vectors = numpy.concatenate([component.encode(texts[k : k + BATCH]) for k in range(0, len(texts), BATCH)])
            speeds.append(len(texts) / (time.perf_counter() - start))
        cosine = (vectors[i] * vectors[j]).sum(axis=1)
        different = i != j
        encoder = getattr(component.encoder, "encoder", component.encoder)
        seen = [component.preprocess(t) for t in texts] if component.preprocess else texts
        results[name] = {
            "tweets_per_s": round(median(speeds), 1),
            "rounds": [round(s, 1) for s in speeds],
            "tokens_per_tweet": round(sum(map(len, encoder.token_ids(seen))) / len(texts), 2) if hasattr(encoder, "token_ids") else None,
            "random_pair_cosine": {kind: {g: round(float(cosine[m & different].mean()), 3) for g, m in by.items() if g != "share"}
                                   for kind, by in groups.items()},  # fmt: skip
        }
        print(f"{name}: {results[name]}")
    results["_run"] = {"date": date.today().isoformat(), "model": model, "tweets": len(texts), "with_link": round(float(groups["link"]["share"]), 3),
                       "with_mention": round(float(groups["mention"]["share"]), 3),
                       "pairs": PAIRS, "batch": BATCH}  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    app()
