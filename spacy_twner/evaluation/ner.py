"""Test-set evaluation that says how sure a score is and where it goes wrong.

Point scores come from spaCy's NER scorer (`spacy.scorer.get_ner_prf`, what
`spacy evaluate` reports: exact-match entities, the conlleval definition).
Around them: bootstrap confidence intervals over tweets, a table of error
kinds and label confusions, and the tweets with the most errors.
"""
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
from spacy.language import Language
from spacy.scorer import get_ner_prf
from spacy.training import Corpus, Example

from ..markdown import table

Span = Tuple[str, int, int]  # label, start, end in reference tokens
# Timed passes over the test tweets for words/s, after a warm-up pass.
SPEED_PASSES = 5
NONE = "(none)"
# one colour per label on the displaCy page (spaCy colours only its own labels)
PALETTE = ["#7aecec", "#bfeeb7", "#feca74", "#ff9561", "#aa9cfc", "#c887fb", "#9cc9cc", "#ffeb80", "#ff8197", "#f0d0ff", "#e4e7d2", "#bfe1d9"]


def predict(nlp: Language, path: Path, gold_preproc: bool = False) -> List[Example]:
    """The examples of a DocBin (or a folder of them) with nlp's predictions.

    As `spacy evaluate`: the text is re-tokenized by the pipeline unless
    gold_preproc, and the scorer aligns predicted and gold tokens.
    """
    from tqdm import tqdm

    examples = list(Corpus(path, gold_preproc=gold_preproc)(nlp))
    docs = nlp.pipe(eg.predicted for eg in examples)
    for eg, doc in zip(examples, tqdm(docs, total=len(examples), desc="predicting", unit=" tweets", disable=None)):
        eg.predicted = doc
    return examples


def words_per_second(nlp: Language, texts: List[str], passes: int = 5, seed: int = 0) -> Dict[str, float]:
    """Mean words/s over timed passes through the texts after a warm-up pass,
    with a bootstrap 95% interval of the mean (as `spacy benchmark speed`, but
    timing whole passes: a component that buffers and sorts, as the
    transformer does, makes per-batch times meaningless)."""
    from spacy.cli.benchmark_speed import bootstrap

    n_words = sum(len(nlp.make_doc(text)) for text in texts)
    rates = []
    for i in range(passes + 1):
        start = time.perf_counter()
        for _ in nlp.pipe(nlp.make_doc(text) for text in texts):
            pass
        if i:  # pass 0 warms up
            rates.append(n_words / (time.perf_counter() - start))
    numpy.random.seed(seed)
    means = numpy.sort(bootstrap(numpy.array(rates)))
    return {"mean": float(numpy.mean(rates)), "ci": [float(means[int(0.025 * len(means))]), float(means[int(0.975 * len(means))])], "passes": passes}


def aligned_spans(eg: Example) -> Tuple[List[Span], List[Span]]:
    """Gold and predicted entities in reference token offsets, as get_ner_prf
    sees them: a prediction over tokens without gold annotation is left out."""
    if not eg.reference.has_annotation("ENT_IOB"):
        return [], []
    gold = [(e.label_, e.start, e.end) for e in eg.reference.ents]
    return gold, [span for _, span in _aligned_predictions(eg)]


def _aligned_predictions(eg: Example):
    """(predicted entity, its (label, start, end) in reference tokens), for the
    predictions get_ner_prf scores."""
    for ent in eg.predicted.ents:
        indices = eg.alignment.x2y[ent.start : ent.end]
        if len(indices):
            start, end = int(indices[0]), int(indices[-1]) + 1
            if all(token.ent_iob != 0 for token in eg.reference[start:end]):
                yield ent, (ent.label_, start, end)


