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
from typing import Dict, List, Optional, Sequence, Tuple

LANGUAGES = ("de", "es", "fr", "it", "ja", "nl", "pl", "pt", "ru", "zh")
# The student name that builds a static-embedding student (see static_student).
STATIC = "static"


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


def parallel_pairs(data_dir: Path, languages: Sequence[str], split: str = "train") -> List[Tuple[str, str]]:
    """(English, translation) pairs from aligned rows, both sentence columns, deduplicated."""
    english = read_stsb(data_dir, "en", split)
    pairs = {}
    for lang in languages:
        other = read_stsb(data_dir, lang, split)
        if len(other) != len(english):
            raise ValueError(f"stsb-{lang}-{split}.csv has {len(other)} rows, stsb-en-{split}.csv {len(english)}: not aligned")
        for en_row, xx_row in zip(english, other):
            for col in (0, 1):
                pairs[(en_row[col], xx_row[col])] = None
    return list(pairs)


def distill(
    teacher_name: str,
    student_name: str,
    data_dir: Path,
    output_dir: Path,
    *,
    languages: Sequence[str] = LANGUAGES,
    epochs: float = 1.0,
    batch_size: int = 64,
    learning_rate: float = 5e-5,
    max_pairs: int = 0,
    max_seq_length: int = 128,
    vocab_size: int = 60000,
    seed: int = 0,
) -> Dict[str, float]:
    """Train the student on MSE to the teacher's English embeddings; save it as safetensors."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )

    teacher = SentenceTransformer(teacher_name, trust_remote_code=False)
    pairs = parallel_pairs(data_dir, languages)
    if max_pairs:
        pairs = pairs[:max_pairs]
    if student_name == STATIC:
        student = static_student([text for pair in pairs for text in pair], teacher, vocab_size)
    else:
        student = SentenceTransformer(student_name, trust_remote_code=False)
        # Every batch pads to its longest sentence: a cap keeps a stray long one cheap.
        student.max_seq_length = min(student.max_seq_length or max_seq_length, max_seq_length)
    english = sorted({en for en, _ in pairs})
    start = time.perf_counter()
    targets = dict(zip(english, teacher.encode(english, batch_size=batch_size, show_progress_bar=True)))
    dataset = Dataset.from_dict({
        "english": [en for en, _ in pairs],
        "non_english": [xx for _, xx in pairs],
        "label": [targets[en].tolist() for en, _ in pairs],
    })  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            warmup_ratio=0.1,
            seed=seed,
            save_strategy="no",
            logging_steps=50,
            report_to="none",
        )
        trainer = SentenceTransformerTrainer(
            model=student, args=args, train_dataset=dataset, loss=losses.MSELoss(student)
        )
        trainer.train()
    seconds = time.perf_counter() - start
    student.save(str(output_dir), safe_serialization=True)
    return {"pairs": len(pairs), "english_sentences": len(english), "seconds": seconds}


def static_student(texts: Sequence[str], teacher, vocab_size: int = 60000):
    """A bag-of-subwords student: a WordPiece vocabulary learnt from the parallel text of
    every language (accents kept, CJK split per character), one trainable vector each.

    No multilingual transformer can be downloaded here; this one is built from the
    data alone and encodes thousands of sentences a second on a CPU. Each vector
    starts as the teacher's embedding of its subword (as model2vec does), not as
    random noise: rare subwords get few updates and kept their noise (measured on
    Italian alone: en-it 28.5 from a random start, 60.9 from the teacher's).
    Ten languages share the vocabulary: 60,000 subwords beat 30,000 (en-it 58.7
    vs 57.2) at twice the size on disk. The output is normalized, as the
    teacher's is: MSE between unit vectors is 2 - 2 cos, the similarity the
    embeddings are used for, instead of also fitting the length of a mean that
    shrinks with the number of subwords (en-it 60.1 vs 58.7, en 77.2 vs 74.9).
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
    weights = teacher.encode(pieces, batch_size=512, show_progress_bar=True, convert_to_numpy=True)
    return SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights), Normalize()])


def evaluate_stsb(
    model_name: str, data_dir: Path, languages: Sequence[str] = LANGUAGES, split: str = "test"
) -> Dict[str, float]:
    """Spearman x100 of cosine vs gold per language, and English vs each language (en-xx)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator, SimilarityFunction

    model = SentenceTransformer(model_name, trust_remote_code=False)
    english = read_stsb(data_dir, "en", split)
    results: Dict[str, float] = {}
    sets = {"en": (english, english)}
    for lang in languages:
        other = read_stsb(data_dir, lang, split)
        sets[lang] = (other, other)
        sets[f"en-{lang}"] = (english, other)
    for name, (first, second) in sets.items():
        evaluator = EmbeddingSimilarityEvaluator(
            [r[0] for r in first],
            [r[1] for r in second],
            [r[2] / 5.0 for r in english],
            main_similarity=SimilarityFunction.COSINE,
            name=name,
        )
        results[name] = 100 * evaluator(model)[evaluator.primary_metric]
    results["sentences_per_s"] = _encoding_speed(model, [r[0] for r in english])
    return results


def _encoding_speed(model, sentences: List[str], batch_size: int = 64) -> float:
    model.encode(sentences[:batch_size], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    model.encode(sentences, batch_size=batch_size)
    return len(sentences) / (time.perf_counter() - start)


def model_size(path: Optional[Path]) -> Optional[int]:
    """Bytes on disk of a saved model directory."""
    if path is None or not Path(path).is_dir():
        return None
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
