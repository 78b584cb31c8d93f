"""`twner annotate`, length-sorted piping, the runtimes (torch int8, ONNX Runtime float32 and int8, batched or per sequence) and the Dask scale-out.

The pipeline is the one the `project` fixture trains with the real workflow
(transformer + ner + sentence_embedder); the tweets are real unlabeled ones.
"""
import json
from pathlib import Path
from typing import List

import pytest
import spacy

from spacy_twner.packaging.optimize import runtime_config
from spacy_twner.pipeline.transformer_model import transformer_module
from spacy_twner.serve.annotate import BadLine, Counts, Record, annotate_records, read_records, set_sort_buffer

from .conftest import twner, wnut_file


def read_jsonl(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_unreadable_lines_are_named_by_file_and_line():
    text = [b"\xef\xbb\xbffirst", b"", b"caf\xc3\xa9 ok", b"bad \xff byte"]
    items = list(read_records(text, "in.txt"))
    assert [(r.line, r.text) for r in items[:3]] == [(1, "first"), (2, ""), (3, "café ok")]
    assert str(items[3]) == "in.txt:4: not valid UTF-8 at byte offset 4 (invalid start byte)"
    jsonl = [b'{"text": "ok", "id": 7}', b"", b"{nope", b"[1]", b'{"body": "x"}', b'{"text": 3}', b'{"text": "a\\ud83d"}']
    items = list(read_records(jsonl, "in.jsonl", text_field="text"))
    assert isinstance(items[0], Record) and items[0].fields == {"text": "ok", "id": 7}
    assert [str(b) for b in items[1:]] == [
        "in.jsonl:3: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        "in.jsonl:4: expected a JSON object, got list",
        "in.jsonl:5: no 'text' field",
        "in.jsonl:6: field 'text' is int, not a string",
        "in.jsonl:7: lone surrogate U+D83D at character 1",
    ]


@pytest.mark.slow
def test_sorted_piping_gives_the_same_docs_in_input_order(nlp, tweets):
    """The transformer sorts by length inside nlp.pipe; docs come back in input order."""
    def run(sort_buffer):
        set_sort_buffer(nlp, sort_buffer)
        return list(nlp.pipe(((t, i) for i, t in enumerate(tweets)), as_tuples=True, batch_size=16))

    try:
        plain, ordered = run(0), run(40)
    finally:
        set_sort_buffer(nlp, 1024)
    assert [i for _, i in ordered] == list(range(len(tweets)))
    assert [d.text for d, _ in ordered] == tweets
    assert [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d, _ in ordered] == [
        [(e.start_char, e.end_char, e.label_) for e in d.ents] for d, _ in plain
    ]


@pytest.mark.slow
def test_the_shipped_float_pipeline_gives_a_tweet_the_same_entities_alone_and_in_any_batch(nlp, tweets):
    """en_twner's promise (docs/serving.md): what a tweet gets does not depend on
    the tweets it is batched with, nor on the sorting buffer."""
    def entities(docs):
        docs = list(docs)
        return [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs], [e._.confidence for d in docs for e in d.ents]

    alone, confidences = entities(nlp(t) for t in tweets)
    assert any(alone)
    for batched, batched_confidences in (entities(nlp.pipe(tweets, batch_size=64)), entities(reversed(list(nlp.pipe(reversed(tweets), batch_size=7))))):
        assert batched == alone
        assert batched_confidences == pytest.approx(confidences, abs=1e-5)


@pytest.mark.slow
def test_annotation_streams_instead_of_reading_everything_first(nlp, tweets):
    """The first record comes out after one sort buffer is read, not the whole input."""
    read = []

    def lines():
        for i, tweet in enumerate(tweets * 20):
            read.append(i)
            yield tweet.encode("utf-8")

    try:
        stream = annotate_records(nlp, read_records(lines(), "x"), Counts(), batch_size=8, sort_buffer=32)
        first = next(stream)
    finally:
        set_sort_buffer(nlp, 1024)
    assert first["line"] == 1 and len(read) <= 64 < len(tweets) * 20


@pytest.mark.slow
def test_cli_writes_entities_and_embeddings_and_fails_cleanly_on_a_bad_line(model_dir, tweets, tmp_path):
    good = tmp_path / "tweets.jsonl"
    good.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(tweets)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    run = twner("annotate", str(model_dir), str(good), str(out), "--embeddings", "--batch-size", "8")
    assert run.returncode == 0, run.stderr
    records = read_jsonl(out)
    assert [r["id"] for r in records] == list(range(len(tweets))) and [r["line"] for r in records] == list(range(1, len(tweets) + 1))
    nlp = spacy.load(model_dir)
    for record, doc in zip(records, nlp.pipe(tweets)):
        assert record["entities"] == [
            {"text": e.text, "label": e.label_, "start": e.start_char, "end": e.end_char, "confidence": round(e._.confidence, 4)}
            for e in doc.ents
        ]
        assert all(record["text"][e["start"] : e["end"]] == e["text"] for e in record["entities"])
        assert all(0.0 <= e["confidence"] <= 1.0 for e in record["entities"])
        assert record["embedding"] == pytest.approx(doc._.embedding.tolist(), abs=1e-5)  # rounded to 6 places
    assert sum(len(r["entities"]) for r in records) > 0

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"I love New York\nbroken \xff line\nsee you in Paris\n")
    out_bad = tmp_path / "bad.jsonl"
    run = twner("annotate", str(model_dir), str(bad), str(out_bad))
    assert run.returncode == 1 and f"{bad}:2: not valid UTF-8" in run.stderr and not out_bad.exists()
    run = twner("annotate", str(model_dir), str(bad), str(out_bad), "--skip-bad", "--n-process", "2")
    assert run.returncode == 0 and f"skipped {bad}:2: not valid UTF-8" in run.stderr and "1 unreadable lines skipped" in run.stderr
    assert [(r["line"], r["text"]) for r in read_jsonl(out_bad)] == [(1, "I love New York"), (3, "see you in Paris")]


