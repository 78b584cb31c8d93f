"""Tweets/s, peak memory and WNUT16 test F1 of the shipped pipelines, side by
side in one run, each in a fresh process, the way users run them:
`spacy.load(...)` and `nlp.pipe(tweets, batch_size=64)`.

  python benchmarks/throughput.py training/wnut16-trf --test corpus/wnut16-test.spacy \\
      --tweets assets/tweets-unlabeled --n 2000 --output docs/runs/throughput.json \\
      --old-model OLD_PIPELINE --old-python OLD_VENV/bin/python

Options (a run dir holds model-final and model-int8):
- old: the named baseline, e.g. en_twner 0.2.0, in its own Python
  environment (--old-python), since its code is not this version's;
- torch: what en_twner_fp32 ships (model-final: torch float32), the baseline
  the default is measured against;
- default: what en_twner ships (model-int8: ONNX Runtime int8, one call per
  sequence);
- onnxruntime: model-final with its transformer in ONNX Runtime float32, one
  call per sequence (exported as the pipeline loads): the runtime, isolated;
- int8-plain: the default's int8 graph without SmoothQuant's smoothing
  (en_twner 0.3.0 before it; run dir's model-int8-plain, from
  `twner optimize RUN/model-final RUN/model-int8-plain --runtime onnxruntime --int8`);
- int8-batched: the default with one padded call per batch (en_twner_int8
  0.2.0's way): faster or not, and how much the batch moves the entities;
- no-confidence: the default without the beam that scores entities;
- no-embedder: the default without its sentence_embedder (the embedder's cost);
- xx: xx_twner, the multilingual pipeline (--xx-model, e.g.
  training/wnut16-xx/model-int8), in this environment;
- any other pipeline directory or package, as an option of its own name:
  --pipeline NAME=PATH (repeatable; run after the options named in --options).
"same entities" is the share of tweets whose entities equal the default's
(the old pipeline may be another model: compared all the same).
"""
import json
import os
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from spacy_twner.packaging.optimize import runtime_config
from spacy_twner.data.corpus import first_texts

OPTIONS: Dict[str, Dict[str, Any]] = {
    "old": {"what": "the named baseline pipeline (--old-model), its own environment", "model": "old"},
    "torch": {"what": "what en_twner_fp32 ships: torch float32", "model": "model-final"},
    "default": {"what": "what en_twner ships: ONNX Runtime int8, one call per sequence", "model": "model-int8"},
    "onnxruntime": {"what": "en_twner_fp32 with its transformer in ONNX Runtime float32, one call per sequence (exported on load)", "model": "model-final",
                    "config": runtime_config("onnxruntime", per_sequence=True)},
    "int8-plain": {"what": "the default without smoothing before int8 (en_twner 0.3.0 before)", "model": "model-int8-plain",
                   "build": "twner optimize RUN/model-final RUN/model-int8-plain --runtime onnxruntime --int8"},
    "int8-batched": {"what": "the default with one padded call per batch (en_twner_int8 0.2.0)", "model": "model-int8",
                     "config": runtime_config("onnxruntime", int8=True, per_sequence=False)},
    "no-confidence": {"what": "the default without entity confidences (confidence_beam_width 0)", "model": "model-int8",
                      "config": {"components.ner.confidence_beam_width": 0}},  # fmt: skip
    "no-embedder": {"what": "the default without its sentence_embedder", "model": "model-int8", "exclude": ["sentence_embedder"]},
    "xx": {"what": "xx_twner (--xx-model): multilingual-e5-small (int8 as xx_twner ships it)", "model": "xx"},
}
BATCH_SIZE = 64

app = typer.Typer(add_completion=False)


class PeakRSS(threading.Thread):
    """Samples the resident memory of this process."""

    def __init__(self, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process, self.every, self.peak, self.done = psutil.Process(), every, 0, False

    def run(self) -> None:
        while not self.done:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.every)

    def stop(self) -> float:
        self.done = True
        self.join()
        return round(self.peak / 2**20, 1)


