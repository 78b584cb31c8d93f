"""twner_sentence_embedder: sentence embeddings for docs, sentences and entities.

The encoder is a registered object in the config (`model`):
`spacy_twner.UseMultilingual.v1` (USE-multilingual v3 in numpy, the default)
or `spacy_twner.SentenceTransformer.v1` (any sentence-transformers model,
e.g. the distilled static student); a plain name or path means the latter.
What the encoder reads is the text after `preprocess`, a registered
function from text to text: by default `spacy_twner.without_urls.v1`.

Nothing heavy is imported or loaded at construction (spaCy imports every
installed factory on start-up): the encoder's weights load in `initialize()`
(from where its config says) or `from_disk()` (from the pipeline's `model/`).

Embeddings are stored as extension values in `doc.user_data`
(`doc._.embedding`, `span._.embedding`), so they survive `Doc.to_bytes`,
`DocBin` and `nlp.pipe(n_process=...)`. `doc.vector`, `span.vector` and
`.similarity` come from user hooks that only read those stored values;
spaCy does not serialize hooks, so after a round trip `add_vector_hooks(doc)`
puts them back without re-encoding.

Ships inside en_twner: imports nothing from spacy_twner.
"""
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Protocol, Sequence, Union

import numpy
import srsly
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc, Span
from spacy.util import ensure_path, import_file, minibatch, registry

try:
    from .registration import register_factory
except ImportError:  # loaded as a lone file, as `spacy package` checks each code file
    register_factory = import_file("twner_registration", Path(__file__).with_name("registration.py")).register_factory

FACTORY = "twner_sentence_embedder"
SPAN_KINDS = ("doc", "sents", "ents")
# what a `model` given as a plain name or path means
SENTENCE_TRANSFORMER = "spacy_twner.SentenceTransformer.v1"

# a web address: scheme to the next space (a truncated "https://t.co/…" too)
URL = re.compile(r"\b(?:https?:|www\.)\S*", re.IGNORECASE)


@registry.misc("spacy_twner.without_urls.v1")
def without_urls() -> Callable[[str], str]:
    """The text without its web addresses. A shortened link is a random string
    whose pieces make unrelated tweets that both carry one look alike, and
    costs the encoder a quarter of a tweet's tokens. A text that is nothing
    but links is kept as it is, so link-only tweets do not all share the
    empty text's vector."""
    return _without_urls


def _without_urls(text: str) -> str:
    stripped = URL.sub("", text).strip()
    return stripped or text


for _cls in (Doc, Span):
    if not _cls.has_extension("embedding"):
        _cls.set_extension("embedding", default=None)


class SentenceEncoder(Protocol):
    """What the component runs. `loaded` says whether initialize or from_disk ran.
    (For readers and type checkers: the factory's `model` is typed Any, since
    spaCy's config validation cannot check an object against a Protocol.)"""

    loaded: bool

    def initialize(self) -> None: ...

    def encode(self, texts: List[str]) -> numpy.ndarray: ...

    def to_disk(self, path: Path) -> None: ...

    def from_disk(self, path: Path) -> Any: ...


