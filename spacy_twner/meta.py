"""The meta.json that `spacy package` puts into en_twner."""
from typing import Any, Dict, Iterable, Optional

# What `spacy evaluate` reports that belongs in a package's meta.
SCORE_KEYS = ("ents_p", "ents_r", "ents_f", "ents_per_type", "speed")


def build_meta(
    model_meta: Dict[str, Any],
    test_metrics: Dict[str, Any],
    template: Dict[str, Any],
    *,
    requirements: Iterable[str] = (),
    name: Optional[str] = None,
    version: Optional[str] = None,
) -> Dict[str, Any]:
    """Template fields, test-set scores and the packaged code's requirements.

    `performance` holds the test scores users compare with the literature; the
    dev scores that chose the checkpoint stay under `performance_dev`.
    """
    meta = dict(template)
    if name:
        meta["name"] = name
    if version:
        meta["version"] = version
    meta["performance"] = {k: test_metrics[k] for k in SCORE_KEYS if k in test_metrics}
    meta["performance_dev"] = model_meta.get("performance", {})
    meta["requirements"] = sorted(set(meta.get("requirements", [])) | set(requirements))
    return meta
