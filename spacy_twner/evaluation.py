"""Test-set evaluation that says how sure a score is and where it goes wrong.

Point scores come from spaCy's NER scorer (`spacy.scorer.get_ner_prf`, what
`spacy evaluate` reports: exact-match entities, the conlleval definition).
Around them: bootstrap confidence intervals over tweets, a table of error
kinds and label confusions, and the tweets with the most errors.
"""
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.scorer import get_ner_prf
from spacy.training import Corpus, Example

Span = Tuple[str, int, int]  # label, start, end in reference tokens
NONE = "(none)"
# one colour per label on the displaCy page (spaCy colours only its own labels)
PALETTE = ["#7aecec", "#bfeeb7", "#feca74", "#ff9561", "#aa9cfc", "#c887fb", "#9cc9cc", "#ffeb80", "#ff8197", "#f0d0ff", "#e4e7d2", "#bfe1d9"]


def predict(nlp: Language, path: Path, gold_preproc: bool = False) -> Tuple[List[Example], float]:
    """The examples of a DocBin with nlp's predictions, and the words/s it took.

    As `spacy evaluate`: the text is re-tokenized by the pipeline unless
    gold_preproc, and the scorer aligns predicted and gold tokens.
    """
    examples = list(Corpus(path, gold_preproc=gold_preproc)(nlp))
    start = time.perf_counter()
    docs = nlp.pipe(eg.predicted for eg in examples)
    for eg, doc in zip(examples, docs):
        eg.predicted = doc
    seconds = time.perf_counter() - start
    return examples, sum(len(eg.predicted) for eg in examples) / max(seconds, 1e-9)


def aligned_spans(eg: Example) -> Tuple[List[Span], List[Span]]:
    """Gold and predicted entities in reference token offsets, as get_ner_prf
    sees them: a prediction over tokens without gold annotation is left out."""
    if not eg.reference.has_annotation("ENT_IOB"):
        return [], []
    gold = [(e.label_, e.start, e.end) for e in eg.reference.ents]
    pred = []
    for ent in eg.predicted.ents:
        indices = eg.alignment.x2y[ent.start : ent.end]
        if len(indices):
            start, end = int(indices[0]), int(indices[-1]) + 1
            if all(token.ent_iob != 0 for token in eg.reference[start:end]):
                pred.append((ent.label_, start, end))
    return gold, pred


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
    lines = ["| gold \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for g in labels:
        lines.append(f"| {g} | " + " | ".join(str(cells.get((g, p), "")) for p in labels) + " |")
    return "\n".join(lines)


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
