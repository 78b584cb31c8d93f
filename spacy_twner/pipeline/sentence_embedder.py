"""Sentence embeddings for docs, sentences and entities, from sentence-transformers.

This module is self-contained on purpose: `spacy package --code` copies it
into en_twner, which must load without spacy_twner installed. It imports
nothing heavy at import time (spaCy imports every installed factory on
start-up); the model loads in `initialize()` or `from_disk()`.

Embeddings are stored as extension values in `doc.user_data`
(`doc._.embedding`, `span._.embedding`), so they survive `Doc.to_bytes`,
`DocBin` and `nlp.pipe(n_process=...)`. `doc.vector`, `span.vector` and
`.similarity` come from user hooks that only read those stored values;
spaCy does not serialize hooks, so after a round trip `add_vector_hooks(doc)`
puts them back without re-encoding.
"""
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Union

import numpy
import srsly
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc, Span
from spacy.util import ensure_path, minibatch

from .registration import register_factory

FACTORY = "twner_sentence_embedder"
SPAN_KINDS = ("doc", "sents", "ents")

for _cls in (Doc, Span):
    if not _cls.has_extension("embedding"):
        _cls.set_extension("embedding", default=None)


class SentenceEmbedder(Pipe):
    """Encode each doc (and its sentences and entities) with a sentence-transformers model."""

    def __init__(
        self,
        vocab,
        name: str = "sentence_embedder",
        *,
        model: str,
        batch_size: int = 64,
        normalize: bool = True,
        device: Optional[str] = None,
        spans: Sequence[str] = ("doc", "ents"),
    ) -> None:
        unknown = set(spans) - set(SPAN_KINDS)
        if unknown:
            raise ValueError(f"[{name}] unknown span kinds {sorted(unknown)}; choose from {SPAN_KINDS}")
        self.vocab = vocab
        self.name = name
        self.model_name = model
        self.batch_size = batch_size
        self.normalize = normalize
        self.device = device
        self.spans = tuple(spans)
        self.encoder = None  # a SentenceTransformer, set by initialize() or from_disk()

    def initialize(self, get_examples: Optional[Callable] = None, *, nlp: Optional[Language] = None) -> None:
        """Load the model named in the config (a name, a local path or a model package's path)."""
        self.encoder = _load_encoder(self.model_name, self.device)

    def __call__(self, doc: Doc) -> Doc:
        return self._annotate([doc])[0]

    def pipe(self, stream: Iterable[Doc], *, batch_size: Optional[int] = None) -> Iterator[Doc]:
        """Encode a batch of docs, with their sentences and entities, in one model call."""
        for docs in minibatch(stream, size=batch_size or self.batch_size):
            yield from self._annotate(list(docs))

    def _annotate(self, docs: List[Doc]) -> List[Doc]:
        if self.encoder is None:
            raise ValueError(f"[{self.name}] no model loaded: call nlp.initialize() or load a saved pipeline")
        targets: List[List[Union[Doc, Span]]] = [list(self._targets(doc)) for doc in docs]
        texts = [t.text for doc_targets in targets for t in doc_targets]
        vectors = self.encoder.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype("float32", copy=False)
        rows = iter(vectors)
        for doc, doc_targets in zip(docs, targets):
            for target, row in zip(doc_targets, rows):
                target._.embedding = row
            add_vector_hooks(doc)
        return docs

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
        """Save the model (safetensors) inside the pipeline directory."""
        path = ensure_path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.save(str(path / "model"), safe_serialization=True)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "SentenceEmbedder":
        """Load the saved model; nothing is fetched from the network."""
        path = ensure_path(path)
        if not (path / "model").is_dir():
            raise ValueError(f"[{self.name}] {path / 'model'} is missing: the pipeline directory is incomplete")
        self.encoder = _load_encoder(str(path / "model"), self.device, local_files_only=True)
        return self

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        """The saved model's files (safetensors, JSON) in one msgpack message."""
        with tempfile.TemporaryDirectory() as tmp:
            self.to_disk(tmp)
            root = Path(tmp) / "model"
            files = {f.relative_to(root).as_posix(): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}
        return srsly.msgpack_dumps(files)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "SentenceEmbedder":
        """Write the model's files to a scratch directory and load them from there."""
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "model"
            for name, data in srsly.msgpack_loads(bytes_data).items():
                target = (root / name).resolve()
                if root.resolve() not in target.parents:
                    raise ValueError(f"[{self.name}] model file name {name!r} points outside the model directory")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            return self.from_disk(tmp)


def _load_encoder(model: str, device: Optional[str], local_files_only: bool = False):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(
        model, device=device, local_files_only=local_files_only, trust_remote_code=False
    )


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
    model: str,
    batch_size: int,
    normalize: bool,
    device: Optional[str],
    spans: List[str],
) -> SentenceEmbedder:
    return SentenceEmbedder(
        nlp.vocab, name, model=model, batch_size=batch_size, normalize=normalize, device=device, spans=spans
    )


register_factory(
    FACTORY,
    make_sentence_embedder,
    default_config={
        "model": "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2",
        "batch_size": 64,
        "normalize": True,
        "device": None,
        "spans": ["doc", "ents"],
    },
    assigns=["doc._.embedding", "span._.embedding"],
)
