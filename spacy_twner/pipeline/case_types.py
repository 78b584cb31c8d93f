"""spacy_twner.case_token_types.v1: each wordpiece's token type is the case of
the word it comes from.

An uncased backbone (all-MiniLM-L6-v2) lowercases its input, yet capitals are
the strongest cue for a name in a tweet. Given as token types, the case of
each spaCy token reaches every layer of the transformer, where context can
weigh it ("Apple" the company vs "apple" the fruit; "US" vs "us").

Ships inside en_twner: imports nothing from spacy_twner.
"""
from typing import Sequence

import numpy
from spacy.tokens import Span
from spacy.util import registry

# Type ids: 0 is also special tokens and padding, so that row 0, the
# backbone's own token-type row, is what uncased text sees.
LOWER, CAPITALIZED, UPPER, MIXED, NO_LETTERS = range(5)
NAMES = ("lower", "Capitalized", "UPPER", "mIxed", "no letters")


@registry.misc("spacy_twner.case_token_types.v1")
def case_token_types() -> "CaseTokenTypes":
    return CaseTokenTypes()


def word_case(word: str) -> int:
    """The case class of one word, counting only letters that have a case."""
    cased = [c for c in word if c.isupper() or c.islower()]
    if not cased:
        return NO_LETTERS
    if all(c.islower() for c in cased):
        return LOWER
    if cased[0].isupper() and all(c.islower() for c in cased[1:]):
        return CAPITALIZED  # "Apple", "#Apple", "I"
    if all(c.isupper() for c in cased):
        return UPPER  # "USA", "U.S."
    return MIXED  # "iPhone", "@JustinBieber", "McDonald's"


class CaseTokenTypes:
    """Callable of spacy_twner.TransformerModel.v2: (spans, wordpiece character
    offsets) -> a type id per wordpiece."""

    n_types = len(NAMES)

    def __call__(self, spans: Sequence[Span], offsets: numpy.ndarray) -> numpy.ndarray:
        """offsets: (batch, wordpieces, 2) character offsets into each span's text,
        (0, 0) for special tokens and padding."""
        types = numpy.zeros(offsets.shape[:2], dtype="int64")
        for i, span in enumerate(spans):
            chars = self.char_types(span)
            starts, ends = offsets[i, :, 0], offsets[i, :, 1]
            real = (ends > starts) & (starts < len(chars))
            types[i, real] = chars[starts[real]]
        return types

    @staticmethod
    def char_types(span: Span) -> numpy.ndarray:
        """The case class of the token each character of span.text belongs to
        (whitespace: lower)."""
        chars = numpy.full(len(span.text), LOWER, dtype="int64")
        offset = span.start_char
        for token in span:
            start = token.idx - offset
            chars[start : start + len(token.text)] = word_case(token.text)
        return chars

