"""Typed configuration of the ALIGNN encoder."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from hopnet.infra.configs import check_keys
from hopnet.infra.errors import HopnetError

Pooling = Literal["mean", "attention"]
Implementation = Literal["fused", "reference"]

_POOLINGS = ("mean", "attention")
_IMPLEMENTATIONS = ("fused", "reference")


class EncoderConfigError(HopnetError, ValueError):
    """An encoder configuration holds an invalid value or an unknown key."""


@dataclass(frozen=True)
class EncoderConfig:
    """Hyper-parameters of :class:`hopnet.nn.AlignnEncoder`.

    The defaults are the published ALIGNN model (Choudhary & DeCost 2021).

    * ``atom_input_features``: width of ``x`` (92 CGCNN features, 93 with the mobile-ion flag).
    * ``edge_input_features``: Gaussian basis functions on bond lengths in ``[0, rbf_cutoff]`` Å.
    * ``triplet_input_features``: Gaussian basis functions on bond-angle cosines in ``[-1, 1]``.
    * ``pooling``: ``"mean"`` over atoms, or ``"attention"`` (``attention_heads`` softmax gates).
    * ``checkpointing``: recompute each ALIGNN layer in the backward pass (less memory, ~1/3
      more compute).
    * ``implementation``: ``"fused"`` (fast, low-memory kernels) or ``"reference"`` (plain autograd,
      the upstream formulation); both compute the same function with the same parameters.
    """

    atom_input_features: int = 92
    alignn_layers: int = 4
    gcn_layers: int = 4
    hidden_features: int = 256
    embedding_features: int = 64
    edge_input_features: int = 80
    triplet_input_features: int = 40
    rbf_cutoff: float = 8.0
    pooling: Pooling = "mean"
    attention_heads: int = 4
    checkpointing: bool = False
    implementation: Implementation = "fused"

    def __post_init__(self) -> None:
        positive = (
            "atom_input_features", "hidden_features", "embedding_features",
            "edge_input_features", "triplet_input_features", "attention_heads",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EncoderConfigError(f"EncoderConfig.{name} must be a positive int, got {value!r}")
        for name in ("alignn_layers", "gcn_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EncoderConfigError(f"EncoderConfig.{name} must be an int >= 0, got {value!r}")
        if self.edge_input_features < 2 or self.triplet_input_features < 2:
            raise EncoderConfigError("EncoderConfig RBF expansions need at least 2 bins")
        if isinstance(self.rbf_cutoff, bool) or not isinstance(self.rbf_cutoff, (int, float)) \
                or not self.rbf_cutoff > 0:
            raise EncoderConfigError(f"EncoderConfig.rbf_cutoff must be > 0 Å, got {self.rbf_cutoff!r}")
        if self.pooling not in _POOLINGS:
            raise EncoderConfigError(f"EncoderConfig.pooling must be one of {_POOLINGS}, got {self.pooling!r}")
        if self.implementation not in _IMPLEMENTATIONS:
            raise EncoderConfigError(
                f"EncoderConfig.implementation must be one of {_IMPLEMENTATIONS}, got {self.implementation!r}"
            )
        if not isinstance(self.checkpointing, bool):
            raise EncoderConfigError(f"EncoderConfig.checkpointing must be a bool, got {self.checkpointing!r}")

    @classmethod
    def paper(cls, **overrides: Any) -> "EncoderConfig":
        """The published ALIGNN size (about 4.03 M parameters with a 1-output head)."""
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides: Any) -> "EncoderConfig":
        """A small model for tests and CPU runs (1 ALIGNN + 1 GCN layer, 32 hidden features)."""
        base: dict[str, Any] = dict(
            alignn_layers=1, gcn_layers=1, hidden_features=32, embedding_features=16,
            edge_input_features=40, triplet_input_features=20, attention_heads=2,
        )
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; :meth:`from_dict` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncoderConfig":
        """Build a config from :meth:`to_dict` output; unknown keys are an error."""
        return cls(**check_keys(cls, data, "encoder", EncoderConfigError))