def run_option(model: str, config: Dict[str, Any], exclude: List[str], tweets: List[str], test: Optional[Path]) -> Dict[str, Any]:
    """Runs in the option's own process: only spaCy and the pipeline's own code
    (test F1 only where test is given: the first round)."""
    import spacy
    from spacy.scorer import Scorer
    from spacy.tokens import DocBin
    from spacy.training import Example

    peak = PeakRSS()
    peak.start()
    start = time.perf_counter()
    nlp = spacy.load(model, config=config, exclude=exclude)
    load_seconds = time.perf_counter() - start
    list(nlp.pipe(tweets[:BATCH_SIZE], batch_size=BATCH_SIZE))  # warm-up: lazy initialisation, first allocations
    start = time.perf_counter()
    entities = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(tweets, batch_size=BATCH_SIZE)]
    seconds = time.perf_counter() - start
    rss = peak.stop()  # before scoring, which keeps every test doc
    result = {"tweets": len(tweets), "seconds": round(seconds, 2), "tweets_per_s": round(len(tweets) / seconds, 1),
              "load_seconds": round(load_seconds, 1), "peak_rss_mib": rss, "entities": entities}  # fmt: skip
    if "sentence_embedder" in nlp.pipe_names:
        result["embedder_share"] = round(embedder_share(nlp, tweets), 4)
    if test is not None:
        gold = list(DocBin().from_disk(test).get_docs(nlp.vocab))
        predicted = nlp.pipe((g.text for g in gold), batch_size=BATCH_SIZE)
        result["test_f1"] = round(100 * Scorer.score_spans([Example(p, g) for p, g in zip(predicted, gold)], "ents")["ents_f"], 2)
    return result


def embedder_share(nlp, tweets: List[str], chunk: int = 1024) -> float:
    """The sentence_embedder's share of the pipeline's time, timed in the same
    process, alternating per chunk of tweets between the rest of the pipeline
    and the embedder, so that a shared machine's drift hits both alike."""
    embedder, rest = nlp.get_pipe("sentence_embedder"), 0.0
    own = 0.0
    for i in range(0, len(tweets), chunk):
        start = time.perf_counter()
        docs = list(nlp.pipe(tweets[i : i + chunk], batch_size=BATCH_SIZE, disable=["sentence_embedder"]))
        middle = time.perf_counter()
        list(embedder.pipe(docs, batch_size=BATCH_SIZE))
        rest, own = rest + middle - start, own + time.perf_counter() - middle
    return own / (rest + own)


