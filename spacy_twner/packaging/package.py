"""Package a pipeline as a wheel that needs nothing from spacy_twner.

Its code is the folder spacy_twner/pipeline/ (every module, derived, never a
hand-written list); its README is the model card; its LICENSE the project's.
"""
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import srsly
from spacy.cli.package import package as spacy_package
from spacy.util import split_requirement

from .meta import build_meta, model_card, overlay

# The packaged code is copied into the wheel, so the plugin itself is no
# requirement; spaCy adds it only because it also finds our entry points.
OWN_DISTRIBUTION = "spacy-twner"
PIPELINE_CODE = Path(__file__).parent.parent / "pipeline"


def project_license() -> Path:
    """The project's LICENSE: the source tree's, or, where spacy_twner is
    installed from a wheel, the copy in its metadata (dist-info/licenses/)."""
    source = Path(__file__).resolve().parent.parent.parent / "LICENSE"
    if source.is_file():
        return source
    dist = importlib.metadata.distribution(OWN_DISTRIBUTION)
    for file in dist.files or []:
        if file.name == "LICENSE" and ".dist-info" in str(file):
            return Path(dist.locate_file(file))
    raise FileNotFoundError(f"{OWN_DISTRIBUTION}'s LICENSE: neither beside the source nor in its installed metadata")


def pipeline_code() -> List[Path]:
    """The modules that ship inside the package: all of spacy_twner/pipeline/."""
    return sorted(p for p in PIPELINE_CODE.glob("*.py") if p.name != "__init__.py")


def package_pipeline(
    model_path: Path,
    metrics_path: Path,
    output_dir: Path,
    template_paths: Sequence[Path],
    card_path: Path,
    *,
    name: Optional[str] = None,
    version: Optional[str] = None,
    requirements: Iterable[str] = (),
    description: Optional[str] = None,
    data_report: Optional[Path] = None,
) -> Path:
    """Run `spacy package`, drop spacy-twner from the requirements, add the
    model card and licence, build the wheel.

    The package folder is rebuilt from scratch: `spacy package --force` only
    replaces its inner folder, and setuptools would copy a previous build's
    leftovers (another pipeline's weights) from build/ into the new wheel.
    """
    metrics = srsly.read_json(metrics_path)
    template = overlay(*(srsly.read_json(p) for p in template_paths))
    meta = build_meta(srsly.read_json(Path(model_path) / "meta.json"), metrics, template, requirements=requirements, name=name,
                      version=version, description=description, data_report=srsly.read_json(data_report) if data_report else None)  # fmt: skip
    full_name = f"{meta['lang']}_{meta['name']}"
    main_path = Path(output_dir) / f"{full_name}-{meta['version']}"
    shutil.rmtree(main_path, ignore_errors=True)
    meta_path = Path(output_dir) / f"{full_name}-meta.json"
    srsly.write_json(meta_path, meta)
    spacy_package(
        Path(model_path), Path(output_dir), meta_path=meta_path, code_paths=pipeline_code(),
        create_sdist=False, create_wheel=False, require_parent=True, force=True, silent=False,
    )  # fmt: skip
    meta_path.unlink()
    packaged = srsly.read_json(main_path / "meta.json")
    packaged["requirements"] = [r for r in packaged.get("requirements", []) if split_requirement(r)[0] != OWN_DISTRIBUTION]
    srsly.write_json(main_path / "meta.json", packaged)
    card = model_card(packaged, metrics, Path(card_path).read_text(encoding="utf-8"))
    for readme in (main_path / "README.md", main_path / full_name / f"{full_name}-{meta['version']}" / "README.md"):
        readme.write_text(card, encoding="utf-8")
    shutil.copy(project_license(), main_path / "LICENSE")
    subprocess.run([sys.executable, "-m", "build", "--wheel", str(main_path)], check=True)
    return main_path / "dist" / f"{full_name}-{meta['version']}-py3-none-any.whl"
