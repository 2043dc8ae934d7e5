"""The networks (torch; the ``[train]`` extra): compact MCUNet-class CNNs and MobileNet-v2.

All map an encoded RoI batch float32 [B, 5, S, S] (hil_af.model.encoding)
to logits [B, n] over the n focus slices.  ``count_macs`` counts the
multiply-accumulates of the conv and linear layers for one patch (FLOPs are
reported as 2 x MACs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import BadInput

ARCHS = ("mcunet", "mcunet-plain", "mcunet-lite", "mcunet-tiny", "mobilenetv2")
# the plain model's stems (MCUNetAF ``stem_mode``): see MCUNetAF
STEMS = {"mcunet-plain": "full", "mcunet-lite": "lite", "mcunet-tiny": "tiny"}


def _cbr(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNet-v2 block: 1x1 expand, kxk depthwise (stride), 1x1 project; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, k: int = 3):
        super().__init__()
        hid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_cbr(cin, hid, 1))
        layers += [_cbr(hid, hid, k, stride, groups=hid), _cbr(hid, cout, 1, act=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class LensShift(nn.Module):
    """Turns 2n-1 logits over the RELATIVE offset (in-focus slice minus current slice,
    -(n-1)..n-1) into n logits over the ABSOLUTE slice, using the lens-PE plane
    (channel 4 = k/(n-1)) of the input: absolute logit j = relative logit (j - k).
    The network thus learns defocus from the views (corrected by the RoI-PE) and the
    lens-PE places it; with lens-PE off (zero plane) k = 0 and the relative logits
    are read as absolute ones.  Exported to ONNX as Round + GatherElements."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.register_buffer("j", torch.arange(n, dtype=torch.int64)[None, :], persistent=False)

    def forward(self, rel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        k = torch.round(x[:, 4].mean(dim=(1, 2)) * (self.n - 1)).to(torch.int64)
        j: torch.Tensor = self.j  # type: ignore[assignment]
        idx = (j - k[:, None] + (self.n - 1)).clamp(0, 2 * self.n - 2)
        return torch.gather(rel, 1, idx)


class CorrelationStem(nn.Module):
    """Dual-view correlation (a stereo-style cost volume, as in DispNet-C): for each
    horizontal shift d in [-D, D], the pixel-wise product of the (normalised) left view
    and the right view shifted by d px (zero-padded); the convolutions that follow sum
    it over local windows, i.e. a local cross-correlation.  Output [B, 2D+1, H, W]
    (dual-pixel disparity is horizontal).  No weights; 2D+1 multiplies per pixel."""

    def __init__(self, max_shift: int = 8):
        super().__init__()
        self.max_shift = max_shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fl = x[:, 0:1]
        fr = x[:, 1:2]
        D = self.max_shift
        W = fl.shape[3]
        fr = nn.functional.pad(fr, (D, D, 0, 0))
        outs = [fl * fr[:, :, :, D + d : D + d + W] for d in range(-D, D + 1)]
        return torch.cat(outs, dim=1)


class MCUNetAF(nn.Module):
    """Compact MCUNet-class CNN (the default).

    ``corr=True`` (arch "mcunet"): a correlation stem (CorrelationStem, +-8 px) whose cost
    volume is concatenated with the 5 input channels, then a depthwise-separable
    stride-2 conv (3x3 depthwise + 1x1);
    ``corr=False`` (arch "mcunet-plain"): a full-resolution 3x3 conv stem on the 5 channels
    (``stem_mode="full"``: 3x3 conv to ``stem`` = 12 channels at 64 x 64, then a 3x3 stride-2 conv to 16);
    cheaper stems for a per-frame budget (benchmarks/bench_decode.py ``--af-step``), the rest
    unchanged: ``stem_mode="lite"`` (arch "mcunet-lite"): the first conv at stride 2 (it still reads every
    pixel), then a depthwise-separable 3x3 (depthwise + 1x1 to 16), 52 % of the full stem's model
    MACs; ``stem_mode="tiny"`` (arch "mcunet-tiny"): both stem convs at stride 2, so every stage runs
    at a quarter of the pixels (16 x 16 after the stem), 25 % of the MACs.
    Then inverted-residual stages down to 4x4 (1x1 for "tiny"), a 1x1 head conv, global average pool; the
    pooled features plus the spatial means of the three PE channels go through a
    two-layer MLP to 2n-1 relative-offset logits, placed on the n absolute slices by
    ``LensShift`` (lens-PE)."""

    # (expand, out channels, repeats, first stride, kernel)
    STAGES = ((3, 16, 1, 2, 3), (3, 24, 2, 2, 3), (4, 40, 2, 2, 3), (4, 64, 2, 2, 3))

    def __init__(self, n_classes: int = 49, in_ch: int = 5, stem: int = 12, head: int = 160, corr: bool = True,
                 max_shift: int = 8, hidden: int = 128, stem_mode: str = "full"):
        super().__init__()
        if stem_mode not in ("full", "lite", "tiny"):
            raise BadInput(f"unknown stem {stem_mode!r}; known: full, lite, tiny")
        self.corr = CorrelationStem(max_shift) if corr else None
        if corr:  # depthwise 3x3 stride 2 (sums each shift's products locally), then 1x1 mixing
            c0 = in_ch + 2 * max_shift + 1
            layers: list[nn.Module] = [_cbr(c0, c0, 3, 2, groups=c0), _cbr(c0, 16, 1)]
        elif stem_mode == "lite":
            layers = [_cbr(in_ch, stem, 3, 2), nn.Sequential(_cbr(stem, stem, 3, 1, groups=stem), _cbr(stem, 16, 1))]
        else:
            layers = [_cbr(in_ch, stem, 3, 2 if stem_mode == "tiny" else 1), _cbr(stem, 16, 3, 2)]
        cin = 16
        for e, c, r, s, k in self.STAGES:
            for i in range(r):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, e, k))
                cin = c
        layers.append(_cbr(cin, head, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Sequential(nn.Linear(head + 3, hidden), nn.ReLU(inplace=True),
                                        nn.Linear(hidden, 2 * n_classes - 1))
        self.shift = LensShift(n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x, self.corr(x)], dim=1) if self.corr is not None else x
        f = torch.flatten(self.pool(self.features(z)), 1)
        pe = x[:, 2:5].mean(dim=(2, 3))
        return self.shift(self.classifier(torch.cat([self.dropout(f), pe], dim=1)), x)


class MobileNetV2AF(nn.Module):
    """MobileNet-v2, width 1.0 (Sandler et al. 2018), 5-channel input, n classes.

    The standard stem has stride 2; on 64x64 patches the standard strides would
    leave 2x2 maps, so the first stride-2 stage of the original (24 channels)
    keeps stride 2 and the rest follow the paper exactly.  Head: 2n-1 relative logits +
    LensShift, as the MCUNet variants."""

    CFG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, n_classes: int = 49, in_ch: int = 5):
        super().__init__()
        layers: list[nn.Module] = [_cbr(in_ch, 32, 3, 2)]
        cin = 32
        for t, c, n, s in self.CFG:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_cbr(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(1280, 2 * n_classes - 1)
        self.shift = LensShift(n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shift(self.classifier(self.dropout(torch.flatten(self.pool(self.features(x)), 1))), x)


def build(arch: str, n_classes: int, in_ch: int = 5) -> nn.Module:
    if arch == "mcunet":
        return MCUNetAF(n_classes, in_ch, corr=True)
    if arch in STEMS:
        return MCUNetAF(n_classes, in_ch, corr=False, stem_mode=STEMS[arch])
    if arch == "mobilenetv2":
        return MobileNetV2AF(n_classes, in_ch)
    raise BadInput(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_macs(model: nn.Module, input_hw: tuple[int, int] = (64, 64), in_ch: int = 5) -> int:
    """Multiply-accumulates of all Conv2d and Linear layers for ONE input patch.

    Conv2d: out_h * out_w * out_ch * (in_ch / groups) * kh * kw; Linear: in * out;
    CorrelationStem: one multiply per cost-volume element.
    (BatchNorm, activations, pooling and additions are not counted.)
    """
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += int(out.shape[2] * out.shape[3] * m.out_channels * (m.in_channels // m.groups) * kh * kw)

    def lin_hook(m: nn.Linear, _inp: Any, _out: torch.Tensor) -> None:
        nonlocal total
        total += int(m.in_features * m.out_features)

    def corr_hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += int(out[0].numel())  # one multiply per output element

    hooks = []
    for m in model.modules():
        if isinstance(m, CorrelationStem):
            hooks.append(m.register_forward_hook(corr_hook))
        elif isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_ch, *input_hw))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total
