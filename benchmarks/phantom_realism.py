"""How realistic is the phantom, and does a Hounsfield threshold fail on it as it should?

Writes benchmarks/reports/phantom/{realism.md, realism.json, histogram.png, montage.png, real_vs_phantom.png}:
- the HU histogram inside the brain mask of phantom slices beside the real head CT of pydicom-data
  (693_UNCR.dcm, CQ500), their Wasserstein distance and the tissue peaks of both;
- the threshold baseline (edge_ich.analysis.baseline) on `standard` cases: per-volume Dice and where it fails
  (false-positive voxels by mimic, missed subtypes);
- a montage of one slice per subtype and per mimic, brain window 40/80;
- generation speed of 40-slice 512x512 cases;
- per condition (standard; hard; hard through the target site's protocol, the experiment's test
  domain) the threshold baseline with its operating point tuned on 8 masked volumes of that
  condition, scored on held-out volumes at the experiment's grid (128 px, 32 slices).

Run:  python benchmarks/phantom_realism.py [--cases 20] [--seed 2024] [--slices 40] [--size 512] [--condition-cases 120]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realism_conditions import conditions as _conditions  # noqa: E402
from realism_conditions import conditions_md as _conditions_md  # noqa: E402

from edge_ich.analysis.baseline import BLOOD_HU, MIN_COMPONENT_ML, threshold_segment  # noqa: E402
from edge_ich.analysis.brain import brain_mask  # noqa: E402
from edge_ich.analysis.metrics import dice  # noqa: E402
from edge_ich.bench.report import save_figure  # noqa: E402
from edge_ich.phantom.generator import MIMICS, SUBTYPES, PhantomCase, case_seed, generate_case  # noqa: E402

OUT = ROOT / "benchmarks" / "reports" / "phantom"
PEAKS = {"csf": (-5, 18), "white": (18, 33), "grey": (33, 48), "blood": (50, 95), "bone": (300, 2500)}


def real_slice() -> np.ndarray:
    """The real head CT slice (HU) shipped by pydicom-data."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("693_UNCR.dcm"))
    return ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def mode_in(values: np.ndarray, lo: float, hi: float, bin_hu: float = 1.0) -> float | None:
    """Most frequent HU within [lo, hi) of a smoothed histogram (None when under 50 voxels fall there)."""
    v = values[(values >= lo) & (values < hi)]
    if v.size < 50:
        return None
    b = max(bin_hu, (hi - lo) / 200)
    h, e = np.histogram(v, bins=np.arange(lo, hi + b, b))
    h = np.convolve(h, np.ones(5) / 5, mode="same")
    return float(e[int(np.argmax(h))] + b / 2)


def peaks(brain: np.ndarray, whole: np.ndarray) -> dict[str, float | None]:
    out = {k: mode_in(brain, *r) for k, r in PEAKS.items() if k != "bone"}
    out["bone"] = mode_in(whole, *PEAKS["bone"], bin_hu=10)
    return out


