"""Write outputs whole or not at all."""
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which would race with
# files other threads (Dask workers annotating) create at the same moment.
_UMASK = _read_umask()


@contextmanager
def open_atomic(path: Path, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """A file opened for writing that appears at path only when the block succeeds.

    It is written as a temporary file in the same directory and renamed at the
    end; an error or a crash mid-way leaves the old file (or none), never half
    of a new one, so downstream steps cannot pick up partial output.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: output directory {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide outputs from other users
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write data to path whole or not at all (see open_atomic)."""
    with open_atomic(path) as f:
        f.write(data)
