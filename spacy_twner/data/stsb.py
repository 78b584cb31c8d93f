"""stsb-multi-mt: the STS benchmark in English and ten machine translations,
aligned row by row across languages. Train rows fit the sentence embedder's
head and the static student; dev chooses; test only scores."""
import csv
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

# The languages of stsb-multi-mt besides English: the one list every STSb step reads.
LANGUAGES = ("de", "es", "fr", "it", "ja", "nl", "pl", "pt", "ru", "zh")

Row = Tuple[str, str, float]


def read_stsb(data_dir: Path, lang: str, split: str) -> List[Row]:
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


def aligned_rows(data_dir: Path, languages: Sequence[str], split: str) -> Dict[str, List[Row]]:
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
