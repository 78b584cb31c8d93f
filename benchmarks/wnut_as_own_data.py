"""A WNUT CoNLL file as a user's annotation-tool export: Prodigy-style JSONL.

Each tweet becomes {"text", "tokens": [{"text", "start", "end", "id", "ws"}],
"spans": [{"start", "end", "label", "token_start", "token_end"}]}, the shape
Prodigy's ner.manual writes: the text is the tokens joined by single spaces,
so the own-data path (`twner prepare`) reads the same tokens and entities the
named-dataset route reads from the CoNLL file. Used to measure that path on
WNUT17 as if it were someone's own data (docs/own-data.md).

    python benchmarks/wnut_as_own_data.py assets/wnut17/train.conll own-data/wnut17-train.jsonl
"""
import argparse
import json
from pathlib import Path

from spacy_twner.data.conll import read_conll


def to_record(words, tags) -> dict:
    tokens, spans, start = [], [], 0
    for i, word in enumerate(words):
        tokens.append({"text": word, "start": start, "end": start + len(word), "id": i, "ws": i + 1 < len(words)})
        start += len(word) + 1
    text = " ".join(words)
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            end = i + 1
            while end < len(tags) and tags[end] == f"I-{tag[2:]}":
                end += 1
            spans.append({"start": tokens[i]["start"], "end": tokens[end - 1]["end"], "label": tag[2:], "token_start": i, "token_end": end - 1})
    return {"text": text, "tokens": tokens, "spans": spans, "answer": "accept"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("conll", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    sentences = read_conll(args.conll).sentences
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8") as f:
        for sentence in sentences:
            f.write(json.dumps(to_record(sentence.words, sentence.tags), ensure_ascii=False) + "\n")
    print(f"Wrote {len(sentences):,} tweets to {args.output}")


if __name__ == "__main__":
    main()