def mid_slices(c: PhantomCase, m: np.ndarray) -> np.ndarray:
    """Slices at the level of the real slice (supraventricular, large brain area)."""
    area = m.reshape(len(m), -1).sum(1)
    return np.nonzero(area >= 0.7 * area.max())[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--slices", type=int, default=40)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--condition-cases", type=int, default=120, help="held-out volumes per condition (0: skip)")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "cache", help="phantom cache of the conditions")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import wasserstein_distance

    args.out.mkdir(parents=True, exist_ok=True)
    real = real_slice()
    real_m = brain_mask(real)
    real_brain = real[real_m]
    # --- phantom cases: histogram, baseline
    ph_brain, ph_whole, blood_truth = [], [], []
    rows, fp_by_mimic, fn_by_sub, tot_by_sub, gen_cpu = [], {}, {}, {}, []
    missed = {v: [0, 0] for v in SUBTYPES.values()}
    rng = np.random.default_rng(args.seed)
    for i in range(args.cases):
        t0 = time.process_time()
        c = generate_case(case_seed(args.seed, i), "standard", slices=args.slices, size=args.size)
        gen_cpu.append(time.process_time() - t0)
        m = brain_mask(c.hu)
        for k in mid_slices(c, m):
            ph_brain.append(c.hu[k][m[k] & (c.labels[k] == 0)])
        k = int(rng.integers(0, len(c.hu)))
        ph_whole.append(c.hu[k].ravel())
        truth = c.labels > 0
        blood_truth.append(c.hu[truth])
        pred = threshold_segment(c.hu, c.spacing)
        d = dice(pred, truth, empty=1.0)
        vml = float(np.prod(c.spacing)) / 1000
        fp = pred & ~truth
        codes = c.mimic_map[fp] if c.mimic_map is not None else np.zeros(int(fp.sum()), np.uint8)
        for code in np.unique(codes):
            name = MIMICS.get(int(code), "other: parenchyma, noise")
            fp_by_mimic[name] = fp_by_mimic.get(name, 0.0) + float((codes == code).sum()) * vml
        for code, name in SUBTYPES.items():
            t = c.labels == code
            if t.any():
                tot_by_sub[name] = tot_by_sub.get(name, 0.0) + float(t.sum()) * vml
                fn_by_sub[name] = fn_by_sub.get(name, 0.0) + float((t & ~pred).sum()) * vml
                missed[name][1] += 1
                missed[name][0] += int((t & pred).sum() < 0.1 * t.sum())
        rows.append(
            {
                "case": i,
                "positive": bool(truth.any()),
                "subtypes": c.meta["subtypes"],
                "dice": d,
                "truth_ml": float(truth.sum()) * vml,
                "pred_ml": float(pred.sum()) * vml,
                "fp_ml": float(fp.sum()) * vml,
                "thickness": c.meta["thickness"],
                "lesions": c.meta["lesions"],
            }
        )
        print(
            f"case {i}: {c.meta['subtypes']} dice {d:.3f} fp {rows[-1]['fp_ml']:.2f} mL ({gen_cpu[-1]:.2f} s cpu)",
            flush=True,
        )
    ph_b = np.concatenate(ph_brain).astype(np.float32)
    ph_w = np.concatenate(ph_whole).astype(np.float32)
    blood = np.concatenate(blood_truth) if blood_truth else np.zeros(0)
    rng_lo, rng_hi = -20, 120
    rb = real_brain[(real_brain >= rng_lo) & (real_brain <= rng_hi)]
    pb = ph_b[(ph_b >= rng_lo) & (ph_b <= rng_hi)]
    wd = float(wasserstein_distance(rb, pb))
    p_real, p_ph = peaks(real_brain, real.ravel()), peaks(ph_b, ph_w)
    p_ph["blood"] = mode_in(blood, *PEAKS["blood"]) if blood.size else None
    dices = [r["dice"] for r in rows]
    pos = [r["dice"] for r in rows if r["positive"]]
    neg = [r for r in rows if not r["positive"]]
    speed = _speed(args.size)
    result: dict[str, Any] = {
        "command": "python benchmarks/phantom_realism.py " + " ".join(sys.argv[1:]),
        "histogram": {
            "range_hu": [rng_lo, rng_hi],
            "wasserstein_hu": wd,
            "real_voxels": int(rb.size),
            "phantom_voxels": int(pb.size),
            "real_mean": float(rb.mean()),
            "phantom_mean": float(pb.mean()),
            "real_std": float(rb.std()),
            "phantom_std": float(pb.std()),
        },
        "peaks_hu": {"real_693_UNCR": p_real, "phantom": p_ph},
        "baseline": {
            "blood_hu": list(BLOOD_HU),
            "min_component_ml": MIN_COMPONENT_ML,
            "dice_convention": "per volume; 1.0 when truth and prediction are both empty, 0.0 when only one is",
            "mean_dice_all": float(np.mean(dices)),
            "mean_dice_positive": float(np.mean(pos)) if pos else None,
            "negatives_with_false_positive": f"{sum(r['pred_ml'] > 0 for r in neg)}/{len(neg)}",
            "fp_ml_by_mimic": {k: round(v, 3) for k, v in sorted(fp_by_mimic.items(), key=lambda kv: -kv[1])},
            "fn_ml_by_subtype": {k: round(v, 3) for k, v in fn_by_sub.items()},
            "truth_ml_by_subtype": {k: round(v, 3) for k, v in tot_by_sub.items()},
            "lesions_missed_by_subtype": {k: f"{v[0]}/{v[1]}" for k, v in missed.items() if v[1]},
            "cases": rows,
        },
        "conditions": _conditions(args.condition_cases, args.cache) if args.condition_cases else [],
        "speed": speed | {"cpu_s_per_case_in_run": [round(t, 3) for t in gen_cpu]},
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "loadavg": os.getloadavg()},
    }
    (args.out / "realism.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    _plot_hist(plt, rb, pb, p_real, p_ph, wd, args.out / "histogram.png")
    _plot_real_vs_phantom(plt, real, args, args.out / "real_vs_phantom.png")
    _montage(plt, args, args.out / "montage.png")
    (args.out / "realism.md").write_text(_markdown(result))
    print(f"wrote {args.out}/realism.md: W1 {wd:.2f} HU, baseline mean Dice {np.mean(dices):.3f}")


def _speed(size: int) -> dict[str, Any]:
    """CPU seconds for 40-slice cases at `size` (process time, so other load on the machine matters less)."""
    cpu, wall = [], []
    for s in range(3):
        t0, w0 = time.process_time(), time.perf_counter()
        generate_case(900 + s, "standard", slices=40, size=size)
        cpu.append(time.process_time() - t0)
        wall.append(time.perf_counter() - w0)
    return {
        "size": size,
        "slices": 40,
        "cpu_s": [round(t, 3) for t in cpu],
        "wall_s": [round(t, 3) for t in wall],
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
    }


def _plot_hist(plt: Any, rb: np.ndarray, pb: np.ndarray, p_real: dict, p_ph: dict, wd: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.2))
    bins = np.arange(-20.5, 121, 1)  # integer HU: centre the bins on integers
    ax.hist(rb, bins=bins, density=True, alpha=0.55, label="real head CT (pydicom-data 693_UNCR.dcm)")
    ax.hist(pb, bins=bins, density=True, alpha=0.55, label="phantom, standard (mid-brain slices)")
    for name in ("csf", "white", "grey"):
        for p, col in ((p_real, "C0"), (p_ph, "C1")):
            if p.get(name) is not None:
                ax.axvline(p[name], color=col, lw=0.8, ls="--")
    ax.set_xlabel("HU inside the brain mask (edge_ich.analysis.brain.brain_mask)")
    ax.set_ylabel("density")
    ax.set_title(f"Brain HU histogram: Wasserstein-1 = {wd:.2f} HU")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _window(img: np.ndarray, c: float = 40, w: float = 80) -> np.ndarray:
    return np.clip((img - (c - w / 2)) / w, 0, 1)


