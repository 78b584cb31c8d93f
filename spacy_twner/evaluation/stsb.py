"""STSb test Spearman of sentence encoders per language and English-other
pair, with their speed and size: `twner evaluate-embeddings`."""
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..data.stsb import LANGUAGES, aligned_rows, read_stsb
from ..files import write_atomic
from ..markdown import table
from .encoders import ComponentEncoder, load_encoder, model_path, model_size, unit_rows


def stsb_vectors(model, data_dir: Path, languages: Sequence[str], split: str):
    """Unit vectors of both sentence columns of the split, per language: {(lang, column): array}."""
    import numpy

    rows = aligned_rows(data_dir, languages, split)
    vectors = {}
    for lang, lang_rows in rows.items():
        for col in (0, 1):
            vectors[lang, col] = unit_rows(numpy.asarray(model.encode([r[col] for r in lang_rows], batch_size=64), dtype="float64"), floor=1e-12)
    return vectors, [r[2] for r in rows["en"]]


def stsb_spearman(vectors, gold: Sequence[float], languages: Sequence[str], transform=None) -> Dict[str, float]:
    """Spearman x100 of cosine vs gold per language and English vs each language
    (en-xx), as sentence-transformers' EmbeddingSimilarityEvaluator computes it;
    `transform` maps the vectors first (a head being tuned)."""
    from scipy.stats import spearmanr

    def unit(lang: str, col: int):
        v = vectors[lang, col] if transform is None else transform(vectors[lang, col])
        return unit_rows(v, floor=1e-12)

    pairs = {"en": ("en", "en"), **{lang: (lang, lang) for lang in languages}, **{f"en-{lang}": ("en", lang) for lang in languages}}
    return {name: 100 * float(spearmanr((unit(first, 0) * unit(second, 1)).sum(axis=1), gold).statistic)
            for name, (first, second) in pairs.items()}  # fmt: skip


def evaluate_stsb(
    model_name: str, data_dir: Path, languages: Sequence[str] = LANGUAGES, split: str = "test", overrides: Optional[Dict[str, Any]] = None
) -> Dict[str, float]:
    """stsb_spearman of a model on the split, and its encoding speed."""
    model = load_encoder(model_name, overrides)
    vectors, gold = stsb_vectors(model, data_dir, languages, split)
    results = stsb_spearman(vectors, gold, languages)
    results["sentences_per_s"] = _encoding_speed(model, [r[0] for r in read_stsb(data_dir, "en", split)])
    if isinstance(model, ComponentEncoder):
        results["bytes_on_disk"] = model.bytes_on_disk()
    return results


def _encoding_speed(model, sentences: List[str], batch_size: int = 64) -> float:
    model.encode(sentences[:batch_size], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    model.encode(sentences, batch_size=batch_size)
    return len(sentences) / (time.perf_counter() - start)


def evaluate_models(
    models: Dict[str, str], data_dir: Path, languages: Sequence[str], output_path: Path, plot_path: Optional[Path] = None,
    overrides: Optional[Dict[str, Any]] = None,
) -> Dict[str, Dict[str, float]]:
    """evaluate_stsb and the size on disk of each model (name -> model), written as JSON (and a bar chart)."""
    import srsly
    from tqdm import tqdm

    from ..plots import plot_stsb

    results = {}
    for name, model in tqdm(models.items(), desc="models", unit=" model", disable=None):
        results[name] = evaluate_stsb(model, data_dir, languages, overrides=overrides)
        results[name].setdefault("bytes_on_disk", model_size(model_path(model)))
    write_atomic(output_path, srsly.json_dumps(results, indent=2).encode("utf-8"))
    if plot_path:
        plot_stsb(results, plot_path)
    return results


def stsb_markdown(results: Dict[str, Dict[str, float]]) -> str:
    """A row per model: every language and pair (Spearman x100), sentences/s and MiB on disk."""
    keys = [k for k in next(iter(results.values())) if k not in ("sentences_per_s", "bytes_on_disk")]
    rows = []
    for name, r in results.items():
        size = f"{r['bytes_on_disk'] / 2**20:.0f}" if r.get("bytes_on_disk") else "–"
        rows.append((name, *(f"{r[k]:.1f}" for k in keys), f"{r['sentences_per_s']:,.0f}", size))
    return table(["model", *keys, "sentences/s", "MiB"], rows)
