"""The transformer's runtimes on a tiny random backbone: torch float and int8,
ONNX Runtime float and int8, per sequence or batched; saved, reloaded, and
converted by `twner optimize` as the workflow converts en_twner.

The tiny pipeline is configs/trf.cfg trained for a few steps on real WNUT17
tweets (tests/conftest.py): what these tests show is the code's behaviour,
which does not depend on the backbone's size.
"""
import numpy as np
import pytest
import spacy
import srsly

from typer.testing import CliRunner

from spacy_twner.cli import app
from spacy_twner.packaging.optimize import RUNTIME_KEY, convert_runtime, runtime_config, smooth
from spacy_twner.pipeline.onnx_runtime import OnnxRuntime, OnnxTransformer
from spacy_twner.pipeline.torch_runtime import TorchRuntime
from spacy_twner.pipeline.transformer_model import Runtime, transformer_module

from .conftest import twner


def states(nlp, texts):
    return [np.asarray(d._.trf_data.model_output.last_hidden_state) for d in nlp.pipe(texts)]


def entities(nlp, texts):
    return [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in nlp.pipe(texts)]


def shim_message(model_dir) -> dict:
    model = srsly.msgpack_loads((model_dir / "transformer" / "model").read_bytes())
    (shim,) = [shim for node in model["shims"] for shim in node]
    return srsly.msgpack_loads(shim)


def test_both_runtimes_meet_the_protocol_the_transformer_model_types():
    assert isinstance(TorchRuntime(), Runtime) and isinstance(OnnxRuntime(), Runtime)
    assert not isinstance(object(), Runtime)


def test_the_tiny_pipeline_finds_entities(tiny_model_dir, tweets):
    """The fixture the other tests convert is a trained pipeline, not a blank one:
    its NER predicts entities on real tweets, so comparisons of entities can fail."""
    nlp = spacy.load(tiny_model_dir)
    assert nlp.pipe_names == ["transformer", "ner"]
    assert sum(map(len, entities(nlp, tweets))) > 0


def test_onnx_float_gives_torch_states_and_entities(tiny_model_dir, tweets):
    torch_nlp, ort = spacy.load(tiny_model_dir), spacy.load(tiny_model_dir, config=runtime_config("onnxruntime"))
    assert isinstance(transformer_module(ort), OnnxTransformer)
    assert entities(ort, tweets) == entities(torch_nlp, tweets)
    for a, b in zip(states(ort, tweets), states(torch_nlp, tweets)):
        real = a.any(axis=-1)  # per sequence: ONNX's padding positions hold zeros, torch's do not
        assert a.shape == b.shape and real.sum() > 1 and np.allclose(a[real], b[real], atol=1e-4)


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_int8_is_saved_as_what_it_runs_and_reloads_bit_for_bit(tiny_model_dir, tweets, tmp_path, runtime):
    convert_runtime(str(tiny_model_dir), tmp_path / "int8", runtime_config(runtime, int8=True))
    first = spacy.load(tmp_path / "int8")
    assert first.config["components"]["transformer"]["model"]["runtime"] == runtime_config(runtime, int8=True)[RUNTIME_KEY]
    saved = shim_message(tmp_path / "int8")
    if runtime == "onnxruntime":
        assert saved["format"] == "onnx" and b"MatMulInteger" in saved["state"]
    else:
        assert saved["format"] == "safetensors" and b".weight.int8" in saved["state"]
    first.to_disk(tmp_path / "again")
    second = spacy.load(tmp_path / "again")
    assert all(np.array_equal(a, b) for a, b in zip(states(first, tweets), states(second, tweets)))
    assert entities(first, tweets) == entities(second, tweets)
    float_states = states(spacy.load(tiny_model_dir), tweets)
    assert any(not np.allclose(a, b, atol=1e-6) for a, b in zip(states(first, tweets), float_states))  # int8 is not float


