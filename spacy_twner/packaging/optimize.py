"""`twner optimize`: a copy of a pipeline whose transformer runs on another
runtime (spacy_twner.TorchRuntime.v1, spacy_twner.OnnxRuntime.v1), and the
SmoothQuant step that prepares an int8 ONNX graph.

An int8 graph is calibrated on a few hundred training texts: they give each
MatMul input's per-channel maxima, and the channels with outliers are scaled
down before quantizing, their weights' rows up by the same factor (SmoothQuant,
Xiao et al. 2023): the product is unchanged in float, but one uint8 scale per
call then fits every channel of the input. Build time only: the smoothed
graph ships, this code does not.
"""
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence

import numpy

from ..pipeline.transformer_model import transformer_module

# Where a pipeline's transformer runtime sits in its config (spacy_twner.TransformerModel.v2).
RUNTIME_KEY = "components.transformer.model.runtime"
RUNTIMES = {"torch": "spacy_twner.TorchRuntime.v1", "onnxruntime": "spacy_twner.OnnxRuntime.v1"}


def runtime_config(runtime: str, int8: bool = False, per_sequence: Optional[bool] = None) -> Dict[str, Any]:
    """Config overrides that load a pipeline's transformer with another runtime.
    per_sequence (onnxruntime only; None: its default here, True) runs each
    sequence alone, unpadded."""
    if runtime != "onnxruntime":
        if per_sequence:
            raise ValueError(f"per-sequence calls are an onnxruntime setting; the {runtime} runtime runs padded batches")
        return {RUNTIME_KEY: {"@misc": RUNTIMES[runtime], "quantize": int8}}
    per_sequence = True if per_sequence is None else per_sequence
    return {RUNTIME_KEY: {"@misc": RUNTIMES[runtime], "quantize": int8, "per_sequence": per_sequence}}


def convert_runtime(model: str, output_path: Path, config: Dict[str, Any], calibration: Iterable[str] = (), strength: float = 0.0) -> None:
    """Save a copy of the pipeline loaded with config (from runtime_config).
    strength > 0 (onnxruntime int8 only): the int8 graph is quantized after
    SmoothQuant with that alpha, its activation maxima from the calibration
    texts run through the float graph."""
    import spacy

    from ..pipeline.onnx_runtime import quantize_int8

    nlp = spacy.load(model, config=config)
    if strength:
        settings = config[RUNTIME_KEY]
        if settings["@misc"] != RUNTIMES["onnxruntime"] or not settings["quantize"]:
            raise ValueError("smoothing is a step of the onnxruntime int8 conversion (--runtime onnxruntime --int8)")
        float_nlp = spacy.load(model, config={RUNTIME_KEY: {**settings, "quantize": False}})
        source = transformer_module(float_nlp)
        with source.recording() as feeds:
            for _ in float_nlp.pipe(calibration, disable=[name for name in float_nlp.pipe_names if name != "transformer"]):
                pass
        transformer_module(nlp).use_graph(quantize_int8(smooth(source.graph, feeds, strength)))
    nlp.to_disk(output_path)


def smooth(graph: bytes, feeds: Sequence[Dict[str, numpy.ndarray]], alpha: float) -> bytes:
    """The float graph with SmoothQuant's migration, for quantize_int8: for each
    MatMul/Attention input channel j, s_j = max|x_j|**alpha / max|W_j|**(1 -
    alpha) over the calibration feeds; x_j is divided by s_j (a Mul before the
    op, which stays float) and row j of W multiplied by it, so in float the
    graph computes what it did."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    if not feeds:
        raise ValueError("smoothing needs calibration inputs: no texts were run")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"smoothing strength alpha must be in (0, 1], got {alpha}")
    model = onnx.load_from_string(graph)
    weights = {init.name: init for init in model.graph.initializer}
    targets = [node for node in model.graph.node if node.op_type in ("MatMul", "Attention") and node.input[1] in weights]
    probed = onnx.load_from_string(graph)  # the same graph, its targets' inputs as outputs too
    names = list(dict.fromkeys(node.input[0] for node in targets))
    probed.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names)
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(probed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed_names = {i.name for i in session.get_inputs()}
    peak = {name: 0.0 for name in names}
    for feed in feeds:
        for name, value in zip(names, session.run(names, {k: v for k, v in feed.items() if k in feed_names})):
            peak[name] = numpy.maximum(peak[name], numpy.abs(value).reshape(-1, value.shape[-1]).max(axis=0))
    nodes, smoothed_ids = [], {id(node) for node in targets}
    for node in model.graph.node:
        if id(node) in smoothed_ids:
            weight = numpy_helper.to_array(weights[node.input[1]])
            scale = numpy.maximum(peak[node.input[0]], 1e-5) ** alpha / numpy.maximum(numpy.abs(weight).max(axis=1), 1e-5) ** (1 - alpha)
            weights[node.input[1]].CopyFrom(numpy_helper.from_array((weight * scale[:, None]).astype(numpy.float32), node.input[1]))
            inverse = numpy_helper.from_array((1.0 / scale).astype(numpy.float32), f"{node.name}/smooth_scale")
            model.graph.initializer.append(inverse)
            smoothed = f"{node.name}/smoothed_input"
            nodes.append(helper.make_node("Mul", [node.input[0], inverse.name], [smoothed], name=f"{node.name}/smooth"))
            node.input[0] = smoothed
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model.SerializeToString()