class SentenceEmbedder(Pipe):
    """Encode each doc (and its sentences and entities) with the configured encoder."""

    def __init__(
        self,
        vocab,
        name: str = "sentence_embedder",
        *,
        model: Union[str, SentenceEncoder],
        batch_size: int = 64,
        normalize: bool = True,
        device: Optional[str] = None,
        spans: Sequence[str] = ("doc", "ents"),
        preprocess: Optional[Callable[[str], str]] = None,
    ) -> None:
        unknown = set(spans) - set(SPAN_KINDS)
        if unknown:
            raise ValueError(f"[{name}] unknown span kinds {sorted(unknown)}; choose from {SPAN_KINDS}")
        self.vocab = vocab
        self.name = name
        self.batch_size = batch_size
        self.normalize = normalize
        self.spans = tuple(spans)
        self.preprocess = preprocess
        self.encoder = registry.misc.get(SENTENCE_TRANSFORMER)(name=model, device=device) if isinstance(model, str) else model

    def initialize(self, get_examples: Optional[Callable] = None, *, nlp: Optional[Language] = None) -> None:
        """Load the encoder's weights from where its config says."""
        self.encoder.initialize()

    def __call__(self, doc: Doc) -> Doc:
        return self._annotate([doc])[0]

    def pipe(self, stream: Iterable[Doc], *, batch_size: Optional[int] = None) -> Iterator[Doc]:
        """Encode a batch of docs, with their sentences and entities, in one encoder call."""
        for docs in minibatch(stream, size=batch_size or self.batch_size):
            yield from self._annotate(list(docs))

    def _annotate(self, docs: List[Doc]) -> List[Doc]:
        targets: List[List[Union[Doc, Span]]] = [list(self._targets(doc)) for doc in docs]
        vectors = self.encode([t.text for doc_targets in targets for t in doc_targets])
        rows = iter(vectors)
        for doc, doc_targets in zip(docs, targets):
            for target, row in zip(doc_targets, rows):
                target._.embedding = row
            add_vector_hooks(doc)
        return docs

    def encode(self, texts: Sequence[str]) -> numpy.ndarray:
        """The vectors the component stores for these texts (preprocessed,
        encoded, normalized if configured): what evaluate-embeddings scores."""
        if not self.encoder.loaded:
            raise ValueError(f"[{self.name}] no model loaded: call nlp.initialize() or load a saved pipeline")
        if self.preprocess is not None:
            texts = [self.preprocess(text) for text in texts]
        vectors = numpy.asarray(self.encoder.encode(list(texts)), dtype="float32")
        if self.normalize:
            vectors /= numpy.maximum(numpy.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors

    def _targets(self, doc: Doc) -> Iterator[Union[Doc, Span]]:
        if "doc" in self.spans:
            yield doc
        seen = set()
        spans: List[Span] = []
        if "sents" in self.spans:
            if not doc.has_annotation("SENT_START"):
                raise ValueError(
                    f"[{self.name}] spans include 'sents' but the doc has no sentence boundaries: "
                    "add a 'sentencizer' or 'senter' before this component"
                )
            spans.extend(doc.sents)
        if "ents" in self.spans:
            spans.extend(doc.ents)
        for span in spans:
            if (span.start_char, span.end_char) not in seen:
                seen.add((span.start_char, span.end_char))
                yield span

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        """Save the encoder's files inside the pipeline directory (model/)."""
        path = ensure_path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.to_disk(path / "model")

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "SentenceEmbedder":
        """Load the saved encoder; nothing is fetched from the network."""
        path = ensure_path(path)
        if not (path / "model").is_dir():
            raise ValueError(f"[{self.name}] {path / 'model'} is missing: the pipeline directory is incomplete")
        self.encoder.from_disk(path / "model")
        return self

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        """The saved encoder's files in one msgpack message."""
        with tempfile.TemporaryDirectory() as tmp:
            self.to_disk(tmp)
            root = Path(tmp) / "model"
            files = {f.relative_to(root).as_posix(): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}
        return srsly.msgpack_dumps(files)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "SentenceEmbedder":
        """Write the encoder's files to a scratch directory and load them from there."""
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "model"
            for name, data in srsly.msgpack_loads(bytes_data).items():
                target = (root / name).resolve()
                if root.resolve() not in target.parents:
                    raise ValueError(f"[{self.name}] model file name {name!r} points outside the model directory")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            return self.from_disk(tmp)


def add_vector_hooks(doc: Doc) -> Doc:
    """Make doc/span .vector, .has_vector and .similarity read the stored embeddings."""
    doc.user_hooks.update(vector=_vector, has_vector=_has_vector, similarity=_similarity)
    doc.user_span_hooks.update(vector=_vector, has_vector=_has_vector, similarity=_similarity)
    return doc


def _vector(obj: Union[Doc, Span]) -> numpy.ndarray:
    vector = obj._.embedding
    if vector is None:  # a span that was not embedded
        return numpy.zeros((_dim(obj.doc),), dtype="float32")
    return vector


def _has_vector(obj: Union[Doc, Span]) -> bool:
    return obj._.embedding is not None


def _similarity(obj: Union[Doc, Span], other: Any) -> float:
    a, b = obj.vector, other.vector
    norm = float(numpy.linalg.norm(a) * numpy.linalg.norm(b))
    return float(numpy.dot(a, b) / norm) if norm else 0.0


def _dim(doc: Doc) -> int:
    vector = doc._.embedding
    return 0 if vector is None else vector.shape[0]


def make_sentence_embedder(
    nlp: Language,
    name: str,
    model: Any,
    batch_size: int,
    normalize: bool,
    device: Optional[str],
    spans: List[str],
    preprocess: Optional[Callable[[str], str]],
) -> SentenceEmbedder:
    return SentenceEmbedder(
        nlp.vocab, name, model=model, batch_size=batch_size, normalize=normalize, device=device, spans=spans,
        preprocess=preprocess,
    )  # fmt: skip


register_factory(
    FACTORY,
    make_sentence_embedder,
    default_config={
        "model": {"@misc": "spacy_twner.UseMultilingual.v1", "source": None},
        "batch_size": 64,
        "normalize": True,
        "device": None,
        "spans": ["doc", "ents"],
        "preprocess": {"@misc": "spacy_twner.without_urls.v1"},
    },
    assigns=["doc._.embedding", "span._.embedding"],
)
