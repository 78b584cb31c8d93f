"""The config of an ensemble pipeline: trained members, each transformer and
NER sourced under the member's name and followed by its twner_member
component, then twner_vote (spacy_twner/pipeline/voting.py).

    twner ensemble-config configs/ensemble-generated.cfg --member minilm=training/wnut16-trf/model-int8 \\
        --member e5=training/wnut16-xx/model-int8 --threshold 0.2
    spacy assemble configs/ensemble-generated.cfg training/ensemble/model-final
"""
from typing import Dict, Optional

from thinc.api import Config

from ..training.own_config import base_pipeline, pipeline_dir


def ensemble_config(members: Dict[str, str], *, threshold: float = 0.2, weights: Optional[Dict[str, float]] = None,
                    lang: str = "en") -> Config:  # fmt: skip
    """Members name -> pipeline (a directory or package with transformer and ner)."""
    if len(members) < 2:
        raise ValueError(f"an ensemble needs two members or more, got {len(members)}")
    for name in members:
        if not name.isidentifier() or name in ("vote", "transformer", "ner"):
            raise ValueError(f"member name {name!r}: a word such as minilm or e5 (it names components and doc.spans keys)")
    pipeline, components = [], {}
    for name, source in members.items():
        directory = str(pipeline_dir(source))
        base_pipeline(source, trainable=False)  # a transformer and an ner, or an error that says so
        components[f"transformer_{name}"] = {"source": directory, "component": "transformer"}
        components[f"ner_{name}"] = {"source": directory, "component": "ner"}
        components[name] = {"factory": "twner_member"}
        pipeline += [f"transformer_{name}", f"ner_{name}", name]
    components["vote"] = {"factory": "twner_vote", "members": list(members), "threshold": threshold, "weights": dict(weights or {})}
    pipeline.append("vote")
    return Config({
        "nlp": {"lang": lang, "pipeline": pipeline, "after_creation": {"@callbacks": "spacy_twner.checksummed_files.v1"}},
        "components": components,
    })  # fmt: skip