def calibration(examples: List[Example], n_bins: int = 10) -> Optional[dict]:
    """How well entity confidences (`ent._.confidence`) predict exact-match
    correctness: expected calibration error over equal-width bins, and the
    bins for a reliability diagram. None if the pipeline gives no confidences."""
    pairs = []
    for eg in examples:
        if not eg.reference.has_annotation("ENT_IOB"):
            continue
        gold = {(e.label_, e.start, e.end) for e in eg.reference.ents}
        for ent, span in _aligned_predictions(eg):
            confidence = ent._.get("confidence") if ent.has_extension("confidence") else None
            if confidence is not None:
                pairs.append((confidence, span in gold))
    if not pairs:
        return None
    confidence, correct = (numpy.array(x, dtype=float) for x in zip(*pairs))
    edges = numpy.linspace(0.0, 1.0, n_bins + 1)
    which = numpy.clip(numpy.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        acc = float(correct[mask].mean()) if count else None
        conf = float(confidence[mask].mean()) if count else None
        if count:
            ece += count / len(pairs) * abs(acc - conf)
        bins.append({"count": count, "accuracy": acc, "confidence": conf})
    return {"ece": float(ece), "brier": float(((confidence - correct) ** 2).mean()), "entities": len(pairs),
            "accuracy": float(correct.mean()), "mean_confidence": float(confidence.mean()),
            "edges": edges.tolist(), "bins": bins}  # fmt: skip


def count_matches(gold: List[Span], pred: List[Span]) -> Dict[str, List[int]]:
    """True positives, false positives and false negatives per label."""
    counts: Dict[str, List[int]] = defaultdict(lambda: [0, 0, 0])
    unmatched = set(gold)
    for span in pred:
        if span in unmatched:
            counts[span[0]][0] += 1
            unmatched.remove(span)
        else:
            counts[span[0]][1] += 1
    for span in unmatched:
        counts[span[0]][2] += 1
    return counts


def bootstrap_intervals(
    per_doc: List[Dict[str, List[int]]], labels: List[str], n: int = 1000, seed: int = 0, level: float = 0.95
) -> Dict[str, Dict[str, List[float]]]:
    """Percentile intervals of P, R, F1 (micro, and F1 per label) over tweets
    resampled with replacement: how much the score owes to which tweets the
    test set happens to hold."""
    counts = numpy.zeros((len(per_doc), len(labels), 3))
    for i, doc_counts in enumerate(per_doc):
        for j, label in enumerate(labels):
            counts[i, j] = doc_counts.get(label, (0, 0, 0))
    rng = numpy.random.default_rng(seed)
    weights = numpy.stack([numpy.bincount(rng.integers(0, len(per_doc), len(per_doc)), minlength=len(per_doc)) for _ in range(n)])
    sums = numpy.einsum("bd,dlk->blk", weights, counts)  # resample x label x (tp, fp, fn)
    tail = 100 * (1 - level) / 2

    def interval(values: numpy.ndarray) -> List[float]:
        return [float(v) for v in numpy.percentile(values, [tail, 100 - tail])]

    def prf(tp, fp, fn):
        p = numpy.divide(tp, tp + fp, out=numpy.zeros_like(tp), where=tp + fp > 0)
        r = numpy.divide(tp, tp + fn, out=numpy.zeros_like(tp), where=tp + fn > 0)
        f = numpy.divide(2 * p * r, p + r, out=numpy.zeros_like(tp), where=p + r > 0)
        return p, r, f

    p, r, f = prf(*sums.sum(axis=1).T)
    result = {"ents_p": interval(p), "ents_r": interval(r), "ents_f": interval(f)}
    per_type_f = prf(*numpy.moveaxis(sums, 2, 0))[2]
    result["ents_per_type_f"] = {label: interval(per_type_f[:, j]) for j, label in enumerate(labels)}
    return result


def error_kinds(gold: List[Span], pred: List[Span]) -> Tuple[Counter, Counter]:
    """Each wrong prediction once by kind (label, boundary, label+boundary,
    spurious), each gold entity without an overlapping prediction as missed;
    and the confusions: every gold entity once with the label of its closest
    prediction (same span, else the largest overlap) or (none), and
    (none) for predictions that overlap no gold entity."""
    kinds: Counter = Counter()
    confusion: Counter = Counter()
    exact = set(gold) & set(pred)
    for p in pred:
        if p in exact:
            continue
        overlaps = [g for g in gold if _overlap(g, p)]
        if not overlaps:
            kinds["spurious"] += 1
            confusion[(NONE, p[0])] += 1
        elif any(g[1:] == p[1:] for g in overlaps):
            kinds["label"] += 1
        else:
            kinds["boundary" if any(g[0] == p[0] for g in overlaps) else "label+boundary"] += 1
    for g in gold:
        overlaps = [p for p in pred if _overlap(g, p)]
        if not overlaps:
            kinds["missed"] += 1
        closest = max(overlaps, key=lambda p: (p[1:] == g[1:], _overlap(g, p)), default=(NONE,))
        confusion[(g[0], closest[0])] += 1
    return kinds, confusion


def _overlap(a: Span, b: Span) -> int:
    return max(0, min(a[2], b[2]) - max(a[1], b[1]))


def evaluate_examples(
    examples: List[Example], n_bootstrap: int = 1000, seed: int = 0
) -> Tuple[dict, List[int]]:
    """The metrics dict (spaCy's scores + intervals + errors) and per-tweet
    error counts, in the order of the examples."""
    scores = get_ner_prf(examples)
    per_doc, errors = [], []
    kinds: Counter = Counter()
    confusion: Counter = Counter()
    for eg in examples:
        gold, pred = aligned_spans(eg)
        counts = count_matches(gold, pred)
        per_doc.append(counts)
        errors.append(sum(fp + fn for _, fp, fn in counts.values()))
        doc_kinds, doc_confusion = error_kinds(gold, pred)
        kinds.update(doc_kinds)
        confusion.update(doc_confusion)
    labels = sorted({label for counts in per_doc for label in counts})
    metrics = {k: scores[k] for k in ("ents_p", "ents_r", "ents_f", "ents_per_type")}
    metrics["ci"] = bootstrap_intervals(per_doc, labels, n=n_bootstrap, seed=seed)
    metrics["bootstrap"] = {"resamples": n_bootstrap, "seed": seed, "level": 0.95, "unit": "tweet"}
    metrics["n_docs"] = len(examples)
    metrics["errors"] = dict(sorted(kinds.items()))
    metrics["confusion"] = [[g, p, n] for (g, p), n in sorted(confusion.items())]
    return metrics, errors


def confusion_markdown(confusion: Iterable[List]) -> str:
    """Gold labels as rows, predicted labels as columns, (none) for missed/spurious."""
    cells = {(g, p): n for g, p, n in confusion}
    labels = sorted({l for pair in cells for l in pair} - {NONE}) + [NONE]
    return table(["gold \\ predicted", *labels], [(g, *(cells.get((g, p), "") for p in labels)) for g in labels])


def worst_tweets_html(examples: List[Example], errors: List[int], limit: int = 25) -> str:
    """A displaCy page: the tweets with the most errors, gold and predicted side by side."""
    from spacy import displacy

    ranked = sorted(range(len(examples)), key=lambda i: (-errors[i], i))[:limit]
    labels = sorted({e.label_ for eg in examples for doc in (eg.reference, eg.predicted) for e in doc.ents})
    options = {"colors": {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}}
    rows = []
    for i in ranked:
        if errors[i] == 0:
            break
        gold, pred = (displacy.render(doc, style="ent", page=False, jupyter=False, options=options)
                      for doc in (examples[i].reference, examples[i].predicted))  # fmt: skip
        rows.append(f"<tr><td>#{i}<br>{errors[i]} errors</td><td>{gold}</td><td>{pred}</td></tr>")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Worst test tweets</title>"
        "<style>body{font-family:sans-serif}td{vertical-align:top;padding:6px;border-bottom:1px solid #ddd}"
        "td>div{line-height:2.2!important;padding:0!important}</style></head><body>"
        f"<h1>{len(rows)} test tweets with the most errors</h1>"
        "<p>errors = false positives + false negatives (exact match, as the score counts them)</p>"
        "<table><tr><th></th><th>gold</th><th>predicted</th></tr>" + "".join(rows) + "</table></body></html>"
    )


