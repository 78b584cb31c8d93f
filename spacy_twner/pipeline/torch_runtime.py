"""spacy_twner.TorchRuntime.v1: the transformer in torch, float32 (trainable)
or with int8 Linear layers (CPU inference).

A runtime is what `spacy_twner.TransformerModel.v2` calls to turn saved
weights into the module its forward pass runs (`load`, `prepare`) and back
into bytes (`dump`). This one saves safetensors: float tensors as they are,
an int8 Linear as its int8 values, scale and zero point, so an int8 pipeline
reloads bit for bit.

Ships inside en_twner: imports nothing from spacy_twner.
"""
import warnings
from typing import Any, Callable, Dict, List

from spacy.util import registry
from thinc.api import get_torch_default_device

# A quantized Linear's weight is saved as three tensors: int8 values, scale, zero point.
INT8, SCALE, ZERO_POINT = ".weight.int8", ".weight.scale", ".weight.zero_point"


@registry.misc("spacy_twner.TorchRuntime.v1")
def torch_runtime(quantize: bool = False) -> "TorchRuntime":
    """quantize: int8 Linear layers, torch dynamic quantization (one scale per tensor)."""
    return TorchRuntime(quantize)


class TorchRuntime:
    name = "torch"

    def __init__(self, quantize: bool = False) -> None:
        self.quantize = quantize

    def prepare(self, transformer):
        """A freshly loaded pretrained transformer, ready to run (and train, if float)."""
        if self.quantize:
            return _quantize(transformer)
        return transformer.to(get_torch_default_device())

    def dump(self, transformer) -> Dict[str, Any]:
        from safetensors.torch import save

        return {"format": "safetensors", "state": save(_tensors(transformer))}

    def load(self, msg: Dict[str, Any], config, build: Callable[[], Any]):
        from safetensors.torch import load

        if msg["format"] != "safetensors":
            raise ValueError(
                f"this pipeline's transformer is saved as {msg['format']}, not torch weights: "
                "load it with runtime = spacy_twner.OnnxRuntime.v1"
            )
        transformer = build()
        state = load(msg["state"])
        int8 = [key[: -len(INT8)] for key in state if key.endswith(INT8)]
        if self.quantize or int8:
            return _load_quantized(transformer, state, int8)
        transformer.load_state_dict(state)
        return transformer.to(get_torch_default_device())


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


def _quantize(transformer):
    import torch

    if get_torch_default_device().type != "cpu":
        raise ValueError("an int8-quantized transformer runs on the CPU only; load the pipeline without a GPU")
    with warnings.catch_warnings():
        # torch marks torch.ao quantization deprecated in favour of torchao; it still works in 2.13.
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        return torch.ao.quantization.quantize_dynamic(transformer.eval(), {torch.nn.Linear}, dtype=torch.qint8)


def _load_quantized(transformer, state: Dict[str, Any], int8: List[str]):
    """The transformer with int8 Linear layers: quantized now from float weights,
    or rebuilt exactly from saved int8 ones."""
    import torch

    saved = {name: [state.pop(name + key) for key in (INT8, SCALE, ZERO_POINT, ".bias")] for name in int8}
    missing, unexpected = transformer.load_state_dict(state, strict=False)
    if set(missing) != {f"{name}.{p}" for name in saved for p in ("weight", "bias")} or unexpected:
        raise ValueError(f"transformer weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    transformer = _quantize(transformer)
    modules = dict(transformer.named_modules())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        for name, (values, scale, zero, bias) in saved.items():
            weight = torch._make_per_tensor_quantized_tensor(values, float(scale), int(zero))
            modules[name].set_weight_bias(weight, bias)
    return transformer.eval()
