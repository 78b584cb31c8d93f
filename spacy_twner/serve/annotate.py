"""Annotate a stream of tweets: text or JSONL in, JSONL with entities out.

Everything streams: records are read, annotated in batches and written one by
one, so memory stays flat whatever the input size. A line that cannot be read
is reported with its file and line number and either stops the run or is
skipped and counted; it is never dropped silently.
"""
import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import Doc

from ..files import open_atomic
from ..loading import load_pipeline
from .records import embedding_record, entity_record, unicode_problem

class BadLine(ValueError):
    """An input line that is not a readable record; the message names file and line."""


@dataclass
class Record:
    line: int
    text: str
    fields: Dict[str, Any] = field(default_factory=dict)


def read_records(lines: Iterable[bytes], source: str, text_field: Optional[str] = None) -> Iterator[Any]:
    """Yield a Record or a BadLine per input line.

    Plain text: each line is one tweet, blank ones included (an empty tweet is
    still a record, so line N of the input is line N of the output).
    JSONL (text_field set): each line is a JSON object whose text_field holds
    the tweet; blank lines carry no record and are skipped, as srsly does.
    """
    for number, raw in enumerate(lines, start=1):
        where = f"{source}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield BadLine(f"{where}: not valid UTF-8 at byte offset {e.start} ({e.reason})")
            continue
        line = line.rstrip("\r\n")
        if number == 1:
            line = line.removeprefix("\ufeff")
        if text_field is None:
            text, fields = line, {"text": line}
        elif not line.strip():
            continue
        else:
            try:
                fields = json.loads(line)
            except json.JSONDecodeError as e:
                yield BadLine(f"{where}: not valid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(fields, dict):
                yield BadLine(f"{where}: expected a JSON object, got {type(fields).__name__}")
                continue
            if text_field not in fields:
                yield BadLine(f"{where}: no {text_field!r} field")
                continue
            text = fields[text_field]
            if not isinstance(text, str):
                yield BadLine(f"{where}: field {text_field!r} is {type(text).__name__}, not a string")
                continue
        problem = unicode_problem(text)
        if problem:
            yield BadLine(f"{where}: {problem}")
            continue
        yield Record(number, text, fields)


def set_sort_buffer(nlp: Language, size: Optional[int]) -> None:
    """Length-sorting is the pipeline's own (twner_transformer's sort_buffer, which
    keeps input order); size overrides it for this pipeline, None keeps it.
    Pipelines without such a component are not sorted."""
    if size is None:
        return
    for _, pipe in nlp.pipeline:
        if hasattr(pipe, "sort_buffer"):
            pipe.sort_buffer = size


def doc_to_record(doc: Doc, record: Record, embeddings: bool = False) -> Dict[str, Any]:
    """The input record plus its line number, entities (char offsets) and, if asked, embedding."""
    out = {**record.fields, "line": record.line}
    out["entities"] = [entity_record(ent) for ent in doc.ents]
    if embeddings:
        try:
            out["embedding"] = embedding_record(doc)
        except ValueError as e:
            raise ValueError(f"--embeddings: {e}") from None
    return out


@dataclass
class Counts:
    written: int = 0
    skipped: int = 0


def annotate_records(
    nlp: Language,
    records: Iterable[Any],
    counts: Counts,
    *,
    skip_bad: bool = False,
    on_skip: Callable[[BadLine], None] = lambda bad: None,
    embeddings: bool = False,
    batch_size: Optional[int] = None,
    n_process: int = 1,
    sort_buffer: Optional[int] = None,
) -> Iterator[Dict[str, Any]]:
    """Output records for the Records of read_records; a BadLine stops the run
    (raised once the lines before it are out) or, with skip_bad, goes to on_skip and is counted."""
    failure: List[BadLine] = []

    def readable() -> Iterator[Tuple[str, Record]]:
        for item in records:
            if isinstance(item, BadLine):
                if not skip_bad:
                    failure.append(item)  # raised below: raising inside nlp.pipe would strand its workers
                    return
                counts.skipped += 1
                on_skip(item)
                continue
            yield item.text, item

    set_sort_buffer(nlp, sort_buffer)
    for doc, record in nlp.pipe(readable(), as_tuples=True, batch_size=batch_size, n_process=n_process):
        counts.written += 1
        yield doc_to_record(doc, record, embeddings)
    if failure:
        raise failure[0]


def annotate_file(
    nlp: Language,
    input_path: Path,
    output_path: Path,
    *,
    text_field: Optional[str] = None,
    progress: bool = False,
    **options: Any,
) -> Counts:
    """Annotate one file (or "-" for stdin/stdout) record by record; the output
    file appears only if the run succeeds (see annotate_records for options)."""
    counts = Counts()
    with _input_lines(input_path) as lines, _output(output_path) as out:
        stream = annotate_records(nlp, read_records(lines, str(input_path), text_field), counts, **options)
        if progress:
            from tqdm import tqdm

            stream = tqdm(stream, desc=str(input_path), unit=" tweets", disable=None)
        for record in stream:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return counts


@contextmanager
def _input_lines(path: Path) -> Iterator[Iterable[bytes]]:
    if str(path) == "-":
        yield sys.stdin.buffer
        return
    with Path(path).open("rb") as f:
        yield f


@contextmanager
def _output(path: Path) -> Iterator[IO[str]]:
    if str(path) == "-":
        yield sys.stdout
        return
    with open_atomic(path, "w", encoding="utf-8") as f:
        yield f


def annotate_path(model: str, input_path: Path, output_path: Path, *, gpu_id: int = -1, n_process: int = 1, **options: Any) -> Counts:
    """Load the pipeline for annotation and annotate one file (or stdin) with a progress bar."""
    if str(input_path) != "-" and not Path(input_path).is_file():
        raise FileNotFoundError(f"{input_path}: no such file")
    nlp = load_pipeline(model, gpu_id=gpu_id, n_process=n_process)
    return annotate_file(nlp, input_path, output_path, progress=True, n_process=n_process, **options)