def run_info(model_meta: dict, train_log: Optional[List[dict]]) -> dict:
    """What the run comparison shows beside the test scores: the dev F1 that
    chose the checkpoint and the training wall time."""
    info = {"dev_ents_f": model_meta.get("performance", {}).get("ents_f")}
    if train_log:
        info["train_seconds"] = train_log[-1]["seconds"]
        info["train_steps"] = train_log[-1]["step"]
    return info


# Keys a run record sets itself; `twner evaluate --info` may not name them.
RECORD_KEYS = frozenset({"scored_on", "labels_scored", "model", "data", "changes", "gold_preproc", "ents_p", "ents_r", "ents_f", "ents_per_type", "ci",
                         "bootstrap", "n_docs", "errors", "confusion", "calibration", "speed", "speed_ci", "speed_passes"})  # fmt: skip


def evaluate_run(
    model: str,
    data_path: Path,
    output_path: Path,
    *,
    plot_path: Optional[Path] = None,
    worst_path: Optional[Path] = None,
    reliability_path: Optional[Path] = None,
    worst_limit: int = 25,
    train_log: Optional[Path] = None,
    changes: str = "",
    info: Optional[Dict[str, str]] = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    speed_passes: int = SPEED_PASSES,
    speed_texts: int = 1000,
    gold_preproc: bool = False,
    gpu_id: int = -1,
    fallback: Optional[Path] = None,
    labels: Sequence[str] = (),
) -> dict:
    """Read the test set once with the pipeline and write the run record (JSON)
    and whichever of the plot, worst-tweets page and reliability diagram are asked for.
    fallback: the data to score when data_path holds no docs (a user's corpus
    without a test set: its dev), recorded as such. labels: score these
    labels only (gold and predicted entities of others left out), e.g. a
    pipeline's old labels after it learnt new ones."""
    import spacy
    import srsly
    from spacy.cli._util import setup_gpu

    from ..files import write_atomic
    from ..plots import plot_per_type, plot_reliability

    setup_gpu(gpu_id, silent=True)
    nlp = spacy.load(model)
    examples = predict(nlp, data_path, gold_preproc=gold_preproc)
    scored_on = "test"
    if not examples and fallback is not None:
        data_path, scored_on = fallback, f"{fallback} (no test set given: the dev set, which chose the checkpoint)"
        examples = predict(nlp, data_path, gold_preproc=gold_preproc)
    if not examples:
        raise ValueError(f"{data_path}: no docs to score")
    if labels:
        for eg in examples:
            keep_only(eg.reference, labels)
            keep_only(eg.predicted, labels)
    metrics, errors = evaluate_examples(examples, n_bootstrap=n_bootstrap, seed=seed)
    metrics["scored_on"] = scored_on
    if labels:
        metrics["labels_scored"] = list(labels)
    metrics["calibration"] = calibration(examples)
    if speed_passes:
        speed = words_per_second(nlp, [eg.reference.text for eg in examples[:speed_texts]], passes=speed_passes)
        metrics.update(speed=speed["mean"], speed_ci=speed["ci"], speed_passes=speed_passes)
    metrics.update(model=str(model), data=str(data_path), changes=changes, gold_preproc=gold_preproc, **(info or {}))
    metrics.update(run_info(nlp.meta, list(srsly.read_jsonl(train_log)) if train_log else None))
    write_atomic(output_path, srsly.json_dumps(metrics, indent=2).encode("utf-8"))
    if plot_path:
        plot_per_type(metrics, plot_path, title=Path(output_path).stem)
    if worst_path:
        write_atomic(worst_path, worst_tweets_html(examples, errors, worst_limit).encode("utf-8"))
    if reliability_path and metrics["calibration"]:
        plot_reliability(metrics["calibration"], reliability_path, title=Path(output_path).stem)
    return metrics


