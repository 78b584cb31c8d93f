"""spacy_twner.SentenceTransformer.v1: any sentence-transformers model as the
encoder of twner_sentence_embedder (e.g. the distilled static student).

`initialize` loads the model the config names (a package, a Hugging Face
name or a path); `to_disk` saves it as safetensors inside the pipeline, and
`from_disk` reads it from there, never from the network.

Ships inside en_twner: imports nothing from spacy_twner.
"""
from pathlib import Path
from typing import List, Optional, Union

import numpy
from spacy.util import ensure_path, registry


@registry.misc("spacy_twner.SentenceTransformer.v1")
def sentence_transformer(name: str, device: Optional[str] = None, batch_size: int = 64) -> "SentenceTransformerEncoder":
    """name: the model to load on initialize; device: as sentence-transformers takes it (null: its choice)."""
    return SentenceTransformerEncoder(name, device, batch_size)


class SentenceTransformerEncoder:
    def __init__(self, name: str, device: Optional[str] = None, batch_size: int = 64) -> None:
        self.name, self.device, self.batch_size = name, device, batch_size
        self.model = None

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def initialize(self) -> None:
        self.model = self._load(self.name)

    def encode(self, texts: List[str]) -> numpy.ndarray:
        return self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)

    def to_disk(self, path: Union[str, Path]) -> None:
        self.model.save(str(ensure_path(path)), safe_serialization=True)

    def from_disk(self, path: Union[str, Path]) -> "SentenceTransformerEncoder":
        self.model = self._load(str(path), local_files_only=True)
        return self

    def _load(self, model: str, local_files_only: bool = False):
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(model, device=self.device, local_files_only=local_files_only, trust_remote_code=False)