def test_per_sequence_int8_gives_a_tweet_its_own_output_in_any_batch_and_padded_calls_do_not(tiny_model_dir, tweets, tmp_path):
    convert_runtime(str(tiny_model_dir), tmp_path / "int8", runtime_config("onnxruntime", int8=True))
    nlp = spacy.load(tmp_path / "int8")
    texts = tweets[:40]

    def same(a, b):
        n = min(a.shape[1], b.shape[1])  # the wider one's extra columns are padding
        return np.array_equal(a[:, :n], b[:, :n])

    alone = [states(nlp, [t])[0] for t in texts]
    for batch_size, order in ((7, texts), (40, texts), (16, texts[::-1])):
        batched = [np.asarray(d._.trf_data.model_output.last_hidden_state) for d in nlp.pipe(order, batch_size=batch_size)]
        batched = batched if order is texts else batched[::-1]
        assert all(same(a, b) for a, b in zip(alone, batched)), batch_size
    padded = spacy.load(tmp_path / "int8", config=runtime_config("onnxruntime", int8=True, per_sequence=False))
    alone = [states(padded, [t])[0] for t in texts]
    batched = [np.asarray(d._.trf_data.model_output.last_hidden_state) for d in padded.pipe(texts, batch_size=40)]
    assert not all(same(a, b) for a, b in zip(alone, batched))  # the property is not free


def test_smoothing_alone_keeps_the_float_function_and_its_bad_settings_are_errors(tiny_model_dir, tweets):
    nlp = spacy.load(tiny_model_dir, config=runtime_config("onnxruntime"))
    reference = states(nlp, tweets[:30])
    source = transformer_module(nlp)
    with source.recording() as feeds:
        list(nlp.pipe(tweets[30:60]))
    assert len(feeds) == 30 and all(set(f) >= {"input_ids", "attention_mask"} for f in feeds)
    graph = smooth(source.graph, feeds, 0.8)
    assert graph.count(b"/smooth") >= 2 * 4  # a Mul per MatMul input of both layers
    source.use_graph(graph)
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(states(nlp, tweets[:30]), reference))
    with pytest.raises(ValueError, match="no texts were run"):
        smooth(source.graph, [], 0.8)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\]"):
        smooth(source.graph, feeds, 1.5)


def test_optimize_cli_calibrates_as_the_workflow_does_and_refuses_what_does_not_apply(tiny_model_dir, assets_dir, tmp_path):
    train = assets_dir / "wnut17" / "train.conll"
    run = twner("optimize", tiny_model_dir, tmp_path / "smoothed", "--runtime", "onnxruntime", "--int8", "--calibrate", train, "--calibrate-limit", "50")
    assert run.returncode == 0, run.stderr
    assert "smoothed on 50 texts" in run.stdout
    assert b"/smooth" in shim_message(tmp_path / "smoothed")["state"]

    def refused(*args):  # in process: these fail before any pipeline loads
        out = CliRunner().invoke(app, ["optimize", str(tiny_model_dir), str(tmp_path / "x"), *map(str, args)])
        return out.exit_code != 0 and " ".join(out.output.replace("│", " ").split())

    assert "add --int8" in refused("--runtime", "onnxruntime", "--calibrate", train)
    assert "per-sequence calls are an onnxruntime setting" in refused("--runtime", "torch", "--per-sequence")
    assert "the strength is in (0, 1]" in refused("--int8", "--calibrate", train, "--smooth", "0")
    assert not (tmp_path / "x").exists()


def test_a_pipeline_saved_by_one_runtime_names_the_other_when_loaded_wrongly(tiny_model_dir, tmp_path):
    convert_runtime(str(tiny_model_dir), tmp_path / "int8", runtime_config("onnxruntime", int8=True))
    with pytest.raises(ValueError, match="load it with runtime = spacy_twner.OnnxRuntime.v1"):
        spacy.load(tmp_path / "int8", config=runtime_config("torch"))
    with pytest.raises(ValueError, match="int8 graph: load it with quantize = true"):
        spacy.load(tmp_path / "int8", config=runtime_config("onnxruntime"))
