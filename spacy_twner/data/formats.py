"""Labelled tweets in the formats annotation tools export, read into Docs.

- CoNLL (`.conll`, `.iob`, `.bio`, `.tsv`): token and tag per line, tab or
  space separated, IOB2/BIO or BILOU/BIOES tags, `-DOCSTART-` tolerated.
- spaCy DocBin (`.spacy`).
- JSONL (`.jsonl`, `.ndjson`) with character spans: Prodigy
  (`{"text", "spans": [{"start", "end", "label"}], "tokens"?, "answer"?}`)
  and doccano (`{"text", "label" | "entities": [[start, end, label]]}` or
  `[{"start_offset", "end_offset", "label"}]`).
- Label Studio's JSON export (`.json`: a list of tasks with `data.text` and
  `annotations[].result[].value {start, end, labels}`), and its JSON-MIN
  export (`{"text", "label": [{"start", "end", "labels"}]}`).

Character spans meet the tokenizer of the pipeline's language (or Prodigy's
own `tokens`, where a record has them). Every problem names the file, the
line and what is wrong; an example is never dropped silently: Prodigy's
rejected or ignored answers and Label Studio's unannotated or cancelled tasks
are left out and counted.
"""
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.vocab import Vocab

from .conll import ConllError, read_conll, sentences_to_docs

CONLL_SUFFIXES = (".conll", ".iob", ".bio", ".tsv")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
FORMATS = {**{s: "CoNLL" for s in CONLL_SUFFIXES}, ".spacy": "spaCy DocBin", **{s: "JSONL with spans" for s in JSONL_SUFFIXES},
           ".json": "Label Studio JSON"}  # fmt: skip


UNLABELED = 'no spans, entities or labels field: unlabeled text? A tweet without entities carries an empty list, e.g. "spans": []'


class DataError(ValueError):
    """A problem in a labelled file, located by path and 1-based line."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        self.path, self.line, self.problem = Path(path), line, problem
        super().__init__(f"{path}:{line}: {problem}")


@dataclass
class Labelled:
    """The docs of one file, where each came from, and what reading them took."""

    path: Path
    docs: List[Doc] = field(default_factory=list)
    lines: List[int] = field(default_factory=list)  # the line each doc starts on
    format: str = ""
    left_out: Counter = field(default_factory=Counter)  # reason -> examples
    snapped: List[str] = field(default_factory=list)  # "line: 'span' -> 'snapped'"
    has_spans: bool = False  # whether the record just read names its entities


def read_labelled(path: Path, nlp: Language, *, snap: bool = False, repair: bool = False) -> Labelled:
    """Every labelled tweet of a file as a Doc with its entities.

    snap: spans whose edges fall inside a token (or on white space) are
    moved to the token boundaries around them, and listed in `snapped`,
    instead of being an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(path, 1, f"unknown format {path.suffix or '(no extension)'!r}: name the file {', '.join(FORMATS)} "
                                 "(CoNLL, spaCy DocBin, JSONL with character spans, Label Studio JSON)")  # fmt: skip
    out = Labelled(path, format=kind)
    if kind == "CoNLL":
        try:
            conll = read_conll(path, repair=repair, schemes=("IOB2", "BILOU"))
        except ConllError as e:
            raise DataError(e.path, e.line, e.problem) from None
        out.docs = list(sentences_to_docs(nlp.vocab, conll.sentences))
        out.lines = [s.line for s in conll.sentences]
        out.format = f"CoNLL ({conll.scheme})"
    elif kind == "spaCy DocBin":
        out.docs = _read_docbin(path, nlp.vocab)
        out.lines = list(range(1, len(out.docs) + 1))  # a DocBin's "line" is its doc number
    else:
        text = _read_text(path)
        records = _jsonl_records(path, text) if kind.startswith("JSONL") else _json_records(path, text)
        labelled = False  # whether any record says which entities it has (an empty list counts)
        for line, record in records:
            out.has_spans = False
            doc = _record_doc(path, line, record, nlp, snap, out)
            labelled = labelled or out.has_spans
            if doc is None:
                continue
            if not out.has_spans and kind.startswith("JSONL"):  # JSON-MIN may leave an unannotated task's field out
                raise DataError(path, line, UNLABELED)
            if not len(doc):
                out.left_out["empty tweet"] += 1
                continue
            out.docs.append(doc)
            out.lines.append(line)
        if out.docs and not labelled:
            raise DataError(path, out.lines[0], f"no record of the file: {UNLABELED}")
    if not out.docs:
        left = f" ({', '.join(f'{n} {why}' for why, n in out.left_out.items())})" if out.left_out else ""
        raise DataError(path, 1, f"no labelled tweets in the file{left}")
    return out


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise DataError(path, raw.count(b"\n", 0, e.start) + 1, f"not valid UTF-8 at byte offset {e.start} ({e.reason})") from None


