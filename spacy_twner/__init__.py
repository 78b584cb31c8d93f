"""spacy_twner: WNUT Twitter NER as a spaCy project and plugin.

Kept import-light on purpose: spaCy imports every registered entry point on
start-up, so heavy modules (torch, sentence-transformers) load only on use.
"""
from .about import __version__

__all__ = ["__version__"]
