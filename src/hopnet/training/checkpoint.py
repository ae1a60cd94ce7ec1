"""Lightning checkpoints as sealed files (:mod:`hopnet.infra.integrity`): written atomically with a
sha256 trailer, checked when read, so a resume never starts from a truncated or damaged file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from hopnet.infra.integrity import CorruptFileError, load_torch_sealed, save_torch_sealed


class SealedCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoints, stored with :func:`hopnet.infra.integrity.save_torch_sealed`
    (temporary file, fsync, rename; sha256 trailer) and verified by :func:`read_checkpoint`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_torch_sealed(checkpoint, path)

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint written by :class:`SealedCheckpointIO` (CPU tensors, checksum verified); a
    damaged one is a :class:`hopnet.infra.integrity.CorruptFileError` saying how to recover."""
    path = Path(path)
    try:
        return load_torch_sealed(path, "checkpoint", weights_only=False)
    except CorruptFileError as exc:
        raise CorruptFileError(f"{exc}; delete it to restart this run from its beginning") from None
