"""Atomic file writes shared by the project's dataset types."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# Read once: os.umask can only be read by setting it, which would race with other threads.
UMASK = _read_umask()


def write_atomically(path: Path, write) -> None:
    """Call ``write(temporary_path)``, then rename the result onto ``path``.

    A reader never sees a half-written file; an interruption leaves at most a
    hidden temporary file, which is removed when the error is seen. The file
    gets the permissions a plain ``open`` would give (``0o666`` less the
    umask), not the owner-only mode of a temporary file, so colleagues can
    read the outputs.

    Raises
    ------
    PermissionError
        Naming the folder, when it cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    except PermissionError as error:
        raise PermissionError(f"cannot write {path}: the folder {path.parent} is not writable") from error
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~UMASK)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
