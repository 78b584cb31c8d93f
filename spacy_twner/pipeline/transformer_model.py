"""spacy_twner.TransformerModel.v2: spacy-transformers' transformer model with
a runtime chosen in the config, weights that never go through pickle, and
token types computed from the text.

- `runtime`: a registered object (`spacy_twner.TorchRuntime.v1`,
  `spacy_twner.OnnxRuntime.v1`, ...) meeting the `Runtime` protocol below:
  it turns saved weights into the module the forward pass calls, and back.
  The shim stores what it returns: safetensors or an ONNX graph, never a
  torch pickle.
- `token_types`: a registered callable (e.g. `spacy_twner.case_token_types.v1`)
  giving each wordpiece a type id from the text it came from. An uncased
  tokenizer lowercases before the model sees anything, so this is how the
  case of a word reaches the transformer. The token-type embedding grows to
  one row per type on initialization, every new row a copy of row 0: the
  model starts out computing exactly what it did without types.

Ships inside en_twner (`spacy package --code`): it imports nothing from
spacy_twner nor from the other files of this folder; the config ties them.
"""
import contextlib
import copy
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, runtime_checkable

import srsly
from spacy.tokens import Doc, Span
from spacy.util import SimpleFrozenDict, make_tempdir, registry
from spacy.vocab import Vocab
from spacy_transformers.align import get_alignment, get_alignment_via_offset_mapping
from spacy_transformers.data_classes import FullTransformerBatch, HFObjects, WordpieceBatch
from spacy_transformers.layers.hf_shim import HFShim
from spacy_transformers.layers.transformer_model import TransformerModel as HFTransformerModel
from spacy_transformers.layers.transformer_model import huggingface_from_pretrained, huggingface_tokenize
from spacy_transformers.truncate import truncate_oversize_splits
from thinc.api import Model, xp2torch


class WeightsFormatError(ValueError):
    """Saved transformer weights that this model refuses to read."""


@runtime_checkable
class Runtime(Protocol):
    """What a runtime does for the transformer: its weights from a freshly
    loaded backbone (`prepare`), to bytes (`dump`) and back (`load`)."""

    name: str

    def prepare(self, transformer: Any) -> Any:
        """A pretrained Hugging Face model, as the module the forward pass calls."""

    def dump(self, transformer: Any) -> Dict[str, Any]:
        """{"format": "safetensors" | "onnx", "state": bytes, ...}: what the pipeline saves."""

    def load(self, msg: Dict[str, Any], config: Any, build: Callable[[], Any]) -> Any:
        """The module back from dump's message; build() makes an empty model of config."""


def transformer_module(nlp: Any, name: str = "transformer") -> Any:
    """The module a pipeline's transformer component runs (torch, or the ONNX
    Runtime wrapper): the one way in for conversion, calibration and tests."""
    return nlp.get_pipe(name).model.layers[0].shims[0]._model


class TransformerModel(HFTransformerModel):
    """spacy-transformers.TransformerModel.v3 plus `runtime` and `token_types` (see the module)."""

    def __init__(
        self,
        name: str,
        get_spans: Callable,
        runtime: Runtime,
        token_types: Optional[Callable] = None,
        tokenizer_config: dict = {},
        transformer_config: dict = {},
        mixed_precision: bool = False,
        grad_scaler_config: dict = {},
    ) -> None:
        # dict(): the config gives frozen dicts, which spacy-transformers updates in place
        super().__init__(name, get_spans, dict(tokenizer_config), dict(transformer_config), mixed_precision, dict(grad_scaler_config))
        self._func, self.init = forward, init
        self.attrs["runtime"], self.attrs["token_types"] = runtime, token_types
        wrapper = self.layers[0]
        wrapper.shims[0] = RuntimeHFShim(
            wrapper.shims[0]._hfmodel, runtime, mixed_precision=mixed_precision, grad_scaler_config=grad_scaler_config
        )

    def copy(self) -> "TransformerModel":
        """A deep copy that keeps this class's forward pass, runtime and token types."""
        copied = TransformerModel(self.name, self.attrs["get_spans"], self.attrs["runtime"], self.attrs["token_types"])
        copied.layers[0] = copy.deepcopy(self.layers[0])
        copied.attrs["has_transformer"] = self.attrs["has_transformer"]
        if self.has_dim("nO"):
            copied.set_dim("nO", self.get_dim("nO"))
        return copied


