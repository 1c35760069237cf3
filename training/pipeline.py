"""The weakly supervised pipeline and its fully supervised twin, on lists of Volumes.

weakly supervised: slice labels -> ResNet-BiLSTM classifier -> Grad-CAM per slice ->
unsupervised refinement -> pseudo-masks -> 2.5D U-Net (pseudo-masks on positive slices,
empty masks on negative ones). Fully supervised: the same U-Net on the true masks.
Each stage writes its result into a work folder and is skipped when it is already there,
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_ich.analysis.metrics import dice
from edge_ich.card import Window
from edge_ich.errors import InputError
from edge_ich.preprocess import DEFAULT_WINDOWS
from training.cam import cam_pointing, volume_cams
from training.evaluate import auc, choose_operating_point, choose_threshold, pooled_dice, remove_small
from training.loops import LoopConfig, classifier_loss, dist_info, log, predict_volume, segmenter_loss, train_loop
from training.models import SliceSequenceClassifier, UNet25D
from training.refine import RefineParams, pseudo_masks, self_training_masks
from training.volumes import ClassifierSampler, SegmenterSampler, Volume, sequence_window, to_model_grid, window_starts


@dataclass
class PipelineConfig:
    """Sizes and lengths of one training run (defaults: the bundled model)."""

    size: int = 128
    cls_size: int | None = None  # the classifier's (coarser) grid; None: the segmenter's `size`
    context: int = 1
    seq_len: int = 8
    cls_widths: tuple[int, ...] = (16, 32, 48, 64)
    cls_hidden: int = 64
    cls_pool: str = "lse"  # log-mean-exp: a small bleed is not diluted by the whole head, as a mean would
    cls_stride: int = 4  # encoder output stride: 128 px -> 32x32 activation maps
    cls_augment: bool = True  # flips and small shifts of the classifier's windows
    skip_unresolved: bool = (
        True  # weakly supervised: bleed slices with an empty pseudo-mask are left out of the segmenter's training
    )
    cls_steps: int = 400
    cls_batch: int = 4
    cls_lr: float = 1e-3
    seg_base: int = 12
    seg_steps: int = 800
    seg_batch: int = 16
    seg_lr: float = 2e-3
    hard_negative_weight: float = 1.0  # > 0: penalise the most confident pixels of slices labelled negative
    self_train_rounds: int = 1  # weakly supervised: rounds of self-training after the first segmenter
    self_train_steps: int | None = None  # steps per self-training round (default: half of seg_steps)
    min_component_mm3: float | None = None  # None: chosen on the validation cases with the threshold
    device: str = "cpu"
    amp: bool = False
    seed: int = 0
    refine: RefineParams = field(default_factory=RefineParams)
    windows: tuple[Window, ...] = DEFAULT_WINDOWS

    @property
    def in_channels(self) -> int:
        return (2 * self.context + 1) * len(self.windows)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["windows"] = [asdict(w) for w in self.windows]
        return d


def _loop(
    cfg: PipelineConfig,
    steps: int,
    batch: int,
    lr: float,
    ckpt: Path,
    name: str,
    seed_off: int,
    select: Callable[[torch.nn.Module], float] | None = None,
    key: str = "",
) -> LoopConfig:
    return LoopConfig(
        select=select,
        key=key,
        steps=steps,
        batch=batch,
        lr=lr,
        seed=cfg.seed + seed_off,
        device=cfg.device,
        amp=cfg.amp,
        ckpt=ckpt,
        ckpt_every=max(50, steps // 5),
        log_every=max(10, steps // 20),
        name=name,
    )


def new_classifier(cfg: PipelineConfig) -> SliceSequenceClassifier:
    return SliceSequenceClassifier(
        len(cfg.windows), cfg.cls_widths, cfg.cls_hidden, cfg.cls_pool, stride=cfg.cls_stride
    )


def new_segmenter(cfg: PipelineConfig) -> UNet25D:
    return UNet25D(cfg.in_channels, cfg.seg_base)


def classifier_volumes(vols: Sequence[Volume], cfg: PipelineConfig) -> list[Volume]:
    """The volumes on the classifier's grid (`cls_size`), resized as the runtime resizes; slice labels only."""
    if not cfg.cls_size or cfg.cls_size == cfg.size:
        return list(vols)
    out = []
    for v in vols:
        hu, spacing = to_model_grid(v.hu, v.spacing, (cfg.cls_size, cfg.cls_size))
        out.append(Volume(v.case_id, hu, spacing, v.slice_labels))
    return out


