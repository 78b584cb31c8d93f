"""Domain-adaptive masked-LM pretraining of the backbone on tweets.

The embedded backbone learnt English from edited text and was then tuned as
a sentence encoder; tweets (@mentions, #hashtags, slang, emoji, broken case)
are another domain. A pass of masked-language-model training on unlabeled
tweets before NER training adapts it (Gururangan et al. 2020, "Don't stop
pretraining"; BERTweet is this at scale).

all-MiniLM-L6-v2 ships without an MLM head: `AutoModelForMaskedLM` builds
one, its decoder tied to the word embeddings (so only the small transform
before it starts from scratch). Each word's case is given as its token type,
exactly as `spacy_twner.case_token_types.v1` gives it in the NER pipeline,
so the grown token-type rows are trained here first.

The output is a backbone directory (config, safetensors, tokenizer) that
`[backbone] name` can point at. The text must never include test documents:
build it with `twner filter-text` (the project's `pretrain-text` step).
"""
import json
import math
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy

from ..data.corpus import read_texts
from . import Schedule
from ..pipeline.backbone import resolve_backbone
from ..pipeline.case_types import CaseTokenTypes
from ..pipeline.transformer_model import grow_token_types

MAX_LENGTH = 64  # wordpieces; a tweet rarely has more
HELD_OUT = 500  # texts kept aside to measure the masked-LM loss before and after


def encode(texts: Sequence[str], tokenizer, case_types: bool) -> List[Dict[str, List[int]]]:
    """Wordpieces of each text, with each word's case as its token type (spaCy's
    English tokenizer decides the words, as in the pipeline)."""
    import spacy

    nlp = spacy.blank("en")
    types = CaseTokenTypes()
    features = []
    for doc in nlp.pipe(texts):
        enc = tokenizer(doc.text, return_offsets_mapping=True, truncation=True, max_length=MAX_LENGTH)
        offsets = numpy.asarray(enc.pop("offset_mapping"))[None]
        token_types = types([doc[:]], offsets)[0] if case_types else numpy.zeros(offsets.shape[1], dtype="int64")
        features.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                         "token_type_ids": token_types.tolist()})  # fmt: skip
    return features


