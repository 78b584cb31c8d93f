"""Read and write the WNUT CoNLL format.

One `token<TAB>tag` (or `token tag`) per line, IOB2 tags, tweets separated by
blank or whitespace-only lines (WNUT17 train uses a lone TAB). Every problem is
reported with file, line and cause; nothing is dropped or repaired silently.
"""
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Dict, Iterable, Iterator, List, Optional

from spacy.tokens import Doc
from spacy.vocab import Vocab

DOCSTART = "-DOCSTART-"
TAG_RE = re.compile(r"^(O|([BIELSU])-(\S+))$")
# Prefixes beyond IOB2's: BILOU's L(ast) and U(nit), BIOES's E(nd) and S(ingle).
CLOSING, SINGLE = {"L", "E"}, {"U", "S"}


class ConllError(ValueError):
    """A problem in a CoNLL file, located by path and 1-based line number."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        super().__init__(f"{path}:{line}: {problem}")


@dataclass
class Sentence:
    """One tweet: its tokens, their IOB2 tags and the line it starts on."""

    words: List[str]
    tags: List[str]
    line: int
    spaces: Optional[List[bool]] = None  # None: a space after every token (CoNLL keeps no spacing)


@dataclass
class ConllFile:
    """The tweets of one file and what the reader had to do to get them."""

    path: Path
    sentences: List[Sentence] = field(default_factory=list)
    docstarts: int = 0
    repaired: int = 0
    scheme: str = "IOB2"


def read_conll(
    path: Path, *, labels: Optional[Collection[str]] = None, repair: bool = False, schemes: Collection[str] = ("IOB2",)
) -> ConllFile:
    """Parse a whole CoNLL file, so that an error leaves nothing half-written.

    labels: if given, any other entity type is an error.
    repair: turn an I-X that follows O or another type into B-X (and count it)
        instead of failing on it.
    schemes: the tag schemes accepted; "BILOU" (or its twin BIOES, L/E and
        U/S) is read into IOB2, every entity checked to be closed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConllError(
            path, line, f"not valid UTF-8 at byte offset {e.start} ({e.reason})"
        ) from None
    text = text.removeprefix("\ufeff")
    result = ConllFile(path)
    rows: List[tuple] = []  # (line, word, tag) of the tweet being read
    tweets: List[List[tuple]] = []
    # Split on "\n" only: str.splitlines() would also break on characters
    # such as U+2028 that can occur inside a tweet's tokens.
    for i, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            if rows:
                tweets.append(rows)
                rows = []
            continue
        word, tag = _split_line(path, i, line)
        if word == DOCSTART:
            result.docstarts += 1
            if rows:
                tweets.append(rows)
                rows = []
            continue
        rows.append((i, word, tag))
    if rows:
        tweets.append(rows)
    if not tweets:
        raise ConllError(path, 1, "no tokens found: the file is empty or has only blank lines")
    bilou = next(((i, t) for rows in tweets for i, _, t in rows if t[:1] in CLOSING | SINGLE and t[1:2] == "-"), None)
    if bilou is not None:
        if "BILOU" not in schemes:
            raise ConllError(path, bilou[0], f"tag {bilou[1]!r} is not O, B-X or I-X (a BILOU/BIOES file: convert it with `twner prepare`)")
        result.scheme = "BILOU"
    for rows in tweets:
        tags: List[str] = []
        for n, (i, _, tag) in enumerate(rows):
            following = rows[n + 1][2] if n + 1 < len(rows) else "O"
            # the tag as written before it: under BILOU an L- or U- has closed its entity
            raw_previous = rows[n - 1][2] if n else "O"
            tag, fixed = _check_tag(path, i, tag, tags[-1] if tags else "O", following, labels, repair, result.scheme, raw_previous)
            result.repaired += fixed
            tags.append(tag)
        result.sentences.append(Sentence([w for _, w, _ in rows], tags, rows[0][0]))
    return result


def _split_line(path: Path, i: int, line: str) -> tuple:
    columns = line.split("\t") if "\t" in line else line.split(" ")
    if len(columns) == 1:
        raise ConllError(path, i, f"one column only (token without tag): {line!r}")
    if len(columns) > 2:
        raise ConllError(
            path, i, f"{len(columns)} columns, expected 2 (token, tag): {line!r}"
        )
    word, tag = columns
    if not word or word.isspace():
        raise ConllError(path, i, f"empty token: {line!r}")
    if any(c.isspace() for c in word):
        raise ConllError(path, i, f"token contains whitespace: {word!r}")
    return word, tag


def _check_tag(
    path: Path,
    i: int,
    tag: str,
    previous: str,
    following: str,
    labels: Optional[Collection[str]],
    repair: bool,
    scheme: str = "IOB2",
    raw_previous: str = "O",
) -> tuple:
    """Validate one tag (previous: the IOB2 tag before it; following and
    raw_previous: the tags after and before it as written); return its IOB2
    form and whether it was repaired."""
    match = TAG_RE.match(tag)
    if match is None or (scheme == "IOB2" and match.group(2) not in (None, "B", "I")):
        expected = "O, B-X, I-X, L-X, U-X (or E-X, S-X)" if scheme == "BILOU" else "O, B-X or I-X"
        raise ConllError(path, i, f"tag {tag!r} is not {expected}")
    prefix, label = match.group(2), match.group(3)
    if label is not None and labels is not None and label not in labels:
        raise ConllError(
            path, i, f"label {label!r} is not in the label set {sorted(labels)}"
        )
    inside = previous != "O" and previous[2:] == label
    if scheme == "BILOU" and raw_previous[:1] not in ("B", "I"):
        inside = False  # after L-/U-/E-/S- the entity is closed
    if prefix in ("I", *CLOSING) and not inside:
        if not repair:
            raise ConllError(
                path,
                i,
                f"{tag} follows {raw_previous if scheme == 'BILOU' else previous}: an entity must start with B-{label} "
                "(--repair, or --vars.repair true in the own workflow, turns it into B-)",
            )
        return f"B-{label}", 1
    if scheme == "BILOU" and prefix in ("B", "I"):
        match_next = TAG_RE.match(following)
        if match_next is None or match_next.group(2) not in ("I", *CLOSING) or match_next.group(3) != label:
            raise ConllError(path, i, f"{tag} is followed by {following}: in BILOU an entity ends with L-{label} (or U-{label} alone)")
    if prefix in SINGLE or prefix == "B":
        return f"B-{label}", 0
    return (f"I-{label}" if prefix else "O"), 0