def train_classifier(vols: Sequence[Volume], cfg: PipelineConfig, work: Path) -> SliceSequenceClassifier:
    """Stage 1: the slice classifier on 'any hemorrhage' labels (weak labels only), on its own grid."""
    sampler = ClassifierSampler(classifier_volumes(vols, cfg), cfg.seq_len, cfg.windows, augment=cfg.cls_augment)
    model = new_classifier(cfg)
    loop = _loop(cfg, cfg.cls_steps, cfg.cls_batch, cfg.cls_lr, Path(work) / "classifier.pt", "classifier", 1)
    return train_loop(model, sampler.sample, classifier_loss, loop)  # type: ignore[return-value]


def volume_cam_set(
    model: SliceSequenceClassifier, vols: Sequence[Volume], cfg: PipelineConfig, cache: Path | None = None
) -> list[np.ndarray]:
    """CAMs [Z,H,W] in [0,1] on the segmenter's grid for every volume (zeros where no slice is labelled
    positive: those are never searched); cached as uint8 in the work folder, split over ranks."""
    ids = [v.case_id for v in vols]
    if cache is not None and Path(cache).is_file():
        with np.load(cache) as d:
            if list(d["ids"]) == ids:
                return [d[f"c{i}"].astype(np.float32) / 255.0 for i in range(len(vols))]
    rank, world = dist_info()
    mine: dict[int, np.ndarray] = {}
    for i in range(rank, len(vols), world):
        v = vols[i]
        if v.slice_labels is None or not np.asarray(v.slice_labels, bool).any():
            mine[i] = np.zeros(v.hu.shape, np.uint8)
            continue
        cv = classifier_volumes([v], cfg)[0]
        cams, _ = volume_cams(model, cv, cfg.seq_len, cfg.device, cfg.windows, out_size=v.hu.shape[1:])
        mine[i] = np.round(np.clip(cams, 0, 1) * 255).astype(np.uint8)
    if world > 1:
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, mine)
        mine = {k: c for g in gathered for k, c in g.items()}
    cams8 = [mine[i] for i in range(len(vols))]
    if cache is not None and rank == 0:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(cache) + ".tmp.npz")
        np.savez_compressed(tmp, ids=np.array(ids), **{f"c{i}": c for i, c in enumerate(cams8)})
        tmp.replace(cache)
    return [c.astype(np.float32) / 255.0 for c in cams8]


