"""Checksums that make a damaged file an error instead of a wrong prediction.

Two mechanisms:

- **sealed files** (Lightning checkpoints, ``final.pt`` run markers, graph-cache files): the
  payload followed by a 40-byte trailer, ``b"HOPNETSH"`` + sha256(payload). ``torch.load`` ignores
  trailing bytes, so a sealed ``.pt``/``.ckpt`` file still opens with plain PyTorch; hopnet's
  readers check the trailer first, so a truncated or altered file is refused.
- **checksum manifests** for model folders: ``metadata.json`` lists the sha256 of every payload
  file (:func:`file_checksums`, :func:`verify_checksums`).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, Iterable

from hopnet.infra.errors import ModelFileError

SEAL_MAGIC = b"HOPNETSH"
SEAL_SIZE = len(SEAL_MAGIC) + 32


class CorruptFileError(ModelFileError):
    """A sealed file or a model payload whose bytes do not match its recorded sha256."""


def seal(payload: bytes) -> bytes:
    """``payload`` + trailer (magic + sha256 of the payload)."""
    return payload + SEAL_MAGIC + hashlib.sha256(payload).digest()


def unseal(data: bytes, what: str) -> bytes:
    """The payload of sealed ``data``; :class:`CorruptFileError` naming ``what`` when the trailer
    is missing (truncated or not written by hopnet) or the sha256 does not match."""
    if len(data) < SEAL_SIZE or data[-SEAL_SIZE:-32] != SEAL_MAGIC:
        raise CorruptFileError(f"{what} is truncated or was not written by hopnet (no checksum trailer)")
    payload, digest = data[:-SEAL_SIZE], data[-32:]
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptFileError(f"{what} is corrupt (sha256 mismatch)")
    return payload


def write_sealed(path: str | os.PathLike, payload: bytes) -> None:
    """Atomically write sealed ``payload`` to ``path`` (temporary file, fsync, rename)."""
    from hopnet.infra.provenance import atomic_write_bytes

    atomic_write_bytes(path, seal(payload))


def read_sealed(path: str | os.PathLike, what: str = "file") -> bytes:
    """The checked payload of a sealed file (FileNotFoundError when absent)."""
    path = Path(path)
    return unseal(path.read_bytes(), f"{what} {path}")


def save_torch_sealed(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` of ``obj`` into a sealed file, atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_sealed(path, buf.getvalue())


def load_torch_sealed(path: str | os.PathLike, what: str = "file", weights_only: bool = True) -> Any:
    """``torch.load`` (CPU) of a sealed file after its checksum is verified. Damage is a
    :class:`CorruptFileError`; an absent file is ``FileNotFoundError``."""
    import torch

    payload = read_sealed(path, what)
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # checksum fine but not a torch file: written by something else
        raise CorruptFileError(f"{what} {path} is not a readable torch file ({type(exc).__name__})") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_checksums(folder: str | os.PathLike, names: Iterable[str]) -> dict[str, str]:
    """{name: sha256} of files ``names`` inside ``folder``."""
    folder = Path(folder)
    return {name: sha256_file(folder / name) for name in sorted(names)}


def verify_checksums(folder: str | os.PathLike, checksums: dict[str, str]) -> None:
    """Check every file listed in ``checksums``; :class:`CorruptFileError` (or ModelFileError for a
    missing file) naming the first one that does not match."""
    folder = Path(folder)
    if not isinstance(checksums, dict):
        raise ModelFileError(f"{folder}: metadata.json 'checksums' must map file names to sha256")
    for name, want in sorted(checksums.items()):
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ModelFileError(f"{folder}: metadata.json lists a file outside the folder ({name!r})")
        if not path.is_file():
            raise ModelFileError(f"{folder}: missing {name} (listed in metadata.json)")
        if sha256_file(path) != want:
            raise CorruptFileError(f"{folder}: {name} is corrupt or was changed after saving "
                                   "(sha256 differs from metadata.json)")
