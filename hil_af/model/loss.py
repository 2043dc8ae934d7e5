"""Ordinal soft-label cross-entropy (Choi et al., ICCV 2023) (torch; the ``[train]`` extra).

For ground-truth slice r_f and slice k of n, the target distribution is
``y_k = exp(-(r_f - r_k)^2 / T) / sum_j exp(-(r_f - r_j)^2 / T)`` with r in
slice-index units; the loss is ``-sum_k y_k log softmax(logits)_k``, averaged
over the batch.  The paper uses T = 1 for step 1 and T = 0.5 for step 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

T_STEP1 = 1.0
T_STEP2 = 0.5


def soft_targets(gt: torch.Tensor, n: int, T: float) -> torch.Tensor:
    """Target distributions float32 [B, n] for integer (or fractional) slice labels ``gt`` [B]."""
    if T <= 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    k = torch.arange(n, dtype=torch.float32, device=gt.device)
    d2 = (gt.to(torch.float32)[:, None] - k[None, :]) ** 2
    return torch.softmax(-d2 / T, dim=1)


def ordinal_ce(logits: torch.Tensor, gt: torch.Tensor, T: float) -> torch.Tensor:
    """Mean soft-label cross-entropy of ``logits`` [B, n] against ``soft_targets(gt, n, T)``."""
    y = soft_targets(gt, logits.shape[1], T)
    return -(y * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
