"""spacy_twner.LinearHead.v1: a learnt linear map on top of another sentence
encoder of twner_sentence_embedder.

`twner tune-head` fits it (weight and bias) on STSb train's similarity
scores; `initialize` reads it from `path`, `to_disk` saves it inside the
pipeline next to the encoder it wraps (`encoder/`), and `from_disk` reads
both from there.

Ships inside en_twner: imports nothing from spacy_twner.
"""
from pathlib import Path
from typing import Any, List, Optional, Union

import numpy
from spacy.util import ensure_path, registry

HEAD = "head.safetensors"  # safetensors: weights a pipeline load never unpickles


@registry.misc("spacy_twner.LinearHead.v1")
def linear_head(encoder: Any, path: Optional[str] = None) -> "LinearHead":
    """encoder: the encoder whose vectors the head maps; path: the folder
    `twner tune-head` wrote (read on initialize; a saved pipeline has its own)."""
    return LinearHead(encoder, path)


class LinearHead:
    def __init__(self, encoder: Any, path: Optional[str] = None) -> None:
        self.encoder, self.path = encoder, path
        self.weight: Optional[numpy.ndarray] = None
        self.bias: Optional[numpy.ndarray] = None

    @property
    def loaded(self) -> bool:
        return self.weight is not None and self.encoder.loaded

    def initialize(self) -> None:
        if not self.path:
            raise ValueError("spacy_twner.LinearHead.v1: set path to the folder `twner tune-head` wrote")
        self.encoder.initialize()
        self._read(ensure_path(self.path))

    def encode(self, texts: List[str]) -> numpy.ndarray:
        """The encoder's vectors through the head (in torch: one thread pool with the transformer's)."""
        import torch

        vectors = torch.from_numpy(numpy.asarray(self.encoder.encode(texts), dtype=numpy.float32))
        return torch.addmm(torch.from_numpy(self.bias), vectors, torch.from_numpy(self.weight)).numpy()

    def to_disk(self, path: Union[str, Path]) -> None:
        path = ensure_path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_head(path / HEAD, self.weight, self.bias)
        self.encoder.to_disk(path / "encoder")

    def from_disk(self, path: Union[str, Path]) -> "LinearHead":
        path = ensure_path(path)
        self._read(path)
        self.encoder.from_disk(path / "encoder")
        return self

    def _read(self, folder: Path) -> None:
        if not (folder / HEAD).is_file():
            raise ValueError(f"{folder / HEAD}: missing; not a folder `twner tune-head` or a pipeline saved")
        from safetensors.numpy import load_file

        try:
            tensors = load_file(folder / HEAD)
            weight, bias = tensors["weight"].astype(numpy.float32), tensors["bias"].astype(numpy.float32)
        except Exception as e:
            raise ValueError(f"{folder / HEAD}: not a head's safetensors file ({e})") from e
        if weight.ndim != 2 or bias.shape != (weight.shape[1],):
            raise ValueError(f"{folder / HEAD}: weight {weight.shape} and bias {bias.shape} are not a linear map")
        self.weight, self.bias = weight, bias


def save_head(file: Path, weight: numpy.ndarray, bias: numpy.ndarray) -> None:
    from safetensors.numpy import save_file

    save_file({"weight": numpy.ascontiguousarray(weight, dtype=numpy.float32), "bias": numpy.ascontiguousarray(bias, dtype=numpy.float32)}, str(file))