# Registered as the class itself: its __init__ is the config's signature.
create_transformer_model = registry.architectures("spacy_twner.TransformerModel.v2")(TransformerModel)


def tokenize(model: TransformerModel, spans: List[Span]) -> Tuple[WordpieceBatch, Any]:
    """Wordpieces of the spans, with their token types, aligned to spaCy's tokens."""
    tokenizer = model.tokenizer
    encoding = huggingface_tokenize(tokenizer, [span.text for span in spans])
    wordpieces = WordpieceBatch.from_batch_encoding(encoding)
    token_types = model.attrs["token_types"]
    if "offset_mapping" in encoding:
        offsets = encoding["offset_mapping"]
        align = get_alignment_via_offset_mapping(spans, offsets)
        if token_types is not None:
            wordpieces.token_type_ids = token_types(spans, offsets)
    elif token_types is not None:
        raise ValueError(f"token_types need a fast tokenizer (character offsets); {type(tokenizer).__name__} has none")
    else:
        align = get_alignment(spans, wordpieces.strings, tokenizer.all_special_tokens)
    return truncate_oversize_splits(wordpieces, align, tokenizer.model_max_length)


def forward(model: TransformerModel, docs: List[Doc], is_train: bool) -> Tuple[FullTransformerBatch, Callable]:
    nested_spans = model.attrs["get_spans"](docs)
    wordpieces, align = tokenize(model, [span for doc_spans in nested_spans for span in doc_spans])
    model_output, backprop_tensors = model.layers[0](wordpieces, is_train)
    output = FullTransformerBatch(spans=nested_spans, wordpieces=wordpieces, model_output=model_output, align=align)

    def backprop(d_output: FullTransformerBatch) -> List[Doc]:
        backprop_tensors(d_output.model_output)
        return docs

    return output, backprop


def init(model: TransformerModel, X: Optional[List[Doc]] = None, Y=None) -> None:
    """Load the pretrained backbone (growing its token types if the config has
    them), hand it to the runtime, and infer the output width."""
    if model.attrs["has_transformer"]:
        return
    hf_model = huggingface_from_pretrained(model.attrs["name"], model._init_tokenizer_config, model._init_transformer_config)
    token_types = model.attrs["token_types"]
    if token_types is not None:
        grow_token_types(hf_model.transformer, token_types.n_types, model.attrs["name"])
    hf_model.transformer = model.attrs["runtime"].prepare(hf_model.transformer)
    model.attrs["set_transformer"](model, hf_model)
    docs = X or [Doc(Vocab(), words=["hello", "world"])]
    wordpieces, _ = tokenize(model, [span for doc_spans in model.attrs["get_spans"](docs) for span in doc_spans])
    model.layers[0].initialize(X=wordpieces)
    model.set_dim("nO", model.layers[0].predict(wordpieces).last_hidden_state.shape[-1])


def grow_token_types(transformer, n_types: int, name: str) -> None:
    """Give the token-type embedding n_types rows, each new one a copy of row 0."""
    import torch

    embeddings = getattr(transformer, "embeddings", None)
    table = getattr(embeddings, "token_type_embeddings", None)
    if table is None:
        raise ValueError(f"token_types: backbone {name!r} has no token-type embedding; set token_types = null")
    if table.num_embeddings >= n_types:  # grown before, e.g. by `twner pretrain`
        return
    grown = torch.nn.Embedding(n_types, table.embedding_dim).to(table.weight.device)
    with torch.no_grad():
        grown.weight.copy_(table.weight[0].expand(n_types, -1))
    embeddings.token_type_embeddings = grown
    transformer.config.type_vocab_size = n_types
    if hasattr(embeddings, "token_type_ids"):  # BERT's default ids buffer: zeros, still valid
        embeddings.token_type_ids.zero_()


