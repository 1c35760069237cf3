"""Training loops shared by the classifier and the segmenter: seeds, checkpoints, DDP, progress.

A loop runs a fixed number of optimizer steps (not epochs), so its cost is known in advance.
It checkpoints every `ckpt_every` steps (model, optimizer, step, sampler RNG) and resumes
from the checkpoint when one exists. With `select` (a validation score) the weights that scored
best at a checkpoint are kept beside the checkpoint and returned at the end. Under `torchrun` each process draws its own batches
(seed + rank) and DistributedDataParallel averages the gradients; only rank 0 writes.
"""

from __future__ import annotations

import atexit
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class LoopConfig:
    """How long and how to train."""

    steps: int = 500
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 20
    seed: int = 0
    device: str = "cpu"
    amp: bool = False  # bf16 autocast (CUDA, or a CPU with AVX-512 BF16)
    ckpt: Path | None = None
    ckpt_every: int = 100
    log_every: int = 25
    name: str = "train"
    # checkpoint selection: scored (higher is better) at every checkpoint; the best weights are returned
    select: Callable[[nn.Module], float] | None = None
    # what the stage learns from (e.g. a hash of its targets): a checkpoint made for another key is not resumed
    key: str = ""


def seed_everything(seed: int) -> None:
    """Same seed, same numbers (CPU); CUDA kernels may still differ in the last bits."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def dist_info() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without torch.distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed(device: str) -> tuple[int, int]:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend=backend)
        # leave the group while the interpreter is whole: gloo's threads still holding tensors at
        # finalization abort the process (SIGABRT), an intermittent failure after a finished run
        atexit.register(_leave_distributed)
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist_info()


def _leave_distributed() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def resolve_device(device: str) -> str:
    """'auto' -> cuda when available, else cpu; cuda under torchrun -> this process's GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def log(msg: str) -> None:
    rank, _ = dist_info()
    if rank == 0:
        print(msg, file=sys.stderr, flush=True)