@pytest.mark.slow
def test_int8_pipeline_is_saved_with_its_setting_and_reloads_bit_for_bit(model_dir, tweets, tmp_path):
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    run = twner("optimize", str(model_dir), str(tmp_path / "int8"), "--runtime", "torch", "--int8")
    assert run.returncode == 0, run.stderr
    first = spacy.load(tmp_path / "int8")
    assert first.config["components"]["transformer"]["model"]["runtime"] == {"@misc": "spacy_twner.TorchRuntime.v1", "quantize": True}
    model = transformer_module(first)
    modules = list(model.modules())
    assert not any(type(m) is torch.nn.Linear for m in modules) and sum(isinstance(m, Int8Linear) for m in modules) >= 36
    first.to_disk(tmp_path / "again")
    second = spacy.load(tmp_path / "again")

    def outputs(nlp):
        docs = list(nlp.pipe(tweets[:30]))
        return [[(e.start, e.end, e.label_) for e in d.ents] for d in docs], [d._.trf_data.model_output.last_hidden_state for d in docs]

    (ents1, states1), (ents2, states2) = outputs(first), outputs(second)
    assert ents1 == ents2 and all(torch.equal(torch.as_tensor(a), torch.as_tensor(b)) for a, b in zip(states1, states2))
    (_, float_states) = outputs(spacy.load(model_dir))
    assert any(not torch.equal(torch.as_tensor(a), torch.as_tensor(b)) for a, b in zip(states1, float_states))


