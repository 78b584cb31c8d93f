"""A linear head on a sentence encoder, tuned on STSb train's similarity scores.

The head (weight, bias; spacy_twner.LinearHead.v1 in the pipeline) starts as
the identity and learns, with the CoSENT loss (Su, 2022: the cosines of a
batch's pairs ranked as their gold scores are), to order the pairs of every
language and every English-other pair of stsb-multi-mt train, with a penalty
on its distance from the identity, and is then centred (the train sentences'
mean output moved to the origin) so that unrelated texts keep cosines near 0.
Rows with a sentence that is also in dev
or test, in any language, are left out; dev chooses the epoch; test is never
read here.
"""
import time
from pathlib import Path
from typing import Any, Dict, Sequence

import srsly

from ..data.stsb import aligned_rows, held_out_texts
from ..evaluation.encoders import load_encoder, unit_rows
from ..evaluation.stsb import stsb_spearman, stsb_vectors
from ..files import write_atomic
from . import Schedule
from ..pipeline.linear_head import HEAD, save_head

SCALE = 20.0  # CoSENT's temperature on cosines


def training_pairs(data_dir: Path, languages: Sequence[str], max_rows: int = 0):
    """(first sentences, second sentences, gold 0-1) of every language and
    en-xx/xx-en pair, from train rows that touch no dev or test sentence (the
    first max_rows of them; 0: all)."""
    rows = aligned_rows(data_dir, languages, "train")
    unseen = held_out_texts(data_dir, languages)
    keep = [i for i in range(len(rows["en"])) if all(rows[l][i][0] not in unseen and rows[l][i][1] not in unseen for l in rows)]
    keep = keep[:max_rows] if max_rows else keep
    settings = [(lang, lang) for lang in rows] + [(a, b) for lang in languages for a, b in (("en", lang), (lang, "en"))]
    first = [rows[a][i][0] for a, _ in settings for i in keep]
    second = [rows[b][i][1] for _, b in settings for i in keep]
    gold = [rows["en"][i][2] / 5.0 for _ in settings for i in keep]
    return first, second, gold, {"rows": len(rows["en"]), "rows_kept": len(keep), "settings": len(settings)}


def tune_head(
    encoder_name: str,
    data_dir: Path,
    output_dir: Path,
    languages: Sequence[str],
    schedule: Schedule = Schedule(epochs=4, batch_size=256, learning_rate=1e-3),
    *,
    identity_weight: float = 0.01,
    max_rows: int = 0,
) -> Dict[str, Any]:
    """Fit the head, keep the epoch with the best mean dev Spearman, save
    output_dir/head.safetensors and tune_head.json (every epoch's dev scores)."""
    epochs, batch_size, learning_rate, seed = int(schedule.epochs), schedule.batch_size, schedule.learning_rate, schedule.seed
    import numpy
    import torch
    from tqdm import tqdm

    start = time.perf_counter()
    encoder = load_encoder(encoder_name)
    first, second, gold, counts = training_pairs(data_dir, languages, max_rows)
    texts = sorted(set(first) | set(second))
    index = {t: i for i, t in enumerate(texts)}
    table = torch.from_numpy(numpy.asarray(encoder.encode(texts, batch_size=256), dtype="float32"))
    a, b = torch.tensor([index[t] for t in first]), torch.tensor([index[t] for t in second])
    y = torch.tensor(gold)
    dev, dev_gold = stsb_vectors(encoder, data_dir, languages, "dev")
    torch.manual_seed(seed)
    dim = table.shape[1]
    weight, bias = torch.nn.Parameter(torch.eye(dim)), torch.nn.Parameter(torch.zeros(dim))
    optimizer = torch.optim.Adam([weight, bias], lr=learning_rate)
    history, best = [], None
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(y))
        for i in tqdm(range(0, len(y), batch_size), desc=f"epoch {epoch}", unit=" batches", disable=None):
            batch = order[i : i + batch_size]
            left = torch.nn.functional.normalize(table[a[batch]] @ weight + bias, dim=1)
            right = torch.nn.functional.normalize(table[b[batch]] @ weight + bias, dim=1)
            loss = cosent((left * right).sum(dim=1), y[batch]) + identity_weight * ((weight - torch.eye(dim)) ** 2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        # Centred: CoSENT ranks cosines and ignores their scale, and the bias it
        # learns is a direction every vector shares, lifting every cosine toward
        # 1 (unrelated texts about 0.8). Moving the train sentences' mean output
        # to the origin brings unrelated texts back near 0 (dev_unrelated_cosine)
        # for a little of the ranking gain; dev scores the centred head.
        w = weight.detach().numpy().copy()
        c = bias.detach().numpy() - (table @ weight + bias).mean(dim=0).detach().numpy()
        scores = stsb_spearman(dev, dev_gold, languages, transform=lambda v: v @ w + c)
        history.append({"epoch": epoch, "dev_mean": sum(scores.values()) / len(scores), "dev": scores})
        if best is None or history[-1]["dev_mean"] > best[0]["dev_mean"]:
            best = (history[-1], w, c)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_head(output_dir / HEAD, best[1], best[2])
    baseline = stsb_spearman(dev, dev_gold, languages)
    report = {"encoder": encoder_name, "pairs": len(y), **counts, "epochs": epochs, "learning_rate": learning_rate,
              "identity_weight": identity_weight, "batch_size": batch_size, "seed": seed, "chosen_epoch": best[0]["epoch"],
              "dev_mean_without_head": sum(baseline.values()) / len(baseline), "dev_without_head": baseline,
              "dev_unrelated_cosine": unrelated_cosine(dev["en", 0], best[1], best[2]),
              "dev_unrelated_cosine_without_head": unrelated_cosine(dev["en", 0]),
              "history": history, "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    write_atomic(output_dir / "tune_head.json", srsly.json_dumps(report, indent=2).encode("utf-8"))
    return report


def unrelated_cosine(vectors, weight=None, bias=None) -> float:
    """Mean cosine of each English dev sentence with another one drawn at
    random (seeded): what `doc.similarity` gives texts that share nothing."""
    import numpy

    if weight is not None:
        vectors = vectors @ weight + bias
    vectors = unit_rows(vectors, floor=1e-12)
    other = numpy.random.default_rng(0).permutation(len(vectors))
    return float((vectors * vectors[other]).sum(axis=1).mean())


def cosent(cosines, gold):
    """log(1 + sum over pairs (i, j) with gold_i < gold_j of exp(SCALE (cos_i - cos_j)))."""
    import torch

    diff = SCALE * (cosines[:, None] - cosines[None, :])
    diff = diff.masked_fill(~(gold[:, None] < gold[None, :]), float("-inf"))
    return torch.logsumexp(torch.cat([torch.zeros(1), diff.flatten()]), dim=0)