# `[the entity's text|type]` inside a tweet written as it is (assets/xx-check/)
MARK_RE = re.compile(r"\[([^\[\]|]+)\|([^\[\]|]+)\]")
# tokens of the unmarked text: URLs, @mentions, #hashtags, words (with
# apostrophes inside, "l'" keeps its own), and every other character alone
TOKEN_RE = re.compile(r"https?://\S+|[@#]\w+|\w+(?:['’]\w+)*['’]?|[^\w\s]", re.UNICODE)


def read_marked(path: Path, *, labels: Optional[Collection[str]] = None) -> ConllFile:
    """One tweet per line with its entities marked `[text|type]`, as tokens, IOB2
    tags and the spaces of the text as written; the markup must be well formed
    and the types known (labels)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    out = ConllFile(path)
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        text, tokens, tags = "", [], []  # tokens: (start, end) in text, the line without markup
        pos = 0
        for mark in [*MARK_RE.finditer(line), None]:
            plain = line[pos : mark.start() if mark else len(line)]
            if "[" in plain or "]" in plain:
                raise ConllError(path, i, f"unbalanced entity markup near {plain.strip()[:30]!r}: write [text|type]")
            spans = [(len(text) + m.start(), len(text) + m.end()) for m in TOKEN_RE.finditer(plain)]
            text, tokens, tags = text + plain, tokens + spans, tags + ["O"] * len(spans)
            if mark is None:
                break
            entity, label = mark.group(1), mark.group(2).strip()
            spans = [(len(text) + m.start(), len(text) + m.end()) for m in TOKEN_RE.finditer(entity)]
            if not spans:
                raise ConllError(path, i, f"entity {mark.group(0)!r} has no text")
            if labels is not None and label not in labels:
                raise ConllError(path, i, f"unknown entity type {label!r} (allowed: {', '.join(sorted(labels))})")
            text, tokens = text + entity, tokens + spans
            tags += [f"B-{label}"] + [f"I-{label}"] * (len(spans) - 1)
            pos = mark.end()
        words = [text[a:b] for a, b in tokens]
        spaces = [b < len(text) and text[b].isspace() for _, b in tokens]
        out.sentences.append(Sentence(words, tags, i, spaces))
    return out


def sentences_to_docs(vocab: Vocab, sentences: Iterable[Sentence]) -> Iterator[Doc]:
    """One Doc per tweet, entities set from the IOB2 tags by spaCy itself."""
    for sent in sentences:
        yield Doc(vocab, words=sent.words, spaces=sent.spaces, ents=sent.tags)


def doc_to_tags(doc: Doc) -> List[str]:
    """The IOB2 tags of a Doc's entities, one per token."""
    return [f"{t.ent_iob_}-{t.ent_type_}" if t.ent_type_ else "O" for t in doc]


def docs_to_conll(docs: Iterable[Doc]) -> str:
    """Write Docs back in the WNUT layout: a blank line after every tweet."""
    lines = []
    for doc in docs:
        lines.extend(f"{t.text}\t{tag}" for t, tag in zip(doc, doc_to_tags(doc)))
        lines.append("")
    return "\n".join(lines) + "\n" if lines else ""


def convert_file(
    input_path: Path, output_path: Path, *, labels: Optional[str] = None, repair: bool = False, marked: bool = False
) -> Dict[str, int]:
    """Convert a CoNLL file (or, marked, a file of `read_marked`) to a DocBin
    (written whole or not at all).

    labels: a dataset name (its label set) or a comma-separated list; None allows any.
    Returns the counts of what was written and what the reader had to do."""
    from spacy.tokens import DocBin

    from .datasets import DATASETS
    from ..files import write_atomic

    allowed = None
    if labels is not None:
        allowed = DATASETS[labels].labels if labels in DATASETS else [label for label in labels.split(",") if label]
    conll = read_marked(input_path, labels=allowed) if marked else read_conll(input_path, labels=allowed, repair=repair)
    docs = list(sentences_to_docs(Vocab(), conll.sentences))
    write_atomic(output_path, DocBin(docs=docs, store_user_data=False).to_bytes())
    entities = Counter(ent.label_ for doc in docs for ent in doc.ents)
    return {
        "docs": len(docs), "tokens": sum(len(d) for d in docs), "entities": sum(entities.values()),
        **{f"  {label}": n for label, n in sorted(entities.items())},
        "-DOCSTART- lines skipped": conll.docstarts, "tags repaired": conll.repaired,
    }  # fmt: skip


def docbin_to_conll_file(input_path: Path, output_path: Path) -> None:
    """Write a DocBin back as CoNLL (written whole or not at all)."""
    from spacy.tokens import DocBin

    from ..files import write_atomic

    docs = DocBin().from_disk(input_path).get_docs(Vocab())
    write_atomic(output_path, docs_to_conll(docs).encode("utf-8"))
