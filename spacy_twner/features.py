"""Token features the transformer cannot see, next to its output.

The default backbone, all-MiniLM-L6-v2, is uncased: "apple" and "Apple", "US"
and "us" reach it as the same wordpieces, yet capitalisation is among the
strongest cues for names in tweets. Appending spaCy's hash embeddings of a
token's NORM, PREFIX, SUFFIX and SHAPE ("Xxxxx", "dd", "#xxxx") gives the NER
model that signal back (cf. multi-hash embeddings, Miranda et al. 2022; ACE,
Wang et al. 2021, which concatenates embeddings of different kinds).

This file ships inside the packaged pipeline (`spacy package --code`), so it
imports nothing from `spacy_twner`.
"""
from typing import List

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, concatenate
from thinc.types import Floats2d


@registry.architectures("spacy_twner.ConcatTok2Vec.v1")
def concat_tok2vec(
    contextual: Model[List[Doc], List[Floats2d]],
    features: Model[List[Doc], List[Floats2d]],
) -> Model[List[Doc], List[Floats2d]]:
    """One vector per token: the contextual (transformer listener) vector
    followed by the feature embedding; both are trained by the component."""
    return concatenate(contextual, features)