@app.command()
def main(
    run_dir: Path = typer.Argument(..., help="Training run directory with model-final and model-int8", exists=True, file_okay=False),
    test: Path = typer.Option(..., "--test", help="Gold test DocBin, for F1", exists=True, dir_okay=False),
    tweets_dir: Path = typer.Option(..., "--tweets", help="Folder of unlabeled tweets (*.txt, one per line)", exists=True, file_okay=False),
    n: int = typer.Option(2000, "--n", help="Tweets to annotate per option"),
    options: str = typer.Option(",".join(OPTIONS), "--options", help="Options to run, comma-separated, in this order"),
    old_model: Optional[str] = typer.Option(None, "--old-model", help="The baseline pipeline (directory or package)"),
    old_python: Optional[Path] = typer.Option(None, "--old-python", help="The Python of the baseline's environment"),
    xx_model: Optional[str] = typer.Option(None, "--xx-model", help="xx_twner (directory or package), for the xx option"),
    pipelines: List[str] = typer.Option([], "--pipeline", help="NAME=PATH: another pipeline (directory or package) to run as option NAME, repeatable"),
    rounds: int = typer.Option(2, "--rounds", help="Passes over the options, round-robin, so that slow drift of a shared machine hits every option alike; tweets/s is the median"),
    output: Path = typer.Option(Path("metrics/throughput.json"), "--output", "-o", help="JSON to write"),
    one: str = typer.Option("", hidden=True, help="Run this model here and print its JSON (used internally)"),
    config: str = typer.Option("{}", hidden=True, help="Config overrides as JSON (used internally)"),
    exclude: str = typer.Option("", hidden=True, help="Components to leave out, comma-separated (used internally)"),
    score: bool = typer.Option(True, hidden=True, help="Score test F1 (used internally: the first round only)"),
) -> None:
    """Measure each option in its own process and print a table."""
    tweets = first_texts(tweets_dir, n)
    if one:
        print(json.dumps(run_option(one, json.loads(config), [c for c in exclude.split(",") if c], tweets, test if score else None)))
        return
    from statistics import median

    from tqdm import tqdm

    results: Dict[str, Any] = {}
    extra = dict(spec.split("=", 1) for spec in pipelines)
    for name, path in extra.items():
        OPTIONS[name] = {"what": f"the pipeline at {path}", "model": "path", "path": path}
    names = [name for name in options.split(",") if name] + [name for name in extra if name not in options.split(",")]
    for name in names:  # before the first run: a missing model ends the benchmark at once
        if name not in OPTIONS:
            raise typer.BadParameter(f"{name!r}: options are {', '.join(OPTIONS)}", param_hint="--options")
        setting = OPTIONS[name]
        if setting["model"] == "path" and not Path(setting["path"]).is_dir():
            raise typer.BadParameter(f"--pipeline {name}: no {setting['path']}", param_hint="--pipeline")
        if setting["model"] not in ("old", "xx", "path") and not (run_dir / setting["model"]).is_dir():
            build = f"; build it with {setting['build']}" if "build" in setting else ""
            raise typer.BadParameter(f"option {name}: no {run_dir / setting['model']}{build}", param_hint="--options")
    runs = [(r, name) for r in range(rounds) for name in names]
    for round_, name in tqdm(runs, desc="options x rounds", unit=" run"):
        setting = OPTIONS[name]
        if setting["model"] == "old":
            if not (old_model and old_python):
                raise typer.BadParameter("the old option needs --old-model and --old-python")
            python, model = str(old_python), old_model
        elif setting["model"] == "path":
            python, model = sys.executable, setting["path"]
        elif setting["model"] == "xx":
            if not xx_model:
                raise typer.BadParameter("the xx option needs --xx-model")
            python, model = sys.executable, xx_model
        else:
            python, model = sys.executable, str(run_dir / setting["model"])
        cmd = [python, __file__, str(run_dir), "--test", str(test), "--tweets", str(tweets_dir), "--n", str(n),
               "--one", model, "--config", json.dumps(setting.get("config", {})), "--exclude", ",".join(setting.get("exclude", [])),
               "--score" if round_ == 0 else "--no-score"]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout
        result = json.loads(out.strip().splitlines()[-1])
        kept = results.setdefault(name, {"what": setting["what"], "model": model, **result})
        for key in ("tweets_per_s", "embedder_share"):  # per round, and their median
            if key in result:
                rounds_of = kept.setdefault(f"{key}_rounds", [])
                rounds_of.append(result[key])
                kept[key] = round(median(rounds_of), 4)
    reference = results.get("default", {}).get("entities")
    for name, result in results.items():
        ents = result.pop("entities")
        result["same_entities"] = None if reference is None else sum(a == b for a, b in zip(ents, reference)) / len(ents)
    results["_machine"] = {"cpus": os.cpu_count(), "tweets": len(tweets), "batch_size": BATCH_SIZE, "date": str(date.today()),
                           "python": sys.version.split()[0], "rounds": rounds}  # fmt: skip
    output.write_text(json.dumps(results, indent=2))
    from spacy_twner.evaluation.compare import throughput_markdown

    print(throughput_markdown(results))
    print(f"wrote {output}")


if __name__ == "__main__":
    app()