def make_pseudo_masks(
    model: SliceSequenceClassifier,
    vols: Sequence[Volume],
    cfg: PipelineConfig,
    cache: Path | None = None,
    cams: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Stage 2+3: CAM per positive slice, refined without supervision (no voxel truth)."""
    if cams is None:
        cams = volume_cam_set(model, vols, cfg, None if cache is None else Path(str(cache) + ".cams.npz"))
    return [
        pseudo_masks(v.hu, c, np.asarray(v.slice_labels, bool), v.cavity(), cfg.refine)
        if v.slice_labels is not None and np.asarray(v.slice_labels, bool).any()
        else np.zeros(v.hu.shape, bool)
        for v, c in zip(vols, cams)
    ]


def cam_only_masks(vols: Sequence[Volume], cams: Sequence[np.ndarray], cfg: PipelineConfig) -> list[np.ndarray]:
    """The CAM alone as a pseudo-mask (the first row of the per-stage table): CAM >= the refinement's
    threshold, inside the cavity, on slices labelled positive."""
    return [
        (c >= cfg.refine.cam_threshold) & v.cavity() & np.asarray(v.slice_labels, bool)[:, None, None]
        for v, c in zip(vols, cams)
    ]


@torch.no_grad()
def classifier_slice_auc(model: SliceSequenceClassifier, vols: Sequence[Volume], cfg: PipelineConfig) -> float:
    """Slice-level ROC AUC of the classifier on labelled volumes (weak labels only, no voxel truth)."""
    model.eval().to(cfg.device)
    scores: list[float] = []
    labels: list[int] = []
    for v in classifier_volumes(vols, cfg):
        if v.slice_labels is None:
            continue
        prob = np.zeros(v.n, np.float32)
        cnt = np.zeros(v.n, np.float32)
        for s in window_starts(v.n, cfg.seq_len, max(1, cfg.seq_len // 2)):
            x, valid = sequence_window(v, s, cfg.seq_len, cfg.windows)
            p = torch.sigmoid(model(torch.from_numpy(x)[None].to(cfg.device)).float())[0].cpu().numpy()
            prob[s : s + cfg.seq_len] += (p * valid)[: v.n - s]
            cnt[s : s + cfg.seq_len] += valid[: v.n - s]
        scores += list(prob / cnt.clip(min=1))
        labels += [int(b) for b in v.slice_labels]
    return auc(scores, labels)


def pseudo_mask_dice(vols: Sequence[Volume], masks: Sequence[np.ndarray]) -> dict[str, float]:
    """Pseudo-mask quality against voxel truth where the volumes have it (phantoms)."""
    pairs = [(m, v.truth_binary()) for v, m in zip(vols, masks) if v.truth is not None]
    if not pairs:
        return {}
    pos = [(m, t) for m, t in pairs if t.any()]
    allv = np.concatenate([m.ravel() for m, _ in pos]) if pos else np.zeros(0, bool)
    allt = np.concatenate([t.ravel() for _, t in pos]) if pos else np.zeros(0, bool)
    return {
        "dice_positive_cases": float(np.mean([dice(m, t) for m, t in pos])) if pos else float("nan"),
        "dice_pooled_positive": dice(allv, allt),
        "cases": len(pairs),
    }


def targets_key(vols: Sequence[Volume], targets: Sequence[np.ndarray], init: torch.nn.Module | None = None) -> str:
    """Short hash of what a segmenter learns from (case ids, target masks, starting weights)."""
    import hashlib

    h = hashlib.sha256()
    for v, t in zip(vols, targets):
        h.update(v.case_id.encode())
        h.update(np.packbits(np.asarray(t, bool)).tobytes())
    if init is not None:
        for p in init.state_dict().values():
            h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def train_segmenter(
    vols: Sequence[Volume],
    targets: Sequence[np.ndarray],
    cfg: PipelineConfig,
    work: Path,
    name: str = "segmenter",
    skip_unresolved: bool = False,
    val: Sequence[Volume] = (),
    val_targets: Sequence[np.ndarray] = (),
    init: UNet25D | None = None,
    steps: int | None = None,
) -> UNet25D:
    """Stage 4: the 2.5D U-Net on (pseudo-)masks, negatives as empty masks.

    With `val` and `val_targets` the checkpoint kept is the one with the best pooled Dice against them
    (at 0.5, on the model grid; `pooled_dice`); `init` starts from another segmenter's weights (self-training)."""
    sampler = SegmenterSampler(vols, targets, cfg.context, cfg.windows, skip_unresolved=skip_unresolved)
    if sampler.skipped:
        log(f"[{name}] {sampler.skipped} bleed slices without a pseudo-mask left out")
    model = new_segmenter(cfg)
    if init is not None:
        model.load_state_dict(init.state_dict())
    model = model.to(memory_format=torch.channels_last)
    select = (lambda net: _val_score(net, val, val_targets, cfg)) if val and val_targets else None

    key = targets_key(vols, targets, init)
    if cfg.hard_negative_weight:
        key += f"-hn{cfg.hard_negative_weight:g}"
    loss = functools.partial(segmenter_loss, hard_negative_weight=cfg.hard_negative_weight)
    loop = _loop(
        cfg, steps or cfg.seg_steps, cfg.seg_batch, cfg.seg_lr, Path(work) / f"{name}.pt", name, 2, select, key
    )
    return train_loop(model, sampler.sample, loss, loop)  # type: ignore[return-value]


def predict_probs(model: UNet25D, vols: Sequence[Volume], cfg: PipelineConfig) -> list[np.ndarray]:
    """Sigmoid probabilities [Z,H,W] per volume on the model grid."""
    model = model.to(cfg.device)
    out = []
    for v in vols:
        logits = predict_volume(model, lambda z, v=v: v.stack(z, cfg.context, cfg.windows), v.n, cfg.device)
        out.append(1.0 / (1.0 + np.exp(-logits)))
    return out


def binarize(probs: Sequence[np.ndarray], vols: Sequence[Volume], threshold: float, min_mm3: float) -> list[np.ndarray]:
    return [remove_small(p >= threshold, v.spacing, min_mm3) for p, v in zip(probs, vols)]


@dataclass
class TrainResult:
    segmenter: UNet25D
    threshold: float
    min_component_mm3: float
    summary: dict[str, Any]
    classifier: SliceSequenceClassifier | None = None
    pseudo: list[np.ndarray] | None = None


def _stage_dice(vols: Sequence[Volume], masks: Sequence[np.ndarray]) -> float | None:
    d = pseudo_mask_dice(vols, masks)
    return round(d["dice_positive_cases"], 4) if d else None


def _val_score(seg: UNet25D, val: Sequence[Volume], targets: Sequence[np.ndarray], cfg: PipelineConfig) -> float:
    """Pooled Dice of the segmenter (p >= 0.5) against validation pseudo-masks: the checkpoints' own score."""
    probs = predict_probs(seg, val, cfg)
    return pooled_dice([p >= 0.5 for p in probs], [t > 0 for t in targets])


def _next_targets(
    seg: UNet25D, vols: Sequence[Volume], cams: Sequence[np.ndarray], cfg: PipelineConfig
) -> list[np.ndarray]:
    """A self-training round's targets: the segmenter's call within positive slices, the CAM and the cavity."""
    probs = predict_probs(seg, vols, cfg)
    return [
        self_training_masks(p, c, np.asarray(v.slice_labels, bool), v.cavity()) for p, c, v in zip(probs, cams, vols)
    ]


def run_weakly_supervised(
    train: Sequence[Volume],
    val: Sequence[Volume],
    cfg: PipelineConfig,
    work: Path,
    classifier: SliceSequenceClassifier | None = None,
) -> TrainResult:
    """All weakly supervised stages; every choice is made on `val` against its pseudo-masks (no voxel truth).

    Classifier -> CAMs -> refined pseudo-masks -> segmenter -> `self_train_rounds` rounds of self-training
    (the segmenter's call on slices labelled positive, where the CAM is not silent, is the next round's
    target). Voxel truth, where the volumes carry it (phantoms), is only *reported* per stage.
    `classifier`: an already trained stage 1 (e.g. to compare refinement settings on one classifier).
    """
    if any(v.slice_labels is None for v in list(train) + list(val)):
        raise InputError("weakly supervised training needs slice labels on every training and validation case")
    work = Path(work)
    clf = classifier if classifier is not None else train_classifier(train, cfg, work)
    vauc = classifier_slice_auc(clf, val, cfg) if val else float("nan")
    log(f"[classifier] validation slice AUC {vauc:.3f}")
    cams_t = volume_cam_set(clf, train, cfg, work / "cams_train.npz")
    cams_v = volume_cam_set(clf, val, cfg, work / "cams_val.npz") if val else []
    pointing = cam_pointing(val, cams_v)
    pseudo = make_pseudo_masks(clf, train, cfg, cams=cams_t)
    pv = make_pseudo_masks(clf, val, cfg, cams=cams_v) if val else []
    stages: list[dict[str, Any]] = [
        {
            "stage": "CAM only",
            "train": _stage_dice(train, cam_only_masks(train, cams_t, cfg)),
            "val": _stage_dice(val, cam_only_masks(val, cams_v, cfg)),
        },
        {"stage": "refined", "train": _stage_dice(train, pseudo), "val": _stage_dice(val, pv)},
    ]
    log(f"[pseudo] per-stage pseudo-mask Dice vs truth (reported only): {stages}")
    first_pseudo, pv_ref = pseudo, pv  # the refined validation masks: every round is judged against them
    seg = train_segmenter(train, pseudo, cfg, work, skip_unresolved=cfg.skip_unresolved, val=val, val_targets=pv)
    kept_round = 0
    for r in range(1, cfg.self_train_rounds + 1):
        pseudo, pv = _next_targets(seg, train, cams_t, cfg), _next_targets(seg, val, cams_v, cfg)
        stages.append(
            {"stage": f"self-training round {r}", "train": _stage_dice(train, pseudo), "val": _stage_dice(val, pv)}
        )
        log(f"[pseudo] {stages[-1]}")
        nxt = train_segmenter(
            train,
            pseudo,
            cfg,
            work,
            name=f"segmenter_st{r}",
            skip_unresolved=cfg.skip_unresolved,
            val=val,
            val_targets=pv_ref,
            init=seg,
            steps=cfg.self_train_steps or max(1, cfg.seg_steps // 2),
        )
        # a round that drifts from the refined masks (e.g. its own targets came out empty) is not kept
        if not val or _val_score(nxt, val, pv_ref, cfg) >= _val_score(seg, val, pv_ref, cfg):
            seg, kept_round = nxt, r
        else:
            log(f"[pseudo] self-training round {r} scores lower on the refined validation masks: not kept")
            break
    th, mm = 0.5, cfg.min_component_mm3 or 100.0
    op: dict[str, Any] = {"threshold": th, "min_component_mm3": mm, "rule": "defaults: no validation cases"}
    if val:
        labels = [bool(np.any(v.slice_labels)) for v in val]
        probs = predict_probs(seg, val, cfg)
        op = choose_operating_point(probs, pv_ref, labels, [v.spacing for v in val], cfg.min_component_mm3)
        th, mm = op["threshold"], op["min_component_mm3"]
        log(f"[operating point] {op}")
    summary = {
        "method": "weakly supervised (slice labels -> ResNet-BiLSTM -> Grad-CAM -> refinement -> 2.5D U-Net "
        f"-> {cfg.self_train_rounds} round(s) of self-training)",
        "train_cases": len(train),
        "train_slices": int(sum(v.n for v in train)),
        "train_positive_slices": int(sum(int(np.sum(v.slice_labels)) for v in train)),  # type: ignore[arg-type]
        "val_cases": len(val),
        # the operating point in use, under the same names as the fully supervised summary's; how it was
        # chosen (rule, validation rates, score) is in "operating_point"
        "threshold": th,
        "min_component_mm3": mm,
        "operating_point": op,
        "classifier_val_slice_auc": vauc,
        "cam_pointing_val": pointing,
        "pseudo_mask_stages": stages,
        "self_training_round_kept": kept_round,
        "bleed_slices_without_pseudo_mask": int(
            sum(
                int(np.sum(np.asarray(v.slice_labels, bool) & ~m.reshape(m.shape[0], -1).any(1)))
                for v, m in zip(train, first_pseudo)
            )
        ),
        "skip_unresolved": cfg.skip_unresolved,
        "cam_gate": cfg.refine.cam_threshold > 0 or cfg.refine.component_cam_peak > 0,
        "pseudo_mask_dice_vs_truth": pseudo_mask_dice(train, first_pseudo),
        "segmenter_selected_step": getattr(seg, "selected_step", None),
        "voxel_truth_used": False,
        "classifier_train_seconds": getattr(clf, "train_seconds", None),
        "segmenter_train_seconds": getattr(seg, "train_seconds", None),
    }
    return TrainResult(seg, th, mm, summary, clf, first_pseudo)


def run_fully_supervised(
    train: Sequence[Volume], val: Sequence[Volume], cfg: PipelineConfig, work: Path, name: str = "segmenter_fs"
) -> TrainResult:
    """The same U-Net on true masks; threshold chosen on `val` against its true masks."""
    if any(v.truth is None for v in list(train) + list(val)):
        raise InputError("fully supervised training needs voxel masks on every training and validation case")
    seg = train_segmenter(train, [v.truth_binary() for v in train], cfg, Path(work), name)
    th, mm, vdice = 0.5, cfg.min_component_mm3 or 100.0, float("nan")
    if val:
        th, mm, vdice = choose_threshold(
            predict_probs(seg, val, cfg), [v.truth for v in val], [v.spacing for v in val], cfg.min_component_mm3
        )  # type: ignore[misc]
    summary = {
        "method": "fully supervised (true voxel masks -> 2.5D U-Net)",
        "train_cases": len(train),
        "val_cases": len(val),
        "threshold": th,
        "min_component_mm3": mm,
        "val_dice": vdice,
        "voxel_truth_used": True,
        "segmenter_train_seconds": getattr(seg, "train_seconds", None),
    }
    return TrainResult(seg, th, mm, summary)