def _read_docbin(path: Path, vocab: Vocab) -> List[Doc]:
    try:
        docs = list(DocBin().from_disk(path).get_docs(vocab))
    except Exception as e:  # msgpack/zlib errors: the file is not a DocBin
        raise DataError(path, 1, f"not a spaCy DocBin ({type(e).__name__}: {e})") from None
    for number, doc in enumerate(docs, start=1):
        if not doc.has_annotation("ENT_IOB"):
            raise DataError(path, number, "doc has no entity annotation (not even O): not labelled NER data")
    return docs


def _jsonl_records(path: Path, text: str) -> Iterator[Tuple[int, Any]]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, number, f"not valid JSON ({e.msg} at column {e.colno})") from None


def _json_records(path: Path, text: str) -> Iterator[Tuple[int, Any]]:
    """The elements of a JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    i = _skip_space(text, 0)
    if i == len(text):
        return
    if text[i] != "[":
        raise DataError(path, text.count("\n", 0, i) + 1, "expected a JSON list of tasks (Label Studio's JSON or JSON-MIN export)")
    i = _skip_space(text, i + 1)
    while i < len(text) and text[i] != "]":
        line = text.count("\n", 0, i) + 1
        try:
            record, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, f"not valid JSON ({e.msg} at column {e.colno})") from None
        yield line, record
        i = _skip_space(text, i)
        if i < len(text) and text[i] == ",":
            i = _skip_space(text, i + 1)
        elif i < len(text) and text[i] != "]":
            raise DataError(path, text.count("\n", 0, i) + 1, "expected ',' or ']' between tasks")
    if i >= len(text):
        raise DataError(path, text.count("\n") + 1, "the JSON list is not closed with ']'")


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


Spans = List[Tuple[int, int, str]]


def _record_doc(path: Path, line: int, record: Any, nlp: Language, snap: bool, out: Labelled) -> Optional[Doc]:
    """One record of any span format as a Doc, or None if the tool marked it as not to use."""

    def fail(problem: str) -> DataError:
        return DataError(path, line, problem)

    if not isinstance(record, dict):
        raise fail(f"expected a JSON object, got {type(record).__name__}")
    if "annotations" in record or ("data" in record and isinstance(record.get("data"), dict)):
        found = _label_studio_task(record, fail, out)
        if found is None:
            return None
        text, spans = found
        tokens, out.has_spans = None, True
    else:
        if record.get("answer", "accept") != "accept":
            out.left_out[f"Prodigy answer {record['answer']!r}"] += 1
            return None
        if "text" not in record:
            raise fail(f"no 'text' field (keys: {', '.join(sorted(record)) or 'none'})")
        text, tokens = record["text"], record.get("tokens")
        spans = _record_spans(record, fail)
        out.has_spans = spans is not None
        spans = spans or []
    if not isinstance(text, str):
        raise fail(f"'text' is {type(text).__name__}, not a string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise fail(f"lone surrogate U+{ord(text[e.start]):04X} at character {e.start}") from None
    doc = _tokens_doc(text, tokens, nlp.vocab, fail) if tokens else nlp.make_doc(text)
    doc.ents = _aligned_spans(doc, spans, fail, snap, line, out)
    return doc


def _record_spans(record: Dict[str, Any], fail) -> Optional[Spans]:
    """(start, end, label) of Prodigy's "spans", doccano's "label"/"entities"
    or Label Studio JSON-MIN's list of {start, end, labels} (under its
    config's name); None when the record names no entities at all."""
    keys = [k for k in ("spans", "entities", "label", "labels") if k in record and not isinstance(record[k], str)]
    keys = keys or [k for k, v in record.items() if isinstance(v, list) and v and all(isinstance(i, dict) and {"start", "end"} <= set(i) for i in v)]
    if not keys:
        return None
    raw = record[keys[0]]
    if not isinstance(raw, list):
        raise fail(f"{keys[0]!r} is {type(raw).__name__}, expected a list of spans")
    spans = []
    for n, item in enumerate(raw):
        where = f"{keys[0]}[{n}]"
        if isinstance(item, (list, tuple)) and len(item) == 3:
            start, end, label = item
        elif isinstance(item, dict) and "start" in item and "end" in item:
            start, end = _code_points(record.get("text"), item["start"], item["end"], item.get("text"))
            label = item["label"] if "label" in item else _one_label(_labels_of(item), fail, where)
        elif isinstance(item, dict) and "start_offset" in item:
            start, end, label = item["start_offset"], item.get("end_offset"), item.get("label")
        else:
            raise fail(f"{where}: expected [start, end, label] or {{start, end, label}}, got {json.dumps(item)[:80]}")
        spans.append(_checked(start, end, label, fail, where))
    return spans


