"""Loading a pipeline to run it: the one place that places it on a GPU or
splits the CPU's cores between processes."""
import os
from typing import Any, Dict

from spacy.language import Language
from spacy.util import SimpleFrozenDict


def load_pipeline(model: str, *, gpu_id: int = -1, n_process: int = 1, config: Dict[str, Any] = SimpleFrozenDict()) -> Language:
    """spacy.load (with config overrides) for annotation: on the GPU if asked;
    with n_process > 1 the CPU's cores are split between the processes (torch
    would give each one all of them, and they would fight over the cores)."""
    import spacy

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    elif n_process > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_process))
    return spacy.load(model, config=config)