def pretrain(
    backbone: str,
    text_paths: Sequence[Path],
    output_dir: Path,
    schedule: Schedule = Schedule(epochs=1.0, batch_size=32, learning_rate=5e-5),
    *,
    max_texts: int = 0,
    case_types: bool = True,
) -> Dict[str, Any]:
    """Train the backbone on masked-LM over the texts and save it to output_dir;
    with epochs 0, save it as it is (case types grown), with no training."""
    epochs, batch_size, learning_rate, seed = schedule.epochs, schedule.batch_size, schedule.learning_rate, schedule.seed
    import torch
    from tqdm import tqdm
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling
    from transformers.utils import logging as hf_logging

    random.seed(seed)
    torch.manual_seed(seed)
    path = resolve_backbone(backbone)
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
    if epochs <= 0:
        return _save(AutoModel.from_pretrained(path), tokenizer, backbone, output_dir, case_types,
                     {"backbone": backbone, "epochs": 0, "steps": 0, "case_types": case_types})  # fmt: skip
    texts = [t for path in text_paths for t in read_texts(path) if t.strip()]
    random.shuffle(texts)
    if max_texts:
        texts = texts[: max_texts + HELD_OUT]
    n_held_out = min(HELD_OUT, len(texts) // 10)  # a user's few hundred tweets keep most for training
    held_out, texts = texts[:n_held_out], texts[n_held_out : n_held_out + max_texts if max_texts else None]
    if not texts or not held_out:
        raise ValueError(f"{len(texts) + n_held_out} texts: too few for masked-LM adaptation (at least 10); use --epochs 0 to keep the backbone")
    train, evaluation = encode(texts, tokenizer, case_types), encode(held_out, tokenizer, case_types)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "some weights were newly initialized": the MLM transform, on purpose
    model = AutoModelForMaskedLM.from_pretrained(path)
    hf_logging.set_verbosity(verbosity)
    if case_types:
        grow_token_types(model.base_model, CaseTokenTypes.n_types, backbone)
    collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    steps = max(1, math.ceil(len(train) * epochs / batch_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 16)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / (steps - warmup + 1))))
    loss_before = held_out_loss(model, evaluation, collate, seed)
    start = time.perf_counter()
    losses: List[float] = []
    model.train()
    batches = length_batches(train, batch_size, steps, seed)
    for step in tqdm(range(steps), desc="masked-LM", unit=" steps", disable=None):
        loss = masked_lm_loss(model, collate([train[i] for i in batches[step]]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    loss_after = held_out_loss(model, evaluation, collate, seed)
    stats = {
        "backbone": backbone, "texts": len(train), "held_out_texts": len(evaluation), "steps": steps,
        "batch_size": batch_size, "epochs": epochs, "learning_rate": learning_rate, "case_types": case_types,
        "seed": seed, "seconds": round(seconds, 1),
        "held_out_mlm_loss_before": round(loss_before, 4), "held_out_mlm_loss_after": round(loss_after, 4),
        "train_loss_first_50": round(float(numpy.mean(losses[:50])), 4),
        "train_loss_last_50": round(float(numpy.mean(losses[-50:])), 4),
    }  # fmt: skip
    # Save the encoder as the backbone it came from (pooler included), not the MLM model.
    return _save(AutoModel.from_pretrained(path), tokenizer, backbone, output_dir, case_types, stats, model.base_model.state_dict())


def _save(encoder, tokenizer, backbone: str, output_dir: Path, case_types: bool, stats: Dict[str, Any], state=None) -> Dict[str, Any]:
    """The encoder (with the adapted weights, if any) and tokenizer as a Hugging Face folder, and the stats beside them."""
    if case_types:
        grow_token_types(encoder, CaseTokenTypes.n_types, backbone)
    if state is not None:
        missing, unexpected = encoder.load_state_dict(state, strict=False)
        if unexpected or any(not key.startswith("pooler.") for key in missing):
            raise ValueError(f"adapted weights do not fit {backbone}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    output_dir = Path(output_dir)
    encoder.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    (output_dir / "twner_pretrain.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    return stats


def length_batches(features: List[Dict[str, List[int]]], batch_size: int, steps: int, seed: int) -> List[List[int]]:
    """`steps` batches of text indices, each text once per epoch, in random
    order, a batch drawn from texts of about the same length (shuffled pools of
    50 batches sorted by length), so that little of a batch is padding."""
    rng = random.Random(seed)
    batches: List[List[int]] = []
    while len(batches) < steps:
        order = rng.sample(range(len(features)), len(features))
        pool = batch_size * 50
        epoch = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda i: len(features[i]["input_ids"]))
            epoch += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(epoch)
        batches += epoch
    return batches[:steps]


def masked_lm_loss(model, batch: Dict[str, Any]):
    """The masked-LM loss with the head (a vocabulary-sized output layer) run
    on the masked positions only, not on every position as the model's own
    forward does: half the compute of a step on a CPU, the same loss."""
    import torch

    labels = batch.pop("labels")
    hidden = model.base_model(**batch).last_hidden_state
    masked = labels != -100
    head = model.cls if hasattr(model, "cls") else model.lm_head
    logits = head(hidden[masked])
    return torch.nn.functional.cross_entropy(logits, labels[masked])


def held_out_loss(model, features: List[Dict[str, List[int]]], collate, seed: int, batch_size: int = 64) -> float:
    """Mean masked-LM loss on the held-out texts, with the same masks every time."""
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(seed + 1)
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(features), batch_size):
            batch = collate(features[i : i + batch_size])
            total += float(masked_lm_loss(model, batch)) * len(features[i : i + batch_size])
            n += len(features[i : i + batch_size])
    model.train()
    torch.random.set_rng_state(state)
    return total / max(n, 1)
