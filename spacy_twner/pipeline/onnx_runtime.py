"""spacy_twner.OnnxRuntime.v1: the transformer's forward pass in ONNX Runtime
(CPU, inference only), float32 or with int8 MatMuls.

The Hugging Face model is exported to ONNX with dynamic batch and length, its
attention, GELU and layer norms fused by onnxruntime's BERT optimizer, and,
with `quantize`, its MatMul weights made int8 with one scale per output
channel. Float32 gives torch's entities; int8 trades a little accuracy for
speed.

An int8 graph can be smoothed before quantizing (`twner optimize
--calibrate`, spacy_twner/packaging/optimize.py); what ships is the graph.

With `per_sequence`, each sequence runs alone without its padding: int8's
activation scales are computed per call, so batched they would let a tweet's
entities change with its batch-mates; alone they depend on the tweet only, and
on short texts the unpadded calls are also faster than one padded batch.

What it saves: a float pipeline keeps its torch weights (safetensors, so the
torch runtime can still load it) plus the exported graph, so loading skips
the export; an int8 pipeline saves only its int8 graph, and reloads bit for
bit. Either way a protobuf and tensors, nothing that runs code on load.

Ships inside en_twner: imports nothing from spacy_twner.
"""
import contextlib
import os
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy
from spacy.util import make_tempdir, registry
from thinc.api import get_torch_default_device

try:
    from torch.nn import Module
except ImportError:  # pragma: no cover - spacy-transformers needs torch anyway
    Module = object


@registry.misc("spacy_twner.OnnxRuntime.v1")
def onnx_runtime(quantize: bool = False, per_sequence: bool = False) -> "OnnxRuntime":
    """quantize: int8 MatMul weights, one scale per output channel (dynamic
    quantization). per_sequence: one unpadded call per sequence, so a text's
    output does not depend on the batch it came in."""
    return OnnxRuntime(quantize, per_sequence)


class OnnxRuntime:
    name = "onnxruntime"

    def __init__(self, quantize: bool = False, per_sequence: bool = False) -> None:
        self.quantize, self.per_sequence = quantize, per_sequence

    def prepare(self, transformer) -> "OnnxTransformer":
        return self._wrap(export_onnx(transformer, self.quantize), transformer.config)

    def _wrap(self, graph: bytes, config, float_state: Optional[bytes] = None) -> "OnnxTransformer":
        return OnnxTransformer(graph, config, float_state=float_state, per_sequence=self.per_sequence)

    def dump(self, transformer: "OnnxTransformer") -> Dict[str, Any]:
        if transformer.float_state is None:
            return {"format": "onnx", "state": transformer.graph}
        return {"format": "safetensors", "state": transformer.float_state, "onnx": transformer.graph}

    def load(self, msg: Dict[str, Any], config, build: Callable[[], Any]) -> "OnnxTransformer":
        from safetensors.torch import load

        if msg["format"] == "onnx":
            if not self.quantize and b"MatMulInteger" in msg["state"]:
                raise ValueError("this pipeline's transformer is an int8 graph: load it with quantize = true")
            return self._wrap(msg["state"], config)
        transformer = build()
        transformer.load_state_dict(load(msg["state"]))
        if self.quantize:
            return self._wrap(export_onnx(transformer, quantize=True), config)
        graph = msg.get("onnx") or export_onnx(transformer, quantize=False)
        return self._wrap(graph, config, float_state=msg["state"])


