"""The static student: multilingual knowledge distillation (Reimers &
Gurevych, 2020) of the teacher into a bag-of-subwords encoder, the fast
option beside the shipped USE-m embedder (`spacy_twner.SentenceTransformer.v1`).

The student learns to put an English sentence and its translation where the
teacher puts the English sentence (MSE), with sentence-transformers' own
loss and trainer, on stsb-multi-mt train minus every dev and test sentence.
"""
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ..data.stsb import LANGUAGES, parallel_pairs
from ..pipeline.backbone import resolve_backbone
from ..evaluation.encoders import load_encoder
from . import Schedule

# The student name that builds a static-embedding student (see static_student).
STATIC = "static"


def distill(
    teacher_name: str,
    student_name: str,
    data_dir: Path,
    output_dir: Path,
    schedule: Schedule = Schedule(epochs=1.0, batch_size=64, learning_rate=5e-5),
    *,
    languages: Sequence[str] = LANGUAGES,
    max_pairs: int = 0,
    max_seq_length: int = 128,
    vocab_size: int = 60000,
) -> Dict[str, float]:
    """Train the student on MSE to the teacher's English embeddings; save it as
    safetensors. Model names may be installed model packages (pipeline.backbone)."""
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
    if student_name == STATIC:
        student = static_student([text for pair in pairs for text in pair], teacher, vocab_size)
    else:
        student = SentenceTransformer(resolve_backbone(student_name), trust_remote_code=False)
        # Every batch pads to its longest sentence: a cap keeps a stray long one cheap.
        student.max_seq_length = min(student.max_seq_length or max_seq_length, max_seq_length)
    start = time.perf_counter()
    texts, labels = training_targets(pairs, teacher, schedule.batch_size)
    with tempfile.TemporaryDirectory() as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=schedule.epochs,
            # one row per side of a pair: twice the rows, the same pairs per step
            per_device_train_batch_size=2 * schedule.batch_size,
            learning_rate=schedule.learning_rate,
            warmup_ratio=0.1,
            seed=schedule.seed,
            save_strategy="no",
            logging_steps=50,
            report_to="none",
        )
        dataset = Dataset.from_dict({"text": texts, "label": labels})
        trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=dataset, loss=losses.MSELoss(student))
        trainer.train()
    seconds = time.perf_counter() - start
    student.save(str(output_dir), safe_serialization=True)
    english = {en for en, _ in pairs}
    return {"pairs": len(pairs), "english_sentences": len(english), "examples": len(texts), "seconds": seconds}


def training_targets(pairs: Sequence[Tuple[str, str]], teacher, batch_size: int = 256) -> Tuple[List[str], List[List[float]]]:
    """(text, target vector) rows: both sides of every pair, each pulled to the
    teacher's embedding of the English side (as MSELoss over the two columns
    weighs them)."""
    english = sorted({en for en, _ in pairs})
    vectors = dict(zip(english, teacher.encode(english, batch_size=batch_size, show_progress_bar=True, convert_to_numpy=True)))
    texts = [en for en, _ in pairs] + [xx for _, xx in pairs]
    labels = [vectors[en] for en, _ in pairs] * 2
    return texts, [v.tolist() for v in labels]


def static_student(texts: Sequence[str], teacher, vocab_size: int = 60000):
    """A bag-of-subwords student: a WordPiece vocabulary learnt from the parallel text of
    every language (accents kept, CJK split per character), one trainable vector each,
    its output normalized as the teacher's is.

    Built from the data alone, it encodes thousands of sentences a second on a
    CPU. Each vector starts as the teacher's embedding of its subword (as
    model2vec does), not as random noise: rare subwords get few updates and
    would keep their noise.
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
