"""Does a tweet get the same entities alone as in a batch? For each pipeline,
N unlabeled tweets are annotated once by `nlp.pipe(batch_size=64)` and once
one at a time, and the tweets whose entities differ are counted.

  python benchmarks/determinism.py training/wnut16-trf/model-final training/wnut16-trf/model-int8 \\
      --tweets assets/tweets-unlabeled --n 400 --output docs/runs/determinism.json

Float pipelines should give 0: each tweet's computation is its own; so
should int8 called per sequence (en_twner). ONNX Runtime's dynamic int8 on a
padded batch (`twner optimize --int8 --batched`) scales activations per
batch, so a tweet's entities can depend on the tweets beside it.
"""
import json
from datetime import date
from pathlib import Path
from typing import Dict, List

import typer
from tqdm import tqdm

from spacy_twner.data.corpus import first_texts

SKIP = 5000  # past the tweets benchmarks/throughput.py annotates

app = typer.Typer(add_completion=False)


@app.command()
def main(
    models: List[str] = typer.Argument(..., help="Pipelines (directories or package names)"),
    tweets_dir: Path = typer.Option(..., "--tweets", help="Folder of unlabeled tweets (*.txt, one per line)", exists=True, file_okay=False),
    n: int = typer.Option(400, "--n", help="Tweets per pipeline"),
    output: Path = typer.Option(Path("metrics/determinism.json"), "--output", "-o", help="JSON to write"),
) -> None:
    import spacy

    texts = first_texts(tweets_dir, n, skip=SKIP)
    results: Dict[str, Dict] = {}
    for model in models:
        nlp = spacy.load(model, exclude=["sentence_embedder"])
        batched = [entities(doc) for doc in nlp.pipe(texts, batch_size=64)]
        alone = [entities(nlp(text)) for text in tqdm(texts, desc=f"{model}, one at a time", unit=" tweet")]
        differ = [i for i, (a, b) in enumerate(zip(batched, alone)) if a != b]
        results[model] = {"tweets": len(texts), "differ": len(differ), "first_differing": [texts[i] for i in differ[:3]]}
        print(f"{model}: {len(differ)} of {len(texts)} tweets get other entities alone than in batches of 64")
    results["_run"] = {"date": date.today().isoformat(), "batch_size": 64, "skipped": SKIP}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"wrote {output}")


def entities(doc) -> list:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


if __name__ == "__main__":
    app()
