"""The Lightning module of the barrier models: L1 loss on the standardised barrier, AdamW, a
per-batch learning-rate schedule, validation MAE / R² in eV."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from hopnet.models.barrier import BarrierModel
from hopnet.training.config import TrainingConfig

#: one-cycle: share of the steps spent warming up, start and end learning rate relative to ``lr``
ONECYCLE_WARMUP = 0.3
ONECYCLE_START = 1.0 / 25.0
ONECYCLE_END = 1e-4
COSINE_END = 1e-2


class LRSchedule:
    """Learning-rate factor per optimizer step (picklable, so it survives a checkpoint).

    ``"onecycle"``: cosine warm-up from ``lr/25`` to ``lr`` over the first 30% of the steps, then
    cosine annealing to ``lr * 1e-4``. ``"cosine"``: cosine decay from ``lr`` to ``lr/100``.
    Steps beyond ``total`` keep the final value (the number of size-capped batches per epoch can
    vary slightly with the shuffle)."""

    def __init__(self, kind: str, total: int) -> None:
        self.kind = kind
        self.total = max(int(total), 1)

    def __call__(self, step: int) -> float:
        s = min(max(step, 0), self.total)
        if self.kind == "cosine":
            return COSINE_END + (1 - COSINE_END) * 0.5 * (1 + math.cos(math.pi * s / self.total))
        warm = max(int(ONECYCLE_WARMUP * self.total), 1)
        if s < warm:
            return ONECYCLE_START + (1 - ONECYCLE_START) * 0.5 * (1 - math.cos(math.pi * s / warm))
        rest = max(self.total - warm, 1)
        return ONECYCLE_END + (1 - ONECYCLE_END) * 0.5 * (1 + math.cos(math.pi * (s - warm) / rest))


def adamw_with_schedule(params: Any, config: Any, total_steps: int) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer for a training config (``lr``,
    ``weight_decay``, ``schedule``): AdamW, its learning rate set per step by
    :class:`LRSchedule`. AdamW is torch's fused kernel where every parameter lives on a device
    that has it (CPU included: 5x faster than the per-tensor loop at the small size)."""
    params = list(params)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay,
                            fused=_fused_adamw_ok(params) or None)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, LRSchedule(config.schedule, total_steps))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _fused_adamw_ok(params: list[torch.Tensor]) -> bool:
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
        devices = set(_get_fused_kernels_supported_devices())
    except ImportError:                       # private helper moved: use the per-tensor loop
        return False
    return bool(params) and all(p.is_floating_point() and p.device.type in devices for p in params)


class BarrierLitModule(L.LightningModule):
    """Trains a :class:`~hopnet.models.barrier.BarrierModel` whose target scaling is already set."""

    def __init__(self, model: BarrierModel, config: TrainingConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self._val_pred: list[torch.Tensor] = []
        self._val_true: list[torch.Tensor] = []

    def _targets(self, batch: Any) -> torch.Tensor:
        n = batch.num_graphs // self.model.config.n_graphs
        return batch.y[:n]

    def forward(self, batch: Any) -> torch.Tensor:
        return self.model(batch)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        y = self._targets(batch)
        target = (y - self.model.target_mean) / self.model.target_std
        loss = F.l1_loss(self.model(batch), target)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=y.numel())
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._val_pred.append(self.model.predict_ev(batch).detach().double())
        self._val_true.append(self._targets(batch).double())

    def on_validation_epoch_end(self) -> None:
        if not self._val_pred:
            return
        p = torch.cat(self._val_pred)
        t = torch.cat(self._val_true)
        self._val_pred.clear()
        self._val_true.clear()
        mae = (p - t).abs().mean()
        ss_tot = ((t - t.mean()) ** 2).sum()
        r2 = 1 - ((p - t) ** 2).sum() / ss_tot if ss_tot > 0 else torch.tensor(float("nan"))
        self.log("val_mae", mae.float(), prog_bar=True)
        self.log("val_r2", r2.float(), prog_bar=True)

    def configure_optimizers(self) -> Any:
        return adamw_with_schedule(self.model.parameters(), self.config,
                                   int(self.trainer.estimated_stepping_batches))
