"""Package a trained pipeline as a wheel that needs nothing from spacy_twner."""
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import srsly
from spacy.cli.package import package as spacy_package
from spacy.util import split_requirement

# The packaged code is copied into the wheel (`--code`), so the plugin itself
# is no requirement; spaCy adds it only because it also finds our entry points.
OWN_DISTRIBUTION = "spacy-twner"


def package_pipeline(
    model_path: Path, output_dir: Path, meta: Dict[str, Any], code_paths: List[Path]
) -> Path:
    """Run `spacy package`, drop spacy-twner from the requirements, build the wheel.

    The package folder is rebuilt from scratch: `spacy package --force` only
    replaces its inner folder, and setuptools would copy a previous build's
    leftovers (another pipeline's weights) from build/ into the new wheel.
    """
    name = f"{meta['lang']}_{meta['name']}"
    main_path = Path(output_dir) / f"{name}-{meta['version']}"
    shutil.rmtree(main_path, ignore_errors=True)
    meta_path = Path(model_path).parent / "package-meta.json"
    srsly.write_json(meta_path, meta)
    spacy_package(
        Path(model_path),
        Path(output_dir),
        meta_path=meta_path,
        code_paths=[Path(p) for p in code_paths],
        create_sdist=False,
        create_wheel=False,
        require_parent=True,
        force=True,
        silent=False,
    )
    packaged = srsly.read_json(main_path / "meta.json")
    packaged["requirements"] = [
        req for req in packaged.get("requirements", [])
        if split_requirement(req)[0] != OWN_DISTRIBUTION
    ]  # fmt: skip
    srsly.write_json(main_path / "meta.json", packaged)
    subprocess.run([sys.executable, "-m", "build", "--wheel", str(main_path)], check=True)
    return main_path / "dist" / f"{name}-{meta['version']}-py3-none-any.whl"