@pytest.mark.slow
def test_onnxruntime_transformer_matches_torch_and_int8_is_saved_as_its_graph(model_dir, tweets, tmp_path):
    import numpy as np
    import srsly

    from spacy_twner.pipeline.onnx_runtime import OnnxTransformer

    def outputs(nlp):
        docs = list(nlp.pipe(tweets[:30]))
        return [[(e.start, e.end, e.label_) for e in d.ents] for d in docs], [np.asarray(d._.trf_data.model_output.last_hidden_state) for d in docs]

    # float32 in ONNX Runtime: a load-time setting, same entities and states as torch.
    ort = spacy.load(model_dir, config=runtime_config("onnxruntime"))
    assert isinstance(transformer_module(ort), OnnxTransformer)
    (ents_torch, states_torch), (ents_ort, states_ort) = outputs(spacy.load(model_dir)), outputs(ort)
    assert ents_ort == ents_torch
    # one unpadded call per sequence: the padding positions hold zeros, the rest torch's states
    real = [np.asarray(d._.trf_data.model_output.last_hidden_state).any(axis=-1) for d in ort.pipe(tweets[:30])]
    assert all(a.shape == b.shape and np.allclose(a[m], b[m], atol=1e-4) for a, b, m in zip(states_ort, states_torch, real))

    # int8: saved as the quantized ONNX graph (no pickle, no torch weights), reloads bit for bit.
    run = twner("optimize", str(model_dir), str(tmp_path / "ort-int8"), "--runtime", "onnxruntime", "--int8")
    assert run.returncode == 0, run.stderr
    first = spacy.load(tmp_path / "ort-int8")
    runtime = {"@misc": "spacy_twner.OnnxRuntime.v1", "quantize": True, "per_sequence": True}
    assert first.config["components"]["transformer"]["model"]["runtime"] == runtime
    model_bytes = srsly.msgpack_loads((tmp_path / "ort-int8" / "transformer" / "model").read_bytes())
    (shim_bytes,) = [shim for node in model_bytes["shims"] for shim in node]
    saved = srsly.msgpack_loads(shim_bytes)
    assert saved["format"] == "onnx" and b"MatMulInteger" in saved["state"]
    first.to_disk(tmp_path / "again")
    (ents1, states1), (ents2, states2) = outputs(first), outputs(spacy.load(tmp_path / "again"))
    assert ents1 == ents2 and all(np.array_equal(a, b) for a, b in zip(states1, states2))
    assert any(not np.allclose(a, b, atol=1e-4) for a, b in zip(states1, states_torch))
    # `twner annotate --n-process 2`: each worker process makes its own session, same entities.
    (tmp_path / "in.txt").write_text("\n".join(tweets[:30]) + "\n", encoding="utf-8")
    for n_process in ("1", "2"):
        out = tmp_path / f"out{n_process}.jsonl"
        run = twner("annotate", str(tmp_path / "ort-int8"), str(tmp_path / "in.txt"), str(out), "--batch-size", "8",
                    "--sort-buffer", "0", "--n-process", n_process)  # fmt: skip
        assert run.returncode == 0, run.stderr
    assert read_jsonl(tmp_path / "out2.jsonl") == read_jsonl(tmp_path / "out1.jsonl")
    assert sum(len(r["entities"]) for r in read_jsonl(tmp_path / "out1.jsonl")) > 0


@pytest.mark.slow
def test_calibrated_int8_keeps_the_float_function_and_lands_closer_to_float(model_dir, tweets, assets_dir, tmp_path):
    """SmoothQuant: the migration alone changes nothing in float; quantized, the
    states of tweets it was not calibrated on are nearer float32's than plain
    int8's, and the calibrated graph is saved and reloaded like any int8 one."""
    import numpy as np

    from spacy_twner.packaging.optimize import smooth

    train = wnut_file(assets_dir, "wnut17", "train")
    run = twner("optimize", str(model_dir), str(tmp_path / "smoothed"), "--runtime", "onnxruntime", "--int8",
                "--calibrate", str(train), "--calibrate-limit", "200")  # fmt: skip
    assert run.returncode == 0, run.stderr
    run = twner("optimize", str(model_dir), str(tmp_path / "plain"), "--runtime", "onnxruntime", "--int8")
    assert run.returncode == 0, run.stderr
    float_nlp = spacy.load(model_dir, config=runtime_config("onnxruntime"))
    texts = tweets[30:90]  # unlabeled tweets, not the calibration text

    def states(nlp):
        return [np.asarray(d._.trf_data.model_output.last_hidden_state) for d in nlp.pipe(texts)]

    reference = states(float_nlp)

    def error(nlp):
        return float(np.mean([np.abs(a - b).mean() for a, b in zip(states(nlp), reference)]))

    smoothed, plain = spacy.load(tmp_path / "smoothed"), spacy.load(tmp_path / "plain")
    assert smoothed.config["components"]["transformer"]["model"]["runtime"] == plain.config["components"]["transformer"]["model"]["runtime"]
    smoothed_error, plain_error = error(smoothed), error(plain)
    assert smoothed_error < 0.9 * plain_error, (smoothed_error, plain_error)
    smoothed.to_disk(tmp_path / "again")
    assert all(np.array_equal(a, b) for a, b in zip(states(spacy.load(tmp_path / "again")), states(smoothed)))

    # the migration alone (no quantization) computes what the float graph did
    source = transformer_module(float_nlp)
    with source.recording() as feeds:
        list(float_nlp.pipe(texts[:20]))
    assert len(feeds) >= 20
    source.use_graph(smooth(source.graph, feeds, 0.8))
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(states(float_nlp), reference))

    # calibration is a step of the int8 conversion: without --int8 it is an error, not ignored
    run = twner("optimize", str(model_dir), str(tmp_path / "float"), "--runtime", "onnxruntime", "--calibrate", str(train))
    assert run.returncode != 0 and "add --int8" in " ".join(run.stderr.replace("│", " ").split())


