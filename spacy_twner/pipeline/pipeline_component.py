"""twner_transformer: spacy-transformers' transformer component whose `pipe`
sorts a buffer of docs by length before batching them.

A transformer pads every batch to its longest text. spacy-transformers sorts
within each batch `nlp.pipe` hands it (`batch_size`, 64 or 128 docs); this
component sorts within `sort_buffer` docs instead and runs batches of at most
`batch_size` docs of about the same length, so short tweets stop paying for
long ones. Docs come out in input order; annotations are the same as
unsorted (float runtimes).

Ships inside en_twner: imports nothing from spacy_twner.
"""
from pathlib import Path
from typing import Callable, Iterable, Iterator, List

from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import import_file, minibatch
from spacy_transformers.pipeline_component import DEFAULT_CONFIG, Transformer, install_extensions
from thinc.api import Model

try:
    from .registration import register_factory
except ImportError:  # loaded as a lone file, as `spacy package` checks each code file
    register_factory = import_file("twner_registration", Path(__file__).with_name("registration.py")).register_factory

FACTORY = "twner_transformer"


class SortingTransformer(Transformer):
    def __init__(
        self, vocab, model: Model, set_extra_annotations: Callable, *, name: str, max_batch_items: int, sort_buffer: int
    ) -> None:
        super().__init__(vocab, model, set_extra_annotations, name=name, max_batch_items=max_batch_items)
        self.sort_buffer = sort_buffer

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        install_extensions()
        for buffer in minibatch(stream, max(batch_size, self.sort_buffer)):
            buffer = list(buffer)
            for indices in length_batches(buffer, batch_size, self.cfg["max_batch_items"]):
                batch = [buffer[i] for i in indices]
                self.set_annotations(batch, self.predict(batch))
            yield from buffer


def length_batches(docs: List[Doc], batch_size: int, max_items: int) -> List[List[int]]:
    """Indices of docs sorted by length, cut into batches of at most batch_size
    docs and max_items padded tokens."""
    order = sorted(range(len(docs)), key=lambda i: len(docs[i]))
    batches: List[List[int]] = []
    for i in order:
        longest = len(docs[i])  # sorted: the newest doc is the longest of its batch
        if batches and len(batches[-1]) < batch_size and longest * (len(batches[-1]) + 1) <= max_items:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def make_sorting_transformer(
    nlp: Language, name: str, model: Model, set_extra_annotations: Callable, max_batch_items: int, sort_buffer: int
) -> SortingTransformer:
    return SortingTransformer(
        nlp.vocab, model, set_extra_annotations, name=name, max_batch_items=max_batch_items, sort_buffer=sort_buffer
    )


register_factory(
    FACTORY,
    make_sorting_transformer,
    assigns=["doc._.trf_data"],
    default_config={**DEFAULT_CONFIG["transformer"], "sort_buffer": 1024},
)