def _lr_at(step: int, cfg: LoopConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def _save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def run_settings(model: nn.Module, cfg: LoopConfig) -> dict[str, Any]:
    """What else shapes a run besides its data key: schedule, batch, optimiser, seed, precision and the
    network's architecture (parameter names and shapes). A checkpoint made under other settings is
    not resumed."""
    import hashlib

    arch = hashlib.sha256(repr([(k, tuple(v.shape)) for k, v in model.state_dict().items()]).encode()).hexdigest()
    return {
        "steps": cfg.steps,
        "batch": cfg.batch,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "warmup": cfg.warmup,
        "seed": cfg.seed,
        "amp": cfg.amp,
        "arch": arch[:16],
    }


def train_loop(
    model: nn.Module,
    sample: Callable[[np.random.Generator, int], tuple[np.ndarray, ...]],
    loss_fn: Callable[[nn.Module, list[torch.Tensor]], torch.Tensor],
    cfg: LoopConfig,
) -> nn.Module:
    """Run `cfg.steps` AdamW steps on batches from `sample(rng, batch)`; return the trained model."""
    rank, world = dist_info()
    device = torch.device(cfg.device)
    seed_everything(cfg.seed)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng([cfg.seed, rank])
    start = 0
    elapsed_before = 0.0
    best_score, best_step = float("-inf"), -1
    best_path = Path(str(cfg.ckpt) + ".best") if cfg.ckpt is not None else None
    state = None
    settings = run_settings(model, cfg)
    if cfg.ckpt is not None and Path(cfg.ckpt).is_file():
        state = torch.load(cfg.ckpt, map_location=device, weights_only=False)
        # checkpoints written before settings were recorded are judged by their data key alone
        other = {k: (v, settings[k]) for k, v in state.get("settings", settings).items() if settings.get(k) != v}
        if str(state.get("key", "")) != cfg.key or other:
            why = "other data" if str(state.get("key", "")) != cfg.key else f"other settings ({sorted(other)})"
            log(f"[{cfg.name}] checkpoint {cfg.ckpt} was made for {why}: starting afresh")
            state = None
            if best_path is not None:
                best_path.unlink(missing_ok=True)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = int(state["step"])
        elapsed_before = float(state.get("elapsed_s", float("nan")))  # nan: a checkpoint that did not record it
        best_score, best_step = float(state.get("best_score", best_score)), int(state.get("best_step", -1))
        rngs = state.get("rng_states")
        if rngs and rank < len(rngs):
            rng.bit_generator.state = rngs[rank]
        log(f"[{cfg.name}] resumed at step {start}/{cfg.steps}")
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    use_amp = cfg.amp  # bf16 autocast: CUDA, and CPUs with AVX-512 BF16 (convolutions 1.4-1.9x faster here)
    net.train()
    t0 = time.perf_counter()
    running = 0.0
    for step in range(start, cfg.steps):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        batch = [torch.from_numpy(a).to(device, non_blocking=True) for a in sample(rng, cfg.batch)]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = loss_fn(net, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += float(loss.detach())
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            n = cfg.log_every if done % cfg.log_every == 0 else done % cfg.log_every
            rate = (done - start) / max(time.perf_counter() - t0, 1e-9)
            log(
                f"[{cfg.name}] step {done}/{cfg.steps} loss {running / max(n, 1):.4f} lr {_lr_at(step, cfg):.2e} "
                f"{rate:.2f} steps/s eta {(cfg.steps - done) / max(rate, 1e-9):.0f}s"
            )
            running = 0.0
        if cfg.ckpt is not None and (done % cfg.ckpt_every == 0 or done == cfg.steps):
            if cfg.select is not None:
                score = float(cfg.select(model))
                model.train()
                if score > best_score:
                    best_score, best_step = score, done
                    if rank == 0 and best_path is not None:
                        _save(best_path, {"model": model.state_dict(), "step": done, "score": score})
                log(f"[{cfg.name}] step {done}: validation score {score:.4f} (best {best_score:.4f} at {best_step})")
            states = [rng.bit_generator.state]
            if world > 1:
                gathered: list[Any] = [None] * world
                torch.distributed.all_gather_object(gathered, rng.bit_generator.state)
                states = gathered
            if rank == 0:
                _save(
                    Path(cfg.ckpt),
                    {
                        "model": model.state_dict(),
                        "opt": opt.state_dict(),
                        "step": done,
                        "rng_states": states,
                        "elapsed_s": elapsed_before + time.perf_counter() - t0,
                        "best_score": best_score,
                        "best_step": best_step,
                        "key": cfg.key,
                        "settings": settings,
                    },
                )
    if cfg.select is not None and best_path is not None and best_path.is_file():
        model.load_state_dict(torch.load(best_path, map_location=device, weights_only=False)["model"])
    model.eval()
    model.selected_step = best_step if cfg.select is not None else None  # type: ignore[assignment]
    model.selected_score = best_score if cfg.select is not None else None  # type: ignore[assignment]
    total = elapsed_before + time.perf_counter() - t0
    model.train_seconds = None if total != total else round(total, 1)  # type: ignore[assignment]
    return model


# --------------------------------------------------------------------------- losses


def classifier_loss(net: nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
    """Binary cross-entropy per slice, over the valid (non-padded) slices of each window."""
    x, y, valid = batch
    logits = net(x).float()
    loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (loss * valid).sum() / valid.sum().clamp_min(1.0)


def segmenter_loss(net: nn.Module, batch: list[torch.Tensor], hard_negative_weight: float = 0.0) -> torch.Tensor:
    """BCE + soft Dice over the batch (Dice copes with the small foreground fraction).

    With a third tensor (1.0 for a slice known to hold no blood: labelled negative, empty target) and
    `hard_negative_weight` > 0, that weight times the BCE of each such slice's most confident 1% of
    pixels is added: the mean BCE of a whole slice hardly feels a 20-pixel false call on a calcification,
    a sinus or the inner table, and the slice label says for certain that it is one."""
    x, y = batch[0], batch[1]
    logits = net(x.contiguous(memory_format=torch.channels_last)).float()
    bce = F.binary_cross_entropy_with_logits(logits, y)
    p = torch.sigmoid(logits)
    inter = (p * y).sum()
    dice = 1 - (2 * inter + 1.0) / (p.sum() + y.sum() + 1.0)
    loss = bce + dice
    if hard_negative_weight > 0 and len(batch) > 2:
        neg = batch[2].float()
        flat = logits.flatten(1)
        k = max(1, flat.shape[1] // 100)
        top = F.softplus(flat.topk(k, dim=1).values).mean(1)  # BCE against 0 of the k most confident pixels
        # no flagged slice: adds 0 (and no host sync to ask whether there is one)
        loss = loss + hard_negative_weight * (top * neg).sum() / neg.sum().clamp_min(1.0)
    return loss


@torch.no_grad()
def predict_volume(
    model: nn.Module, inputs: Callable[[int], np.ndarray], n: int, device: str, batch: int = 16
) -> np.ndarray:
    """Segmenter logits for slices 0..n-1 of one volume -> float32 [Z, H, W]."""
    model.eval()
    out = []
    for s in range(0, n, batch):
        x = torch.from_numpy(np.stack([inputs(z) for z in range(s, min(n, s + batch))])).to(device)
        out.append(model(x).float()[:, 0].cpu().numpy())
    return np.concatenate(out)