@pytest.mark.slow
def test_int8_default_gives_a_tweet_the_same_output_alone_and_in_any_batch(model_dir, tweets, assets_dir, tmp_path):
    """int8 activations are scaled per call: one call per sequence makes a
    tweet's states, entities and confidences its own; batched calls do not.
    The graph is converted as the workflow converts en_twner's (smoothed)."""
    import numpy as np

    run = twner("optimize", str(model_dir), str(tmp_path / "int8"), "--runtime", "onnxruntime", "--int8",
                "--calibrate", str(wnut_file(assets_dir, "wnut17", "train")), "--calibrate-limit", "100")  # fmt: skip
    assert run.returncode == 0, run.stderr
    nlp = spacy.load(tmp_path / "int8")
    texts = tweets[:40]

    def outputs(docs):
        return [([(e.start_char, e.end_char, e.label_, e._.confidence) for e in d.ents],
                 np.asarray(d._.trf_data.model_output.last_hidden_state)) for d in docs]  # fmt: skip

    def same(x, y):
        (ents_x, states_x), (ents_y, states_y) = x, y
        n = min(states_x.shape[1], states_y.shape[1])  # the wider one's extra columns are padding
        return ents_x == ents_y and np.array_equal(states_x[:, :n], states_y[:, :n])

    alone = [outputs([nlp(t)])[0] for t in texts]
    for batch_size, order in ((7, texts), (40, texts), (16, texts[::-1])):
        batched = outputs(nlp.pipe(order, batch_size=batch_size))
        batched = batched if order is texts else batched[::-1]
        assert all(same(a, b) for a, b in zip(alone, batched)), (batch_size, order is texts)
    # the check can fail: one padded call per batch moves the states
    padded = spacy.load(tmp_path / "int8", config=runtime_config("onnxruntime", int8=True, per_sequence=False))
    batched = outputs(padded.pipe(texts, batch_size=40))
    assert not all(same(a, b) for a, b in zip(outputs(padded(t) for t in texts), batched))
    # a torch pipeline pads its batches: asking it for per-sequence calls is an error, not ignored
    run = twner("optimize", str(model_dir), str(tmp_path / "torch"), "--runtime", "torch", "--per-sequence")
    assert run.returncode != 0 and "per-sequence calls are an onnxruntime setting" in " ".join(run.stderr.replace("│", " ").split())


@pytest.mark.slow
def test_dask_cluster_annotates_files_with_one_pipeline_load_per_worker(model_dir, tweets, tmp_path):
    from distributed import Client, LocalCluster

    from spacy_twner.serve.annotate import annotate_file
    from spacy_twner.serve.distributed import PLUGIN, annotate_files

    inputs = []
    for i in range(4):
        path = tmp_path / f"part{i}.txt"
        path.write_text("\n".join(tweets[i * 20 : (i + 1) * 20]) + "\n", encoding="utf-8")
        inputs.append(path)
    (tmp_path / "out").mkdir()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as client:
        results = annotate_files(client, str(model_dir), inputs, tmp_path / "out", batch_size=8)
        loads = client.run(lambda dask_worker: dask_worker.plugins[PLUGIN].loads)
        broken = tmp_path / "broken.txt"
        broken.write_bytes(b"fine\n\xff\n")
        with pytest.raises(BadLine, match="broken.txt:2: not valid UTF-8"):
            annotate_files(client, str(model_dir), [broken], tmp_path / "out")
    assert sorted(loads.values()) == [1, 1]
    assert [r["written"] for r in results] == [20, 20, 20, 20]
    nlp = spacy.load(model_dir)
    for path, result in zip(inputs, results):
        local = tmp_path / f"{path.stem}.local.jsonl"
        annotate_file(nlp, path, local, batch_size=8)
        assert read_jsonl(Path(result["output"])) == read_jsonl(local)
    assert not (tmp_path / "out" / "broken.jsonl").exists()
