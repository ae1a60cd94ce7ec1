"""Output heads on pooled features (the models that put them on an encoder live in :mod:`hopnet.models`)."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from hopnet.infra.errors import HopnetError


class LinearHead(nn.Module):
    """One linear map [B, in_features] -> [B, n_outputs] (upstream ALIGNN's ``fc``)."""

    def __init__(self, in_features: int, n_outputs: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, n_outputs)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.linear(pooled)


class MLPHead(nn.Module):
    """``n_hidden_layers`` x (Linear -> SiLU) then a Linear to ``n_outputs``."""

    def __init__(self, in_features: int, hidden_features: int, n_outputs: int = 1,
                 n_hidden_layers: int = 1) -> None:
        super().__init__()
        if n_hidden_layers < 1:
            raise HopnetError(f"MLPHead needs n_hidden_layers >= 1, got {n_hidden_layers}")
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(n_hidden_layers):
            layers += [nn.Linear(width, hidden_features), nn.SiLU()]
            width = hidden_features
        layers.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.net(pooled)


class MultiHead(nn.Module):
    """One scalar head per named property (multi-property pre-training).

    ``forward`` returns ``{name: [B]}``; ``hidden_features=None`` gives linear heads, otherwise
    one-hidden-layer MLP heads.
    """

    def __init__(self, in_features: int, properties: Sequence[str],
                 hidden_features: int | None = None) -> None:
        super().__init__()
        names = list(properties)
        if not names or len(set(names)) != len(names):
            raise HopnetError(f"MultiHead needs distinct property names, got {names}")
        self.properties = names
        self.heads = nn.ModuleDict({
            name: LinearHead(in_features) if hidden_features is None
            else MLPHead(in_features, hidden_features)
            for name in names
        })

    def forward(self, pooled: Tensor) -> dict[str, Tensor]:
        return {name: head(pooled).squeeze(-1) for name, head in self.heads.items()}
