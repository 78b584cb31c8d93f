"""The config of an ensemble pipeline: trained members, each transformer and
NER sourced under the member's name and followed by its twner_member
component, then twner_vote (spacy_twner/pipeline/voting.py).

    twner ensemble-config configs/ensemble-generated.cfg --member minilm=training/wnut16-trf/model-int8 \\
        --member e5=training/wnut16-xx/model-int8 --threshold 0.2
    spacy assemble configs/ensemble-generated.cfg training/ensemble/model-final
"""
import shutil
from pathlib import Path
from typing import Dict, Optional

import srsly
from thinc.api import Config

from ..pipeline.checksums import CHECKSUMS, file_checksums
from ..training.own_config import base_pipeline


def in_language(directory: Path, lang: str, copy: Path) -> Path:
    """A copy of the pipeline at directory in another language: spaCy sources
    a component only from a pipeline of the ensemble's own language (E150),
    so a member of another (xx_twner in an English ensemble) is copied with
    only its declared language changed; its transformer and NER read the
    ensemble's tokens, as they read gold tokens in evaluation."""
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(directory, copy)
    config = Config().from_disk(copy / "config.cfg", interpolate=False)
    config["nlp"]["lang"] = lang
    config.to_disk(copy / "config.cfg")
    meta = srsly.read_json(copy / "meta.json")
    srsly.write_json(copy / "meta.json", {**meta, "lang": lang})
    if (copy / CHECKSUMS).is_file():  # the two edits are this copy's own: its sums say so
        srsly.write_json(copy / CHECKSUMS, file_checksums(copy))
    return copy


def ensemble_config(members: Dict[str, str], *, threshold: float = 0.2, weights: Optional[Dict[str, float]] = None,
                    lang: str = "en", copies: Optional[Path] = None) -> Config:  # fmt: skip
    """Members name -> pipeline (a directory or package with transformer and
    ner); copies: where members of another language are copied in this one."""
    if len(members) < 2:
        raise ValueError(f"an ensemble needs two members or more, got {len(members)}")
    for name in members:
        if not name.isidentifier() or name in ("vote", "transformer", "ner"):
            raise ValueError(f"member name {name!r}: a word such as minilm or e5 (it names components and doc.spans keys)")
    pipeline, components = [], {}
    for name, source in members.items():
        base = base_pipeline(source, trainable=False)  # a transformer and an ner, or an error that says so
        directory = base["directory"]
        if base["lang"] != lang:
            if copies is None:
                raise ValueError(f"member {name} is a {base['lang']!r} pipeline in an {lang!r} ensemble: name a folder for its copy")
            directory = in_language(directory, lang, copies / name)
        components[f"transformer_{name}"] = {"source": str(directory), "component": "transformer"}
        components[f"ner_{name}"] = {"source": str(directory), "component": "ner"}
        components[name] = {"factory": "twner_member"}
        pipeline += [f"transformer_{name}", f"ner_{name}", name]
    components["vote"] = {"factory": "twner_vote", "members": list(members), "threshold": threshold, "weights": dict(weights or {})}
    pipeline.append("vote")
    return Config({
        "nlp": {"lang": lang, "pipeline": pipeline, "after_creation": {"@callbacks": "spacy_twner.checksummed_files.v1"}},
        "components": components,
    })  # fmt: skip
