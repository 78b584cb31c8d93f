"""Training-time callbacks named in the training configs.

`add_labels` gives a sourced NER the labels of the user's data it lacks
(a sourced component is not initialized, so it would never learn of them).

`freeze_weights` keeps chosen transformer weights as the backbone gave them.
thinc's PyTorchShim updates only parameters that received a gradient, so a
parameter with requires_grad off is neither trained nor given Adam state:
for multilingual-e5-small, whose word embeddings are 250k x 384 (80% of its
weights), freezing them keeps the pieces no English tweet uses where the
pretrained model put them, and saves the dense gradient and update of that
table at every step. Runs after initialization, so never in a loaded
pipeline: the packages do not need it.
"""
from pathlib import Path
from typing import Callable, List

import srsly

from spacy.language import Language
from thinc.api import Model


def freeze_weights(names: List[str] = []) -> Callable[[Language], Language]:
    """An [initialize.after_init] callback: every transformer parameter whose
    name starts with one of `names` (e.g. "embeddings.word_embeddings") is
    frozen; a name that matches nothing is an error, not a silent no-op. An
    empty name freezes nothing (it would match every weight): the project
    turns freezing off with `--vars.xx_frozen ""`."""
    prefixes = [name for name in names if name]

    def after_init(nlp: Language) -> Language:
        if not prefixes:
            return nlp
        frozen = {prefix: 0 for prefix in prefixes}
        for _, component in nlp.components:
            model = getattr(component, "model", None)
            for node in model.walk() if isinstance(model, Model) else []:
                for shim in node.shims:
                    module = getattr(shim, "_model", None)  # the torch module of a PyTorchShim
                    for param_name, param in module.named_parameters() if module is not None else []:
                        for prefix in prefixes:
                            if param_name.startswith(prefix):
                                param.requires_grad_(False)
                                frozen[prefix] += param.numel()
        missing = [prefix for prefix, count in frozen.items() if count == 0]
        if missing:
            raise ValueError(f"freeze_weights: no transformer parameter starts with {missing}; "
                             "names are torch parameter names such as 'embeddings.word_embeddings'")
        return nlp

    return after_init


def add_labels(path: str, component: str = "ner") -> Callable[[Language], Language]:
    """An [initialize.before_init] callback: every label of the JSON list at
    `path` that the component lacks is added (its output layer grows; the
    labels it knew keep their weights)."""

    def before_init(nlp: Language) -> Language:
        labels = srsly.read_json(Path(path))
        pipe = nlp.get_pipe(component)
        for label in labels:
            if label not in pipe.labels:
                pipe.add_label(label)
        return nlp

    return before_init
