"""Batching without a trained model: the transformer's length-sorted batches
and the server's micro-batcher, as units; and the sorted pipe of the tiny
pipeline, which must give the docs back in input order with the same entities."""
import asyncio
import random
import threading

import pytest
import spacy
from spacy.tokens import Doc
from spacy.vocab import Vocab

from spacy_twner.pipeline.pipeline_component import length_batches
from spacy_twner.serve.annotate import set_sort_buffer
from spacy_twner.serve.batching import MicroBatcher


def docs_of_lengths(lengths):
    vocab = Vocab()
    return [Doc(vocab, words=["w"] * n) for n in lengths]


def test_length_batches_cover_every_doc_once_sorted_and_within_both_limits():
    rng = random.Random(0)
    lengths = [rng.randint(1, 60) for _ in range(300)]
    docs = docs_of_lengths(lengths)
    batches = length_batches(docs, batch_size=16, max_items=400)
    assert sorted(i for b in batches for i in b) == list(range(300))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths)
    for b in batches:
        assert len(b) <= 16 and max(lengths[i] for i in b) * len(b) <= 400 or len(b) == 1


def test_a_doc_longer_than_max_items_gets_a_batch_of_its_own():
    batches = length_batches(docs_of_lengths([5, 500, 5]), batch_size=8, max_items=100)
    assert batches == [[0, 2], [1]]
    assert length_batches([], batch_size=8, max_items=100) == []


def test_sorted_pipe_gives_docs_in_input_order_with_the_entities_of_unsorted(tiny_model_dir, tweets):
    nlp = spacy.load(tiny_model_dir)

    def run(sort_buffer):
        set_sort_buffer(nlp, sort_buffer)
        return list(nlp.pipe(((t, i) for i, t in enumerate(tweets)), as_tuples=True, batch_size=16))

    ordered = run(40)
    alone = [nlp(t) for t in tweets]  # no batch, no sorting at all
    assert [i for _, i in ordered] == list(range(len(tweets))) and [d.text for d, _ in ordered] == tweets
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d, _ in ordered] == [[(e.start, e.end, e.label_) for e in d.ents] for d in alone]
    assert any(d.ents for d in alone)


def run_async(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_batches_and_each_gets_its_own_results_in_order():
    seen = []

    def work(texts, options):
        seen.append(list(texts))
        return [f"{t}/{o}" for t, o in zip(texts, options)]

    async def main():
        batcher = MicroBatcher(work, max_batch=8, max_wait_ms=50)
        batcher.start()
        requests = [[f"r{r}t{i}" for i in range(r % 3 + 1)] for r in range(10)]
        results = await asyncio.gather(*(batcher.submit(texts, options=r) for r, texts in enumerate(requests)))
        await batcher.stop()
        return requests, results, batcher.batches

    requests, results, batches = run_async(main())
    assert results == [[f"{t}/{r}" for t in texts] for r, texts in enumerate(requests)]
    assert batches == len(seen) < len(requests)  # shared
    assert all(len(batch) <= 8 + 2 for batch in seen)  # a batch closes once it holds max_batch texts


def test_a_failing_batch_fails_its_own_requests_and_the_batcher_goes_on():
    def work(texts, options):
        if "boom" in texts:
            raise RuntimeError("boom")
        return [t.upper() for t in texts]

    async def main():
        batcher = MicroBatcher(work, max_batch=1, max_wait_ms=1)
        batcher.start()
        bad = batcher.submit(["boom"])
        good = batcher.submit(["fine"])
        out = await asyncio.gather(bad, good, return_exceptions=True)
        await batcher.stop()
        return out

    bad, good = run_async(main())
    assert isinstance(bad, RuntimeError) and good == ["FINE"]


def test_stop_answers_what_is_queued_before_it_ends():
    release = threading.Event()

    def work(texts, options):
        release.wait(5)
        return list(texts)

    async def main():
        batcher = MicroBatcher(work, max_batch=2, max_wait_ms=1)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit([f"t{i}"])) for i in range(5)]
        await asyncio.sleep(0.05)
        stopping = asyncio.ensure_future(batcher.stop())
        release.set()
        await stopping
        return [p.result() for p in pending]

    assert run_async(main()) == [[f"t{i}"] for i in range(5)]
