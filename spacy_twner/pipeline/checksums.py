"""spacy_twner.checksummed_files.v1: refuse damaged or altered pipeline files.

As an `[nlp] after_creation` callback it makes `nlp.to_disk` write the sha256
of every file it saved and `nlp.from_disk` check them before reading
anything, so a truncated or tampered pipeline directory fails with the
file's name instead of loading wrong weights or failing deep inside a
decoder.

Ships inside en_twner: imports nothing from spacy_twner.
"""
import hashlib
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Union

import srsly
from spacy.language import Language
from spacy.util import SimpleFrozenDict, SimpleFrozenList, ensure_path, registry

CHECKSUMS = "sha256sums.json"
# `spacy package` rewrites meta.json (scores, requirements): not a model file.
UNCHECKED = {CHECKSUMS, "meta.json"}


class DamagedPipelineError(ValueError):
    """A pipeline file is missing, truncated or not what was saved."""


@registry.callbacks("spacy_twner.checksummed_files.v1")
def make_checksummed_files() -> Callable[[Language], Language]:
    return add_checksums


def add_checksums(nlp: Language) -> Language:
    nlp.to_disk = _ChecksummedToDisk(nlp)
    nlp.from_disk = _VerifiedFromDisk(nlp)
    return nlp


class _ChecksummedToDisk:
    """Language.to_disk, then the sha256 of each file saved. A class, not a closure,
    so that the Language still pickles for nlp.pipe(n_process=...)."""

    def __init__(self, nlp: Language) -> None:
        self.nlp = nlp

    def __call__(self, path: Union[str, Path], *, exclude: Iterable[str] = SimpleFrozenList()) -> None:
        path = ensure_path(path)
        if not exclude:
            remove_saved_files(path)
        Language.to_disk(self.nlp, path, exclude=exclude)
        srsly.write_json(path / CHECKSUMS, file_checksums(path))


class _VerifiedFromDisk:
    """Language.from_disk after checking every file against the saved checksums."""

    def __init__(self, nlp: Language) -> None:
        self.nlp = nlp

    def __call__(
        self,
        path: Union[str, Path],
        *,
        exclude: Iterable[str] = SimpleFrozenList(),
        overrides: Dict[str, Any] = SimpleFrozenDict(),
    ) -> Language:
        verify_checksums(ensure_path(path))
        return Language.from_disk(self.nlp, path, exclude=exclude, overrides=overrides)


def file_checksums(path: Path) -> Dict[str, str]:
    """sha256 of every file under path, by relative POSIX path."""
    files = {f.relative_to(path).as_posix(): f for f in sorted(path.rglob("*")) if f.is_file()}
    return {name: sha256sum(f) for name, f in files.items() if name not in UNCHECKED}


def remove_saved_files(path: Path) -> None:
    """Delete the files an earlier save into path listed, and only those: a file
    this save no longer writes would otherwise stay, be checksummed and ship."""
    sums_path = path / CHECKSUMS
    try:
        names = srsly.read_json(sums_path) if sums_path.is_file() else {}
    except ValueError:
        return
    root = path.resolve()
    for name in names:
        file = (path / name).resolve()
        if root in file.parents and file.is_file():
            file.unlink()


def verify_checksums(path: Path) -> None:
    """Raise DamagedPipelineError naming the first file that is missing or changed."""
    sums_path = path / CHECKSUMS
    if not sums_path.is_file():
        raise DamagedPipelineError(f"{sums_path}: missing; the pipeline directory is incomplete or was not saved by this pipeline")
    try:
        expected = srsly.read_json(sums_path)
    except ValueError as e:
        raise DamagedPipelineError(f"{sums_path}: not valid JSON ({e})") from None
    for name, digest in expected.items():
        file = path / name
        if not file.is_file():
            raise DamagedPipelineError(f"{file}: missing from the pipeline directory")
        if sha256sum(file) != digest:
            raise DamagedPipelineError(f"{file}: sha256 differs from {CHECKSUMS}; the file is truncated or was modified")


def sha256sum(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
