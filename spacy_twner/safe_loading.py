"""Load a pipeline without unpickling anything, and refuse damaged or altered files.

spacy-transformers saves the Hugging Face weights with `torch.save` and loads
them with `torch.load`, i.e. by unpickling: a pipeline someone else built
could run code on load. `spacy_twner.TransformerModel.v1` is the same model
with a shim that writes and reads safetensors only. The NER weights are
spaCy's own msgpack, the sentence embedder's are safetensors.

`runtime = "onnxruntime"` runs the transformer's forward pass in ONNX
Runtime instead (CPU, inference only): the graph is exported from the Hugging
Face model, its attention, GELU and layer norms fused, and with `quantize` its
MatMul weights made int8 per output channel. The pipeline then saves the ONNX
graph (a protobuf, no code) in place of the torch weights.

`spacy_twner.checksummed_files.v1` makes `nlp.to_disk` write the sha256 of
every file it saved and `nlp.from_disk` check them before reading anything,
so a truncated or tampered pipeline directory fails with the file's name
instead of loading wrong weights or failing deep inside a decoder.

This file ships inside en_twner (`spacy package --code`), so it imports
nothing from spacy_twner.
"""
import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Union

import srsly
from spacy.language import Language
from spacy.util import SimpleFrozenDict, SimpleFrozenList, ensure_path, make_tempdir, registry
from thinc.api import get_torch_default_device

try:
    from spacy_transformers.data_classes import HFObjects
    from spacy_transformers.layers.hf_shim import HFShim
    from torch.nn import Module as TorchModule
except ImportError:  # a CNN pipeline has no transformer to load
    HFShim = TorchModule = object

CHECKSUMS = "sha256sums.json"
# `spacy package` rewrites meta.json (scores, requirements): not a model file.
UNCHECKED = {CHECKSUMS, "meta.json"}


class DamagedPipelineError(ValueError):
    """A pipeline file is missing, truncated or not what was saved."""


RUNTIMES = ("torch", "onnxruntime")


@registry.architectures("spacy_twner.TransformerModel.v1")
def create_safe_transformer_model(
    name: str,
    get_spans: Callable,
    tokenizer_config: dict = {},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    quantize: bool = False,
    runtime: str = "torch",
):
    """spacy-transformers.TransformerModel.v3 whose weights serialize as safetensors.

    quantize: on load, make the Linear layers int8 (CPU, inference only): torch
    dynamic quantization (one scale per tensor), or ONNX Runtime's (one scale
    per output channel). A quantized pipeline saves its int8 weights as they
    are, so it reloads bit for bit; `twner quantize` makes one.
    runtime: "torch", or "onnxruntime" for the forward pass in ONNX Runtime.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    make_model = registry.architectures.get("spacy-transformers.TransformerModel.v3")
    model = make_model(name, get_spans, tokenizer_config, transformer_config, mixed_precision, grad_scaler_config)
    # The shim is built inside TransformerModel; only its (de)serialization changes.
    shim = model.layers[0].shims[0]
    shim.__class__ = SafetensorsHFShim
    shim.quantize = quantize
    shim.runtime = runtime
    return model


class SafetensorsHFShim(HFShim):
    """HFShim.to_bytes/from_bytes with the weights as safetensors, never a pickle."""

    quantize = False
    runtime = "torch"

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        msg = srsly.msgpack_loads(super().to_bytes())
        if isinstance(self._model, OnnxTransformer):
            msg["state"], msg["format"] = self._model.onnx_model, "onnx"
        elif msg["config"]:
            msg["state"], msg["format"] = save(_tensors(self._model)), "safetensors"
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes) -> "SafetensorsHFShim":
        """HFShim.from_bytes, with safetensors' load where it calls torch.load."""
        from safetensors.torch import load

        msg = srsly.msgpack_loads(bytes_data)
        if not msg["config"]:
            return super().from_bytes(bytes_data)  # never initialized: no weights to read
        if msg.get("format") not in ("safetensors", "onnx"):
            raise DamagedPipelineError(
                "transformer weights are not in safetensors format; refusing to unpickle them "
                "(re-save the pipeline with spacy_twner.TransformerModel.v1)"
            )
        with make_tempdir() as temp_dir:
            srsly.write_json(temp_dir / "config.json", msg["config"])
            config = self.config_cls.from_pretrained(temp_dir / "config.json")
            tok_files = dict(msg["tokenizer"])
            tok_kwargs = tok_files.pop("kwargs", {})
            for file_name, data in tok_files.items():
                (temp_dir / file_name).write_bytes(data)
            tokenizer = self.tokenizer_cls.from_pretrained(str(temp_dir), **tok_kwargs)
            vocab_file = temp_dir / getattr(tokenizer, "vocab_files_names", {}).get("vocab_file", "-")
            vocab_contents = vocab_file.read_bytes() if vocab_file.is_file() else None
        if msg["format"] == "onnx":
            transformer = OnnxTransformer(msg["state"], config)
        else:
            transformer = self.model_cls.from_config(config)
            state = load(msg["state"])
            int8 = [k[: -len(INT8)] for k in state if k.endswith(INT8)]
            if self.runtime == "onnxruntime":
                if int8:
                    raise ValueError("these transformer weights are torch int8: export the float pipeline to onnxruntime instead")
                transformer.load_state_dict(state)
                transformer = OnnxTransformer(export_onnx(transformer, self.quantize), config)
            elif self.quantize or int8:
                transformer = _load_quantized(transformer, state, int8)
            else:
                transformer.load_state_dict(state)
                transformer.to(get_torch_default_device())
        self._hfmodel = HFObjects(tokenizer, transformer, vocab_contents, SimpleFrozenDict(), SimpleFrozenDict())
        self._model = transformer
        return self