class RuntimeHFShim(HFShim):
    """HFShim whose weights go through the configured runtime and are saved as
    safetensors or an ONNX graph; a torch pickle is refused, never unpickled."""

    def __init__(self, hf_model: HFObjects, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(hf_model, **kwargs)
        self.runtime = runtime

    @contextlib.contextmanager
    def use_params(self, params: Dict[Any, Any]):
        """Swap in the optimizer's averaged weights (`use_averages = true`).

        thinc's PyTorchShim looks them up under "pytorch_<id>_<name>" while its
        finish_update stores them under (id, name), so without this spaCy
        evaluates and saves averaged heads on top of the raw transformer."""
        import torch

        swaps = [(p, params[(self.id, n)]) for n, p in self._model.named_parameters() if (self.id, n) in params]
        backup = [p.detach().clone() for p, _ in swaps]
        with torch.no_grad():
            for p, averaged in swaps:
                p.copy_(xp2torch(averaged, device=p.device).reshape(p.shape))
        try:
            yield
        finally:
            with torch.no_grad():
                for (p, _), saved in zip(swaps, backup):
                    p.copy_(saved)

    def to_bytes(self) -> bytes:
        hf_model = self._hfmodel
        if hf_model.transformer is None:  # never initialized: only the settings
            msg = {"config": {}, "state": b"", "tokenizer": {},
                   "_init_tokenizer_config": hf_model._init_tokenizer_config,
                   "_init_transformer_config": hf_model._init_transformer_config}  # fmt: skip
            return srsly.msgpack_dumps(msg)
        tokenizer = hf_model.tokenizer
        with make_tempdir() as temp_dir:
            if hasattr(tokenizer, "vocab_file"):
                vocab_file = temp_dir / tokenizer.vocab_files_names["vocab_file"]
                vocab_file.write_bytes(hf_model.vocab_file_contents)
                tokenizer.vocab_file = str(vocab_file)
            tokenizer.save_pretrained(str(temp_dir))
            files = {f.name: f.read_bytes() for f in temp_dir.glob("**/*") if f.is_file()}
        msg = {
            "config": self._model.config.to_dict(),
            "tokenizer": {**files, "kwargs": {"use_fast": tokenizer.is_fast}},
            "_init_tokenizer_config": {},
            "_init_transformer_config": {},
            **self.runtime.dump(self._model),  # "format", "state" and what else the runtime keeps
        }
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes) -> "RuntimeHFShim":
        msg = srsly.msgpack_loads(bytes_data)
        if not msg["config"]:
            self._hfmodel = HFObjects(None, None, None, msg["_init_tokenizer_config"], msg["_init_transformer_config"])
            return self
        if msg.get("format") not in ("safetensors", "onnx"):
            raise WeightsFormatError(
                "transformer weights are not in safetensors format; refusing to unpickle them "
                "(re-save the pipeline with spacy_twner.TransformerModel.v2)"
            )
        with make_tempdir() as temp_dir:
            srsly.write_json(temp_dir / "config.json", msg["config"])
            config = self.config_cls.from_pretrained(temp_dir / "config.json")
            tok_files: Dict[str, Any] = dict(msg["tokenizer"])
            tok_kwargs = tok_files.pop("kwargs", {})
            for file_name, data in tok_files.items():
                (temp_dir / file_name).write_bytes(data)
            tokenizer = self.tokenizer_cls.from_pretrained(str(temp_dir), **tok_kwargs)
            vocab_file = temp_dir / getattr(tokenizer, "vocab_files_names", {}).get("vocab_file", "-")
            vocab_contents = vocab_file.read_bytes() if vocab_file.is_file() else None
        transformer = self.runtime.load(msg, config, lambda: self.model_cls.from_config(config))
        self._hfmodel = HFObjects(tokenizer, transformer, vocab_contents, SimpleFrozenDict(), SimpleFrozenDict())
        self._model = transformer
        return self