class OnnxTransformer(Module):
    """The Hugging Face model's forward pass in an ONNX Runtime session, behind
    the call the shim makes: keyword tensors in, `last_hidden_state` out."""

    def __init__(self, graph: bytes, config, float_state: Optional[bytes] = None, per_sequence: bool = False) -> None:
        super().__init__()
        if get_torch_default_device().type != "cpu":
            raise ValueError("an onnxruntime transformer runs on the CPU only; load the pipeline without a GPU")
        self.graph, self.config, self.float_state, self.per_sequence = graph, config, float_state, per_sequence
        self._session, self._pid, self._recorded = None, None, None

    def use_graph(self, graph: bytes) -> None:
        """Run another graph of the same model (a calibrated int8 one)."""
        self.graph, self.float_state, self._session, self._pid = graph, None, None, None

    @contextlib.contextmanager
    def recording(self) -> Iterator[List[Dict[str, numpy.ndarray]]]:
        """Collect each sequence's session inputs, unpadded, while it runs (calibration)."""
        self._recorded = []
        try:
            yield self._recorded
        finally:
            self._recorded = None

    def session(self):
        """The session of this process: one made before a fork (nlp.pipe with
        n_process) would run on thread pools the child does not have."""
        import onnxruntime
        import torch

        if self._pid != os.getpid():
            options = onnxruntime.SessionOptions()
            # As many threads as torch uses (`twner annotate` sets them per process).
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(self.graph, options, providers=["CPUExecutionProvider"])
            self._pid = os.getpid()
        return self._session

    @property
    def device(self):
        import torch

        return torch.device("cpu")

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        feed = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        session = self.session()
        inputs = {i.name: feed[i.name].long().numpy() for i in session.get_inputs()}
        mask = feed["attention_mask"].bool().numpy()
        rows = []  # (row, its own positions, its unpadded inputs): only where something reads them
        if self.per_sequence or self._recorded is not None:
            rows = [(row, keep, {k: v[row : row + 1, keep] for k, v in inputs.items()}) for row, keep in enumerate(mask) if keep.any()]
        if self._recorded is not None:
            self._recorded.extend(row_inputs for _, _, row_inputs in rows)
        if not self.per_sequence:
            (hidden,) = session.run(["last_hidden_state"], inputs)
            return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))
        hidden = numpy.zeros(mask.shape + (self.config.hidden_size,), dtype=numpy.float32)
        for row, keep, row_inputs in rows:
            hidden[row, keep] = session.run(["last_hidden_state"], row_inputs)[0][0]
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))

    def __getstate__(self) -> Dict[str, Any]:
        # A session does not pickle (a spawned process): the next call makes one.
        return {**self.__dict__, "_session": None, "_pid": None, "_recorded": None}


def export_onnx(transformer, quantize: bool) -> bytes:
    """The transformer as an optimized ONNX graph: exported with dynamic batch
    and length, encoder ops fused for the CPU, MatMul weights int8 per channel
    if quantize."""
    import torch
    from onnxruntime.transformers.optimizer import optimize_model

    class LastHiddenState(torch.nn.Module):
        """The model without its pooler, which nothing reads."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    config = transformer.config
    inputs = {name: torch.ones((2, 8), dtype=torch.long) for name in ("input_ids", "attention_mask", "token_type_ids")}
    axes = {0: "batch", 1: "length"}
    with make_tempdir() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            LastHiddenState().eval(), (), str(tmp / "model.onnx"), kwargs=inputs,
            input_names=list(inputs), output_names=["last_hidden_state"],
            dynamic_axes={**{name: axes for name in inputs}, "last_hidden_state": axes},
            opset_version=17, dynamo=False,
        )  # fmt: skip
        optimized = optimize_model(
            str(tmp / "model.onnx"), model_type="bert",
            num_heads=config.num_attention_heads, hidden_size=config.hidden_size,
        )  # fmt: skip
        optimized.save_model_to_file(str(tmp / "optimized.onnx"))
        graph = (tmp / "optimized.onnx").read_bytes()
    return quantize_int8(graph) if quantize else graph


def quantize_int8(graph: bytes) -> bytes:
    """A float graph's MatMul and Attention weights int8, one scale per output
    channel; their inputs uint8 with a scale per call (dynamic)."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with make_tempdir() as tmp:
        (tmp / "float.onnx").write_bytes(graph)
        # Shape inference cannot type the fused (com.microsoft) ops' outputs: they are float.
        extra = {"DefaultTensorType": TensorProto.FLOAT}
        quantize_dynamic(
            tmp / "float.onnx", tmp / "int8.onnx", op_types_to_quantize=["MatMul", "Attention"],
            per_channel=True, weight_type=QuantType.QInt8, extra_options=extra,
        )  # fmt: skip
        return (tmp / "int8.onnx").read_bytes()