def keep_only(doc, labels: Sequence[str]) -> None:
    """Leave out doc's entities of other labels; their tokens stay annotated as outside any entity."""
    doc.set_ents([e for e in doc.ents if e.label_ in labels], default="outside")


def summary_tables(metrics: dict) -> str:
    """Scores with intervals, error kinds, confusions and calibration, as Markdown."""
    ci = metrics["ci"]

    def row(name: str, value: float, interval: List[float]) -> tuple:
        return name, f"{100 * value:.2f}", f"[{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]"

    rows = [row(k, metrics[k], ci[k]) for k in ("ents_p", "ents_r", "ents_f")]
    rows += [row(f"F1 {t}", s["f"], ci["ents_per_type_f"][t]) for t, s in sorted(metrics["ents_per_type"].items())]
    if "speed" in metrics:
        low, high = metrics["speed_ci"]
        rows.append(("words/s", f"{metrics['speed']:,.0f}", f"[{low:,.0f}, {high:,.0f}]"))
    lines = [table(("", "score", "95% interval"), rows), "", table(("error", "count"), sorted(metrics["errors"].items()))]
    lines += ["", confusion_markdown(metrics["confusion"])]
    cal = metrics.get("calibration")
    if cal:
        lines += ["", f"Entity confidence: ECE {100 * cal['ece']:.2f} over {cal['entities']} entities "
                  f"(mean confidence {cal['mean_confidence']:.3f}, share correct {cal['accuracy']:.3f})"]  # fmt: skip
    return "\n".join(lines)


