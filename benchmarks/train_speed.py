"""Training-step speed on this CPU: fp32, channels_last and bf16 autocast, side by side in one run.

For the classifier (ResNet + BiLSTM over 8-slice windows, the bundled model's settings) and the
segmenter (2.5D U-Net, base 8, batch 16), one AdamW step each way, alternating between the variants
so machine load hits them alike; median seconds per step and the speed-up over plain fp32.
Also the largest difference of the bf16 loss from fp32 on the same batch, as a first accuracy check.

    python benchmarks/train_speed.py [--size 128] [--repeats 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import _common  # noqa: F401  (puts the repo root on sys.path)
import numpy as np
from _common import command_line, env_block, env_lines, write_report

from edge_ich.bench import envinfo

VARIANTS = (("fp32", False, False), ("fp32 channels_last", False, True), ("bf16 channels_last", True, True))


def _step_fn(kind: str, size: int, amp: bool, cl: bool) -> tuple[Any, Any]:
    import torch
    from torch.nn import functional as F

    from training.models import SliceSequenceClassifier, UNet25D

    torch.manual_seed(0)
    if kind == "classifier":
        model: torch.nn.Module = SliceSequenceClassifier(3, (16, 32, 48, 64), 64, "lse", stride=4)
        x = torch.rand(4, 8, 3, size, size)
        y = torch.rand(4, 8).round()
    else:
        model = UNet25D(9, 8)
        x = torch.rand(16, 9, size, size)
        y = torch.rand(16, 1, size, size).round()
    if cl:
        model = model.to(memory_format=torch.channels_last)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)

    def step() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(x).float()
        loss = F.binary_cross_entropy_with_logits(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    acct = envinfo.CpuAccount().start()
    rows: list[dict[str, Any]] = []
    for kind in ("classifier", "segmenter"):
        fns = {name: _step_fn(kind, a.size, amp, cl)[0] for name, amp, cl in VARIANTS}
        first_loss = {name: fn() for name, fn in fns.items()}  # warm-up; same weights and batch: comparable
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(a.repeats):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        base = float(np.median(times["fp32"]))
        for name, _, _ in VARIANTS:
            med = float(np.median(times[name]))
            rows.append(
                {
                    "network": kind,
                    "variant": name,
                    "s_per_step_median": round(med, 4),
                    "speedup_vs_fp32": round(base / med, 2),
                    "first_loss_diff_vs_fp32": round(abs(first_loss[name] - first_loss["fp32"]), 5),
                }
            )
            print(f"{kind:10s} {name:20s} {med:.3f} s/step  x{base / med:.2f}", flush=True)
    load = acct.stop(threads_used=a.threads)
    doc = {
        "command": command_line(),
        "size": a.size,
        "repeats": a.repeats,
        "rows": rows,
        "environment": env_block(a.threads),
        "machine_load": load,
    }
    md = [
        "# Training-step speed on the CPU: fp32, channels_last, bf16 autocast",
        "",
        f"`{command_line()}`; input {a.size} px; median of {a.repeats} steps per variant, variants alternating.",
        "",
        "| network | variant | s per step (median) | speed-up vs fp32 | first-step loss difference vs fp32 |",
        "|---|---|---|---|---|",
    ]
    md += [
        f"| {r['network']} | {r['variant']} | {r['s_per_step_median']:.3f} | {r['speedup_vs_fp32']:.2f} | "
        f"{r['first_loss_diff_vs_fp32']:.5f} |"
        for r in rows
    ]
    md += ["", *env_lines(doc["environment"], load)]
    print(f"-> {write_report('train_speed', doc, md)}")


if __name__ == "__main__":
    main()