def _one_label(labels: Any, fail, where: str) -> str:
    if isinstance(labels, list) and len(labels) == 1:
        return labels[0]
    raise fail(f"{where}: expected one label, got {labels!r}")


def _checked(start: Any, end: Any, label: Any, fail, where: str) -> Tuple[int, int, str]:
    if not (isinstance(start, int) and isinstance(end, int) and not isinstance(start, bool) and not isinstance(end, bool)):
        raise fail(f"{where}: start and end must be whole numbers, got {start!r}, {end!r}")
    if not isinstance(label, str) or not label.strip():
        raise fail(f"{where}: the label must be a non-empty string, got {label!r}")
    return start, end, label


def _label_studio_task(task: Dict[str, Any], fail, out: Labelled) -> Optional[Tuple[str, Spans]]:
    """The text and the first usable annotation's spans of a Label Studio task."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise fail("a Label Studio task without a 'data' object")
    strings = {k: v for k, v in data.items() if isinstance(v, str)}
    if "text" in strings:
        text = strings["text"]
    elif len(strings) == 1:
        (text,) = strings.values()
    else:
        raise fail(f"which field of 'data' is the text? none is called 'text' ({', '.join(sorted(data)) or 'no fields'})")
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not annotations:
        out.left_out["Label Studio task without an annotation (or cancelled)"] += 1
        return None
    if len(annotations) > 1:
        out.left_out["Label Studio annotations besides the one used (several annotators; ground truth first)"] += len(annotations) - 1
    chosen = max(annotations, key=lambda a: bool(a.get("ground_truth")))  # the first ground truth, else the first
    spans = []
    for n, result in enumerate(chosen.get("result") or []):
        where = f"annotations[{annotations.index(chosen)}].result[{n}]"
        value = result.get("value") or {}
        if result.get("type") in NOT_ENTITIES or "start" not in value:
            continue  # relations, choices, ratings, text areas: not entities
        start, end = _code_points(text, value.get("start"), value.get("end"), value.get("text"))
        spans.append(_checked(start, end, _one_label(_labels_of(value), fail, where), fail, where))
    return text, spans


# Label Studio result types that are not entities, left out of the spans.
NOT_ENTITIES = {"relation", "choices", "textarea", "rating", "taxonomy", "number", "datetime", "pairwise", "ranker"}


def _labels_of(value: Dict[str, Any]) -> Any:
    """A span's labels under the key its tool uses: labels, hypertextlabels, paragraphlabels, ..."""
    keys = [k for k in value if k.endswith("labels")]
    return value[keys[0]] if keys else None


