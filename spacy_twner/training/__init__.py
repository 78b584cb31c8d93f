"""Training steps beside `spacy train`: masked-LM adaptation, the embedder's head, the static student, pseudo-labels, e5 import, callbacks and the logger."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """How long and how fast one of these trainers trains: passes over its
    data, examples per step, the (peak) learning rate, the random seed."""

    epochs: float
    batch_size: int
    learning_rate: float
    seed: int = 0
