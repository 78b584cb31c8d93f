"""SHA-256 checks of the assets declared in project.yml."""
import hashlib
from pathlib import Path
from typing import List, Sequence

import srsly


def sha256sum(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(project_dir: Path, folders: Sequence[str] = ()) -> List[str]:
    """Return one line per missing or altered asset (empty if all is well).

    Each asset in project.yml carries `sha256` beside weasel's MD5
    `checksum`: the SHA-256 sums are the ones the data's upstream lists.
    `folders` limits the check to assets under assets/FOLDER.
    """
    project = srsly.read_yaml(Path(project_dir) / "project.yml")
    problems = []
    for asset in project.get("assets", []):
        dest = Path(asset["dest"])
        if "sha256" not in asset or (folders and dest.parts[1] not in folders):
            continue
        path = Path(project_dir) / dest
        if not path.is_file():
            problems.append(f"{dest}: missing (run `spacy project assets`)")
        elif sha256sum(path) != asset["sha256"]:
            problems.append(f"{dest}: SHA-256 differs from project.yml")
    return problems
