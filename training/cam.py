"""Class activation maps through the sequence classifier (Grad-CAM across the LSTM).

For slice t the Grad-CAM weights are the gradients of slice t's logit with respect to slice
t's pooled feature vector, taken through the bidirectional LSTM (so the neighbours' evidence
shapes them). For each pooling the classifier offers (mean, max, log-mean-exp) the pooling
weights over a map sum to one, so by the chain rule these equal (up to the constant 1/(h*w))
the spatial means of the gradients on the last convolutional maps, i.e. Grad-CAM.
Windows overlap by half; each slice's map and probability are averaged over its windows.
Maps are scaled by the volume's maximum, never slice by slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from edge_ich.card import Window
from edge_ich.preprocess import DEFAULT_WINDOWS
from training.models import SliceSequenceClassifier
from training.volumes import Volume, sequence_window, window_starts


def _window_cams(model: SliceSequenceClassifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [1, T, C, H, W] -> (cams [T, h, w] >= 0, probabilities [T])."""
    with torch.no_grad():
        feats = model.features(x)[0]  # [T, F, h, w]
    pooled = model.pool(feats).unsqueeze(0).clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model.head_from_pooled(pooled)[0]  # [T]
        t_len = logits.shape[0]
        weights = torch.stack(
            [torch.autograd.grad(logits[t], pooled, retain_graph=True)[0][0, t] for t in range(t_len)]
        )
    cams = F.relu(torch.einsum("tf,tfhw->thw", weights, feats))
    return cams.detach(), torch.sigmoid(logits.detach())


@torch.no_grad()
def volume_cams(
    model: SliceSequenceClassifier,
    vol: Volume,
    length: int,
    device: str = "cpu",
    windows: Sequence[Window] = DEFAULT_WINDOWS,
    out_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """CAMs [Z, H, W] in [0, 1] (scaled by the volume's maximum) and slice probabilities [Z].

    One scale for the whole volume: a slice whose evidence is weak keeps a weak map, instead of being
    stretched to a full-strength region as a per-slice peak normalisation would.

    H, W: `out_size` (e.g. the segmenter's grid when the classifier reads a coarser one), else the volume's.
    """
    model.eval()
    h, w = out_size or vol.hu.shape[1:]
    acc = np.zeros((vol.n, h, w), np.float32)
    prob = np.zeros(vol.n, np.float32)
    cnt = np.zeros(vol.n, np.float32)
    for s in window_starts(vol.n, length, max(1, length // 2)):
        x, valid = sequence_window(vol, s, length, windows)
        cams, p = _window_cams(model, torch.from_numpy(x)[None].to(device))
        up = F.interpolate(cams[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0].cpu().numpy()
        for t in range(length):
            if valid[t] > 0:
                acc[s + t] += up[t]
                prob[s + t] += float(p[t])
                cnt[s + t] += 1
    acc /= cnt[:, None, None].clip(min=1)
    prob /= cnt.clip(min=1)
    peak = float(acc.max()) if acc.size else 0.0
    if peak > 0:
        acc /= peak
    return acc, prob


def cam_pointing(vols: Sequence[Any], cams: Sequence[np.ndarray]) -> float | None:
    """Pointing score: on slices with blood in the voxel truth, the fraction whose CAM peak lies inside it
    (reported only; None without truth)."""
    hits, total = 0, 0
    for v, c in zip(vols, cams):
        if v.truth is None:
            continue
        t = v.truth > 0
        for z in np.nonzero(t.reshape(v.n, -1).any(1))[0]:
            if c[z].max() <= 0:
                total += 1
                continue
            y, x = np.unravel_index(int(np.argmax(c[z])), c[z].shape)
            hits += bool(t[z, y, x])
            total += 1
    return round(hits / total, 4) if total else None