TEMPERATURES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)


def fit_temperature(model: str, data_path: Path, temperatures=TEMPERATURES) -> dict:
    """The `confidence_temperature` of twner_ner that calibrates its entity
    confidences best on data_path (dev: never test): the lowest Brier score of
    confidence vs exact-match correctness, with the ECE of each temperature.

    The pipeline runs once; only the beam that scores the entities reruns per
    temperature (the entities themselves do not depend on it)."""
    import spacy

    nlp = spacy.load(model)
    ner = next((pipe for _, pipe in nlp.pipeline if hasattr(pipe, "temperature_beam_parse")), None)
    if ner is None:
        raise ValueError(f"{model}: no twner_ner component to calibrate")
    examples = predict(nlp, data_path)
    docs = [eg.predicted for eg in examples]
    entities = [list(doc.ents) for doc in docs]
    table = []
    for temperature in temperatures:
        ner.confidence_temperature = temperature
        # The beam must start from unannotated docs: entities already set would be
        # kept as constraints, and every beam parse would contain them.
        for doc in docs:
            doc.set_ents([], default="missing")
        beams = ner.temperature_beam_parse(docs)
        for doc, ents in zip(docs, entities):
            doc.set_ents(ents, default="outside")
        ner.set_confidences(docs, beams)
        result = calibration(examples)
        table.append({"temperature": temperature, "ece": result["ece"], "brier": result["brier"],
                      "mean_confidence": result["mean_confidence"], "accuracy": result["accuracy"]})  # fmt: skip
    best = min(table, key=lambda row: row["brier"])
    return {"model": str(model), "data": str(data_path), "component": ner.name, "best_temperature": best["temperature"], "table": table}


def save_with_temperature(model: str, component: str, temperature: float, output_dir: Path) -> None:
    """The pipeline saved again with its NER's confidence_temperature set: through
    the config, so the new value is validated, checksummed and what
    spacy.load gives back (a hand edit of config.cfg fails the checksums)."""
    import spacy

    spacy.load(model, config={f"components.{component}.confidence_temperature": temperature}).to_disk(output_dir)