def _code_points(text: Any, start: Any, end: Any, quoted: Any) -> Tuple[Any, Any]:
    """Offsets as Python counts them. Label Studio and older doccano count
    UTF-16 units, which differ after an emoji: where the span's own text is
    given and the offsets miss it, they are read as UTF-16."""
    if not (isinstance(text, str) and isinstance(quoted, str) and isinstance(start, int) and isinstance(end, int)):
        return start, end
    if text[start:end] == quoted:
        return start, end
    units = text.encode("utf-16-le")
    if 2 * end <= len(units):
        prefix, inner = units[: 2 * start].decode("utf-16-le", "replace"), units[2 * start : 2 * end].decode("utf-16-le", "replace")
        if inner == quoted:
            return len(prefix), len(prefix) + len(inner)
    return start, end


def _tokens_doc(text: str, tokens: Any, vocab: Vocab, fail) -> Doc:
    """A Doc of Prodigy's own tokens, checked against the text."""
    if not isinstance(tokens, list) or not all(isinstance(t, dict) and isinstance(t.get("start"), int) and isinstance(t.get("end"), int) for t in tokens):
        raise fail("'tokens' must be a list of {text, start, end, ws} with whole-number offsets")
    words, spaces = [], []
    for n, token in enumerate(tokens):
        piece = text[token["start"] : token["end"]]
        if not piece or piece != token.get("text", piece):
            raise fail(f"tokens[{n}] {token.get('text')!r} does not match the text at [{token['start']}, {token['end']})")
        words.append(piece)
        following = tokens[n + 1]["start"] if n + 1 < len(tokens) else len(text)
        spaces.append(bool(token.get("ws", text[token["end"] : token["end"] + 1] == " ")))
        if following < token["end"]:
            raise fail(f"tokens[{n + 1}] starts before tokens[{n}] ends")
    doc = Doc(vocab, words=words, spaces=spaces)
    if doc.text != text:
        raise fail("the tokens and their 'ws' do not give back the text (characters between tokens that are not one space)")
    return doc


def _aligned_spans(doc: Doc, spans: Spans, fail, snap: bool, line: int, out: Labelled) -> List[Span]:
    """The spans on doc's tokens, checked: inside the text, on token
    boundaries (or snapped), not overlapping."""
    text = doc.text
    result: List[Span] = []
    off_boundary = []
    for start, end, label in spans:
        if not 0 <= start < end <= len(text):
            raise fail(f"span [{start}, {end}) {label!r} is outside the text of {len(text)} characters")
        span = doc.char_span(start, end, label=label)
        if span is None:
            if not snap:
                off_boundary.append(f"[{start}, {end}) {text[start:end]!r}")
                continue
            span = _snapped(doc, start, end, label)
            if span is None:
                raise fail(f"span [{start}, {end}) {text[start:end]!r} holds no token to snap to")
            out.snapped.append(f"{out.path}:{line}: {text[start:end]!r} -> {span.text!r}")
        result.append(span)
    if off_boundary:
        tokens = " | ".join(t.text for t in doc)
        raise fail(f"{len(off_boundary)} span(s) off token boundaries: {'; '.join(off_boundary)} (tokens: {tokens}); "
                   "fix them, or snap them to the tokens around them (--snap true, or --vars.snap true in the own workflow; counted in the report)")  # fmt: skip
    result.sort(key=lambda s: (s.start, s.end))
    for first, second in zip(result, result[1:]):
        if second.start < first.end:
            raise fail(f"overlapping spans {first.text!r} ({first.label_}, characters {first.start_char}-{first.end_char}) and "
                       f"{second.text!r} ({second.label_}, {second.start_char}-{second.end_char}): NER takes one entity per token")  # fmt: skip
    return result


def _snapped(doc: Doc, start: int, end: int, label: str) -> Optional[Span]:
    """The span without white space at its edges, widened to whole tokens."""
    text = doc.text
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return doc.char_span(start, end, label=label, alignment_mode="expand") if start < end else None


def label_counts(docs: Sequence[Doc]) -> Counter:
    return Counter(ent.label_ for doc in docs for ent in doc.ents)