def _plot_real_vs_phantom(plt: Any, real: np.ndarray, args: argparse.Namespace, path: Path) -> None:
    c = generate_case(case_seed(args.seed, 1000), "standard", slices=36, thickness=4.0, size=512, positive=False)
    m = brain_mask(c.hu)
    k = int(mid_slices(c, m)[len(mid_slices(c, m)) // 2])
    fig, ax = plt.subplots(1, 3, figsize=(13, 4.6))
    ax[0].imshow(_window(real), cmap="gray")
    ax[0].set_title("real: 693_UNCR.dcm (brain 40/80)")
    ax[1].imshow(_window(c.hu[k].astype(np.float32)), cmap="gray")
    ax[1].set_title(f"phantom slice {k} (brain 40/80)")
    ax[2].imshow(_window(c.hu[k].astype(np.float32), 40, 380), cmap="gray")
    ax[2].set_title("phantom, wide 40/380")
    for a in ax:
        a.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def _crop(img: np.ndarray) -> tuple[slice, slice]:
    ys, xs = np.nonzero(img > -500)
    if ys.size == 0:
        return slice(None), slice(None)
    return slice(max(ys.min() - 6, 0), ys.max() + 7), slice(max(xs.min() - 6, 0), xs.max() + 7)


def _montage(plt: Any, args: argparse.Namespace, path: Path) -> None:
    """One slice per subtype (truth outlined in red on the right half) and per mimic (region in yellow)."""
    tiles: list[tuple[str, np.ndarray, np.ndarray | None, str]] = []
    for j, name in enumerate(SUBTYPES.values()):
        for t in range(6):  # show a convexity SAH (basal ones are drawn too, and look more schematic)
            c = generate_case(
                case_seed(args.seed, 2000 + 10 * j + t), "standard", slices=36, thickness=4.0, size=512, subtypes=[name]
            )
            if c.meta["positive"] and c.meta["lesions"][0]["kind"] != "basal":
                break
        area = (c.labels > 0).reshape(len(c.labels), -1).sum(1)
        k = int(np.argmax(area))
        kind = c.meta["lesions"][0]["kind"]
        tiles.append((f"{name}{' (' + kind + ')' if kind else ''}", c.hu[k], c.labels[k] > 0, "r"))
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for s in range(30):
        if len(found) == len(MIMICS):
            break
        c = generate_case(
            case_seed(args.seed, 3000 + s), "standard", slices=36, thickness=4.0, size=512, positive=False
        )
        if c.mimic_map is None:
            continue
        brain_area = brain_mask(c.hu).reshape(len(c.hu), -1).sum(1)
        level = brain_area >= 0.85 * brain_area.max()  # supratentorial slices for the brain mimics
        for code, name in MIMICS.items():
            if name in found or (code + s) % 3 and s < 9:  # spread the tiles over several cases
                continue
            area = (c.mimic_map == code).reshape(len(c.hu), -1).sum(1)
            if name not in ("skull_base", "streak"):
                area = area * level
            if area.max() > 0:
                k = int(np.argmax(area))
                found[name] = (c.hu[k], c.mimic_map[k] == code)
    for name in MIMICS.values():
        if name in found:
            tiles.append((f"mimic: {name}", *found[name], "y"))
    n = len(tiles)
    cols = 5
    rws = (n + cols - 1) // cols
    fig, axs = plt.subplots(rws, cols, figsize=(cols * 3.4, rws * 3.6))
    for a in axs.ravel():
        a.axis("off")
    for a, (title, img, mask, col) in zip(axs.ravel(), tiles):
        sy, sx = _crop(img)
        a.imshow(_window(img.astype(np.float32))[sy, sx], cmap="gray", interpolation="lanczos")
        if mask is not None and mask.any():
            a.contour(mask[sy, sx], [0.5], colors=col, linewidths=0.6)
        a.set_title(title, fontsize=9)
    fig.suptitle("Phantom, brain window 40/80: subtypes (truth in red) and mimics (region in yellow)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=70)


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def _markdown(r: dict[str, Any]) -> str:
    h, b, p = r["histogram"], r["baseline"], r["peaks_hu"]
    lines = [
        "# Phantom realism report",
        "",
        f"Made by `{r['command']}` (numbers below come from `realism.json`).",
        "",
        "## Brain HU histogram, phantom vs a real head CT",
        "",
        "Real: pydicom-data `693_UNCR.dcm` (CQ500 head CT, one 5 mm slice). Phantom: `standard` cases, slices at",
        "the level of the largest brain area, hemorrhage voxels excluded. Both inside `edge_ich.analysis.brain.brain_mask`,",
        f"HU {h['range_hu'][0]}..{h['range_hu'][1]}.",
        "",
        f"- Wasserstein-1 distance: **{h['wasserstein_hu']:.2f} HU**",
        f"- mean +- sd: real {h['real_mean']:.1f} +- {h['real_std']:.1f} HU; phantom {h['phantom_mean']:.1f} +- {h['phantom_std']:.1f} HU",
        "",
        "| tissue peak (HU, histogram mode) | real 693_UNCR | phantom |",
        "|---|---|---|",
    ]
    for k in PEAKS:
        lines.append(f"| {k} | {_fmt(p['real_693_UNCR'].get(k))} | {_fmt(p['phantom'].get(k))} |")
    lines += [
        "",
        "Blood in the phantom is the mode of labelled voxels; the real slice has no labels (its blood-range",
        "mode is shown when 50+ voxels fall in 50..95 HU).",
        "",
        "![histogram](histogram.png)",
        "",
        "![real vs phantom](real_vs_phantom.png)",
        "",
        *_conditions_md(r.get("conditions", [])),
        "## Threshold baseline on `standard`",
        "",
        f"`edge_ich.analysis.baseline.threshold_segment`: HU {b['blood_hu'][0]:g}..{b['blood_hu'][1]:g} inside the brain mask,",
        f"3D components >= {b['min_component_ml']} mL. Dice convention: {b['dice_convention']}.",
        "",
        f"- mean per-volume Dice, all {len(b['cases'])} cases: **{b['mean_dice_all']:.3f}**",
        f"- mean per-volume Dice, positive cases: **{_f3(b['mean_dice_positive'])}**",
        f"- negative cases with a false positive: {b['negatives_with_false_positive']}",
        "",
        "### Where it fails: false-positive volume by mimic",
        "",
        "| mimic | FP mL (all cases) |",
        "|---|---|",
    ]
    for k, v in b["fp_ml_by_mimic"].items():
        lines.append(f"| {k} | {v:.2f} |")
    lines += [
        "",
        "### Where it fails: missed blood by subtype",
        "",
        "| subtype | truth mL | missed mL | lesions missed (<10% found) |",
        "|---|---|---|---|",
    ]
    for k, v in b["truth_ml_by_subtype"].items():
        lines.append(
            f"| {k} | {v:.2f} | {b['fn_ml_by_subtype'][k]:.2f} | {b['lesions_missed_by_subtype'].get(k, '')} |"
        )
    lines += ["", "| case | subtypes | truth mL | predicted mL | FP mL | Dice |", "|---|---|---|---|---|---|"]
    for c in b["cases"]:
        lines.append(
            f"| {c['case']} | {', '.join(c['subtypes']) or '-'} | {c['truth_ml']:.2f} | {c['pred_ml']:.2f} | "
            f"{c['fp_ml']:.2f} | {c['dice']:.3f} |"
        )
    s = r["speed"]
    lines += [
        "",
        "## Montage",
        "",
        "![montage](montage.png)",
        "",
        "## Speed",
        "",
        f"40-slice {s['size']}x{s['size']} cases, CPU seconds of this process: {s['cpu_s']} (wall {s['wall_s']});",
        f"OPENBLAS_NUM_THREADS={s['openblas_threads']}, load average during the run {r['machine']['loadavg']}.",
        "",
    ]
    return "\n".join(lines)


def _f3(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main()
