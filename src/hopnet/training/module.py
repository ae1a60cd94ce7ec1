"""The one Lightning module of every network hopnet trains: the model's own loss, AdamW on the
trainable parameters with a per-step learning-rate schedule, validation MAE (and R² for one
target) in data units.

A trainable model (:class:`~hopnet.models.barrier.BarrierModel`,
:class:`~hopnet.models.property.MultiPropertyModel`) provides ``loss(batch)`` (its training
objective on the standardised scale) and ``outputs(batch)`` -> (prediction, target, present)
[B, P] in data units. ``val_mae`` (model selection, early stopping) is the mean over the P targets
of each target's MAE over its present rows; with P > 1 each ``val_mae_<name>`` is logged too."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from hopnet.training.config import TrainingConfig
from hopnet.training.transfer import keep_frozen_eval

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


class LitModule(L.LightningModule):
    """Trains ``model`` (target scaling already set; frozen groups stay in eval mode)."""

    def __init__(self, model: torch.nn.Module, config: TrainingConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self._val: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, batch: Any) -> torch.Tensor:
        return self.model(batch)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        keep_frozen_eval(self.model)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, n = self.model.loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pred, true, present = self.model.outputs(batch)
        self._val.append((pred.detach().double(), true.double(), present))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        p, t, k = (torch.cat(parts) for parts in zip(*self._val))
        self._val.clear()
        names = getattr(self.model, "properties", ("target",))
        maes = []
        for j in range(p.shape[1]):
            sel = k[:, j]
            if bool(sel.any()):
                maes.append((p[sel, j] - t[sel, j]).abs().mean())
                if p.shape[1] > 1:
                    self.log(f"val_mae_{names[j]}", maes[-1].float())
        if not maes:
            return
        self.log("val_mae", torch.stack(maes).mean().float(), prog_bar=True)
        if p.shape[1] == 1:
            t1, p1 = t[k[:, 0], 0], p[k[:, 0], 0]
            ss_tot = ((t1 - t1.mean()) ** 2).sum()
            r2 = 1 - ((p1 - t1) ** 2).sum() / ss_tot if ss_tot > 0 else torch.tensor(float("nan"))
            self.log("val_r2", r2.float(), prog_bar=True)

    def configure_optimizers(self) -> Any:
        params = [q for q in self.model.parameters() if q.requires_grad]
        return adamw_with_schedule(params, self.config, int(self.trainer.estimated_stepping_batches))
