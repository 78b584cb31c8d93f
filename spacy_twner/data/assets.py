"""The assets declared in project.yml: their SHA-256 sums, and where to get
them when no local mirror is there."""
from pathlib import Path
from typing import List, Sequence

import srsly

from ..pipeline.checksums import sha256sum


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


# project.yml variable -> the folder of the local mirror (../shared/data) that holds its files
MIRROR_FOLDERS = {
    "wnut16_source": "wnut16",
    "wnut17_source": "wnut17",
    "stsb_source": "stsb-multi-mt",
    "tweets_source": "tweets-unlabeled",
}
# the mirror names the unlabeled tweet files <name>.txt; upstream has no suffix
MIRROR_VARS = {"tweets_ext": ".txt"}


def mirror_vars(mirror: Path) -> dict:
    """The project variables that make `spacy project assets` copy from a local
    mirror instead of downloading (the Makefile passes the same)."""
    return {**{var: str(Path(mirror) / folder) for var, folder in MIRROR_FOLDERS.items()}, **MIRROR_VARS}
