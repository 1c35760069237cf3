"""Networks: a ResNet + bidirectional LSTM slice classifier and a light 2.5D U-Net segmenter.

Both are written here from plain torch blocks (torchvision does not import beside our torch).
The classifier reads a window of contiguous slices as a sequence, so a slice's score can use
its neighbours; the segmenter is what ships, so it avoids ConvTranspose (Resize + Conv
upsampling quantizes well for TensorRT) and stays at a few hundred thousand parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def _norm(ch: int) -> nn.Module:
    """BatchNorm: fastest on CPU, and folds into the convolutions when exported for inference."""
    return nn.BatchNorm2d(ch)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = _norm(cout)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.n1(self.conv1(x)))
        h = self.n2(self.conv2(h))
        return F.relu(h + self.short(x))


class ResNetEncoder(nn.Module):
    """Per-slice 2D ResNet with output stride 4 or 8: at stride 4 a 128 px slice gives 32x32 activation maps."""

    def __init__(self, in_ch: int, widths: Sequence[int] = (16, 32, 64, 128), stride: int = 8) -> None:
        super().__init__()
        if stride not in (4, 8):
            raise ValueError(f"encoder output stride must be 4 or 8, not {stride}")
        w = list(widths)
        self.stride = stride
        self.stem = nn.Sequential(nn.Conv2d(in_ch, w[0], 3, 2, 1, bias=False), _norm(w[0]), nn.ReLU(inplace=True))
        strides = ([1, 2, 2] if stride == 8 else [1, 2, 1]) + [1] * (len(w) - 3)
        layers: list[nn.Module] = []
        cin = w[0]
        for cout, s in zip(w, strides):
            layers += [BasicBlock(cin, cout, s), BasicBlock(cout, cout)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))


class SliceSequenceClassifier(nn.Module):
    """ResNet per slice -> pooled features -> BiLSTM over the slice window -> logit per slice.

    Input [B, T, C, H, W]; output logits [B, T] ("any hemorrhage"). `features` returns the
    last convolutional maps so Grad-CAM can push gradients through the LSTM back to them.
    `pool` turns each map into one number per channel: "mean" (global average), "max", or
    "lse" (log-mean-exp, sharpness `lse_r`: between the two). A bleed can cover a few pixels
    of a slice; a mean dilutes it with the whole head, max and lse do not.
    """

    POOLS = ("mean", "max", "lse")

    def __init__(
        self,
        in_ch: int,
        widths: Sequence[int] = (16, 32, 64, 128),
        hidden: int = 64,
        pool: str = "mean",
        lse_r: float = 4.0,
        stride: int = 8,
    ) -> None:
        super().__init__()
        if pool not in self.POOLS:
            raise ValueError(f"pool must be one of {self.POOLS}, not {pool!r}")
        self.pool_kind = pool
        self.lse_r = float(lse_r)
        self.encoder = ResNetEncoder(in_ch, widths, stride)
        f = self.encoder.out_channels
        self.lstm = nn.LSTM(f, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden + f, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        fm = self.encoder(x.flatten(0, 1))
        return fm.view(b, t, *fm.shape[1:])

    def pool(self, fm: torch.Tensor) -> torch.Tensor:
        """Feature maps [..., F, h, w] -> [..., F]."""
        if self.pool_kind == "max":
            return fm.amax(dim=(-2, -1))
        if self.pool_kind == "lse":
            r = self.lse_r
            flat = fm.flatten(-2)
            return (torch.logsumexp(r * flat, dim=-1) - math.log(flat.shape[-1])) / r
        return fm.mean(dim=(-2, -1))

    def head_from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled slice features [B, T, F] -> logits [B, T] (the sequence part)."""
        seq, _ = self.lstm(pooled)
        return self.head(torch.cat([seq, pooled], dim=-1)).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_from_pooled(self.pool(self.features(x)))


class _ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
            _norm(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            _norm(cout),
            nn.ReLU(inplace=True),
        )


class UNet25D(nn.Module):
    """Light 2.5D U-Net: context slices x windows as channels in, one logit map out.

    Upsampling is bilinear Resize followed by a convolution (no ConvTranspose).
    """

    def __init__(self, in_ch: int, base: int = 16, depth: int = 4) -> None:
        super().__init__()
        chs = [base * 2**i for i in range(depth)]
        self.down = nn.ModuleList()
        cin = in_ch
        for c in chs:
            self.down.append(_ConvBlock(cin, c))
            cin = c
        self.bottom = _ConvBlock(chs[-1], chs[-1])
        self.up_conv = nn.ModuleList()
        self.up_block = nn.ModuleList()
        cin = chs[-1]
        for c in reversed(chs[:-1]):
            self.up_conv.append(nn.Conv2d(cin, c, 3, 1, 1))
            self.up_block.append(_ConvBlock(2 * c, c))
            cin = c
        self.out = nn.Conv2d(chs[0], 1, 1)
        self.in_ch = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for i, blk in enumerate(self.down):
            h = blk(h)
            if i < len(self.down) - 1:
                skips.append(h)
                h = F.max_pool2d(h, 2)
        h = self.bottom(h)
        for conv, blk, skip in zip(self.up_conv, self.up_block, reversed(skips)):
            h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
            h = blk(torch.cat([F.relu(conv(h)), skip], dim=1))
        return self.out(h)


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def flops_per_slice(model: nn.Module, in_ch: int, size: tuple[int, int]) -> int:
    """Floating-point operations for one slice (2 x multiply-accumulates of convs and linears)."""
    total = 0

    def conv_hook(mod: nn.Conv2d, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total += 2 * k * out[0].numel()

    def lin_hook(mod: nn.Linear, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += 2 * mod.in_features * mod.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_ch, *size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return int(total)