# A quantized Linear's weight is saved as three tensors: int8 values, scale, zero point.
INT8, SCALE, ZERO_POINT = ".weight.int8", ".weight.scale", ".weight.zero_point"


def _tensors(model) -> Dict[str, Any]:
    """The model's weights as plain tensors for safetensors (which stores no
    quantized tensors): each int8 Linear becomes values, scale and zero point."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    int8 = {name: module for name, module in model.named_modules() if isinstance(module, Int8Linear)}
    # An int8 Linear's own entries (packed params, an unused output scale) are replaced below.
    state = {k: v for k, v in model.state_dict().items() if k.rpartition(".")[0].split("._packed_params")[0] not in int8}
    for name, module in int8.items():
        weight, bias = module._weight_bias()
        state[name + INT8] = weight.int_repr()
        state[name + SCALE] = torch.tensor(weight.q_scale(), dtype=torch.float64)
        state[name + ZERO_POINT] = torch.tensor(weight.q_zero_point(), dtype=torch.int64)
        state[name + ".bias"] = bias
    # clone(): safetensors refuses tensors that share memory (tied weights).
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def _load_quantized(transformer, state: Dict[str, Any], int8: List[str]):
    """The transformer with int8 Linear layers: quantized now from float weights,
    or rebuilt exactly from saved int8 ones."""
    import warnings

    import torch

    _require_cpu("an int8-quantized transformer")
    saved = {name: [state.pop(name + key) for key in (INT8, SCALE, ZERO_POINT, ".bias")] for name in int8}
    missing, unexpected = transformer.load_state_dict(state, strict=False)
    if set(missing) != {f"{name}.{p}" for name in saved for p in ("weight", "bias")} or unexpected:
        raise DamagedPipelineError(f"transformer weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with warnings.catch_warnings():
        # torch marks torch.ao quantization deprecated in favour of torchao; it still works in 2.13.
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        transformer = torch.ao.quantization.quantize_dynamic(transformer, {torch.nn.Linear}, dtype=torch.qint8)
        modules = dict(transformer.named_modules())
        for name, (values, scale, zero, bias) in saved.items():
            weight = torch._make_per_tensor_quantized_tensor(values, float(scale), int(zero))
            modules[name].set_weight_bias(weight, bias)
    return transformer.eval()


def _require_cpu(what: str) -> None:
    if get_torch_default_device().type != "cpu":
        raise ValueError(f"{what} runs on the CPU only; load the pipeline without a GPU")


class OnnxTransformer(TorchModule):
    """The Hugging Face model's forward pass in an ONNX Runtime session, behind
    the call the HFShim makes: keyword tensors in, `last_hidden_state` out."""

    def __init__(self, onnx_model: bytes, config) -> None:
        super().__init__()
        _require_cpu("an onnxruntime transformer")
        self.onnx_model, self.config = onnx_model, config
        self._session, self._pid = None, None

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
            self._session = onnxruntime.InferenceSession(self.onnx_model, options, providers=["CPUExecutionProvider"])
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
        (hidden,) = session.run(["last_hidden_state"], inputs)
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))

    def __getstate__(self) -> Dict[str, Any]:
        # A session does not pickle (a spawned process): the next call makes one.
        return {**self.__dict__, "_session": None, "_pid": None}


def export_onnx(transformer, quantize: bool) -> bytes:
    """The transformer as an optimized ONNX graph: exported with dynamic batch
    and length, encoder ops fused for the CPU, MatMul weights int8 per channel
    if quantize."""
    import warnings

    import torch
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    config = transformer.config
    inputs = {name: torch.ones((2, 8), dtype=torch.long) for name in ("input_ids", "attention_mask", "token_type_ids")}
    axes = {0: "batch", 1: "length"}
    with make_tempdir() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            transformer.eval(), (), str(tmp / "model.onnx"), kwargs=inputs,
            input_names=list(inputs), output_names=["last_hidden_state", "pooler_output"],
            dynamic_axes={**{name: axes for name in inputs}, "last_hidden_state": axes},
            opset_version=17, dynamo=False,
        )  # fmt: skip
        optimized = optimize_model(
            str(tmp / "model.onnx"), model_type="bert",
            num_heads=config.num_attention_heads, hidden_size=config.hidden_size,
        )  # fmt: skip
        optimized.save_model_to_file(str(tmp / "optimized.onnx"))
        path = tmp / "optimized.onnx"
        if quantize:
            # Shape inference cannot type the fused (com.microsoft) ops' outputs: they are float.
            extra = {"DefaultTensorType": TensorProto.FLOAT}
            quantize_dynamic(
                path, tmp / "int8.onnx", op_types_to_quantize=["MatMul", "Attention"],
                per_channel=True, weight_type=QuantType.QInt8, extra_options=extra,
            )  # fmt: skip
            path = tmp / "int8.onnx"
        return path.read_bytes()


@registry.callbacks("spacy_twner.checksummed_files.v1")
def make_checksummed_files() -> Callable[[Language], Language]:
    """An `[nlp] after_creation` callback: checksums on to_disk, checked on from_disk."""
    return add_checksums


def add_checksums(nlp: Language) -> Language:
    nlp.to_disk = _ChecksummedToDisk(nlp)
    nlp.from_disk = _VerifiedFromDisk(nlp)
    return nlp


class _ChecksummedToDisk:
    """Language.to_disk, then the sha256 of each file saved. A class, not a closure,
    so that the Language still pickles for nlp.pipe(n_process=...)."""

    def __init__(self, nlp: Language) -> None:
        self.nlp = nlp

    def __call__(self, path: Union[str, Path], *, exclude: Iterable[str] = SimpleFrozenList()) -> None:
        path = ensure_path(path)
        Language.to_disk(self.nlp, path, exclude=exclude)
        srsly.write_json(path / CHECKSUMS, file_checksums(path))


class _VerifiedFromDisk:
    """Language.from_disk after checking every file against the saved checksums."""

    def __init__(self, nlp: Language) -> None:
        self.nlp = nlp

    def __call__(
        self,
        path: Union[str, Path],
        *,
        exclude: Iterable[str] = SimpleFrozenList(),
        overrides: Dict[str, Any] = SimpleFrozenDict(),
    ) -> Language:
        verify_checksums(ensure_path(path))
        return Language.from_disk(self.nlp, path, exclude=exclude, overrides=overrides)


def file_checksums(path: Path) -> Dict[str, str]:
    """sha256 of every file under path, by relative POSIX path."""
    files = {f.relative_to(path).as_posix(): f for f in sorted(path.rglob("*")) if f.is_file()}
    return {name: _sha256(f) for name, f in files.items() if name not in UNCHECKED}


def verify_checksums(path: Path) -> None:
    """Raise DamagedPipelineError naming the first file that is missing or changed."""
    sums_path = path / CHECKSUMS
    if not sums_path.is_file():
        raise DamagedPipelineError(f"{sums_path}: missing; the pipeline directory is incomplete or was not saved by this pipeline")
    try:
        expected = srsly.read_json(sums_path)
    except ValueError as e:
        raise DamagedPipelineError(f"{sums_path}: not valid JSON ({e})") from None
    for name, digest in expected.items():
        file = path / name
        if not file.is_file():
            raise DamagedPipelineError(f"{file}: missing from the pipeline directory")
        if _sha256(file) != digest:
            raise DamagedPipelineError(f"{file}: sha256 differs from {CHECKSUMS}; the file is truncated or was modified")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
