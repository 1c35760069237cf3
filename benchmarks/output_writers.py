"""How long the run's output writers take on a 40-slice 512x512 head-CT series.

Series: copies of the real CQ500 slice pydicom-data ships (693_UNCR.dcm) at 5 mm, headers only
for the SEG (as the runner passes them), a lesion on 8 of the 40 slices. Measures the DICOM SEG
(frames only where the mask is non-empty, the writer's policy, and all frames for comparison),
the NIfTI mask (.nii.gz) and three key-image PNGs; the first call of each (imports, highdicom's
standard tables) is reported apart as the cold time.

    python benchmarks/output_writers.py [--slices 40]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _common import command_line, time_calls, write_report  # type: ignore[import-not-found]


class _MemorySeries:
    """A sorted in-memory series (SliceSource + headers) built from one real slice."""

    kind = "dicom"

    def __init__(self, n: int) -> None:
        import pydicom
        from pydicom.data import get_testdata_file
        from pydicom.uid import generate_uid

        from edge_ich.sources.volume import Geometry, affine_from_dicom

        ds = pydicom.dcmread(get_testdata_file("693_UNCR.dcm"))
        self._hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        del ds.PixelData
        series, frame = generate_uid(), generate_uid()
        origin = np.asarray(ds.ImagePositionPatient, dtype=float)
        self.headers = []
        for k in range(n):
            h = copy.deepcopy(ds)
            h.SeriesInstanceUID, h.FrameOfReferenceUID, h.SOPInstanceUID = series, frame, generate_uid()
            h.ImagePositionPatient = [float(v) for v in origin + [0.0, 0.0, 5.0 * k]]
            h.InstanceNumber = k + 1
            self.headers.append(h)
        row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
        aff = affine_from_dicom(
            np.asarray(ds.ImageOrientationPatient, dtype=float), origin, row_mm, col_mm, np.array([0, 0, 5.0])
        )
        self.geometry = Geometry((n, int(ds.Rows), int(ds.Columns)), (5.0, row_mm, col_mm), aff)
        self.skipped: list[Any] = []

    def read_hu(self, i: int) -> np.ndarray:
        return self._hu.copy()


def _lesion_mask(shape: tuple[int, int, int]) -> tuple[np.ndarray, range]:
    z, y, x = shape
    mask = np.zeros(shape, dtype=bool)
    yy, xx = np.mgrid[:y, :x]
    lesion = range(z // 3, z // 3 + 8)
    for k in lesion:
        mask[k] = ((yy - 230) / 30.0) ** 2 + ((xx - 300) / 22.0) ** 2 < 1.0
    return mask, lesion


def _child_cold(slices: int, warm: bool) -> None:
    """In a fresh process: import highdicom, optionally warm_up, then time the first real SEG (JSON on stdout)."""
    t0 = time.perf_counter()
    from edge_ich.outputs.seg import warm_up, write_seg

    src = _MemorySeries(slices)
    mask, _ = _lesion_mask(src.geometry.shape)
    t1 = time.perf_counter()
    import highdicom  # noqa: F401

    t_import = time.perf_counter() - t1
    t_warm = warm_up() if warm else 0.0
    out = Path(tempfile.mkdtemp(prefix="edge-ich-cold-")) / "seg.dcm"
    t2 = time.perf_counter()
    write_seg(out, mask, src.headers, algorithm_name="edge-ich-bench", algorithm_version="0")
    print(
        json.dumps(
            {
                "import_highdicom_s": t_import,
                "warm_up_s": t_warm,
                "first_seg_s": time.perf_counter() - t2,
                "setup_s": t1 - t0,
            }
        )
    )


def _cold(slices: int, warm: bool) -> dict[str, float]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--slices",
        str(slices),
        "--child-cold",
        "warm" if warm else "none",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=40)
    ap.add_argument("--child-cold", choices=["none", "warm"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_cold:
        _child_cold(args.slices, args.child_cold == "warm")
        return
    import os

    load_before = os.getloadavg()
    cold = {"no warm-up": _cold(args.slices, False), "after warm_up()": _cold(args.slices, True)}

    from edge_ich.outputs.keyimages import write_key_images
    from edge_ich.outputs.nifti import write_mask_nifti
    from edge_ich.outputs.seg import write_seg

    src = _MemorySeries(args.slices)
    z, y, x = src.geometry.shape
    mask, lesion = _lesion_mask((z, y, x))
    out = Path(tempfile.mkdtemp(prefix="edge-ich-outputs-"))
    kw = {"algorithm_name": "edge-ich-bench", "algorithm_version": "0"}

    def seg() -> None:
        write_seg(out / "seg.dcm", mask, src.headers, **kw)

    # the same SEG with all frames kept (omit_empty_frames=False): what omitting empty frames saves
    import highdicom as hd
    from pydicom.uid import generate_uid

    from edge_ich.outputs.seg import _segment_description

    def seg_all() -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*person name.*")  # it quotes the patient's name
            s = _seg_all()
        s.save_as(out / "seg_all.dcm", enforce_file_format=True)

    def _seg_all() -> Any:
        return hd.seg.Segmentation(
            source_images=src.headers,
            pixel_array=mask.astype(np.uint8),
            segmentation_type="BINARY",
            segment_descriptions=[_segment_description(hd, "edge-ich-bench", "0")],
            series_instance_uid=generate_uid(),
            series_number=9901,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="edge-ich",
            manufacturer_model_name="edge-ich",
            software_versions="0",
            device_serial_number="0",
            omit_empty_frames=False,
        )

    stats = {
        "seg (non-empty frames, written atomically)": time_calls(seg, warmup=1, min_iters=5, budget_s=5.0),
        "seg (all frames, for comparison)": time_calls(seg_all, warmup=1, min_iters=5, budget_s=5.0),
        "nifti mask .nii.gz": time_calls(
            lambda: write_mask_nifti(out / "mask.nii.gz", mask, src), warmup=1, min_iters=5
        ),
        "3 key-image PNGs": time_calls(
            lambda: write_key_images(out / "keys", src, mask, [z // 3, z // 3 + 3, z // 3 + 7]), warmup=1, min_iters=5
        ),
    }
    sizes = {
        "seg.dcm": (out / "seg.dcm").stat().st_size,
        "seg_all.dcm": (out / "seg_all.dcm").stat().st_size,
        "mask.nii.gz": (out / "mask.nii.gz").stat().st_size,
    }
    doc = {
        "command": command_line(),
        "series": {"slices": z, "rows": y, "cols": x, "lesion_slices": len(lesion), "source": "693_UNCR.dcm copies"},
        "cold_first_seg_in_fresh_process_s": cold,
        "seconds": {k: v.to_dict() for k, v in stats.items()},
        "bytes": sizes,
        "cpus": os.cpu_count(),
        "loadavg_1_5_15_before": load_before,
        "loadavg_1_5_15_after": os.getloadavg(),
    }
    md = [
        "# Output writers",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Series: {z} x {y} x {x} (real CQ500 slice copies), lesion on {len(lesion)} slices. "
        f"{os.cpu_count()} CPUs, load average (1 min) {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after: "
        "a load above the CPU count inflates every number here.",
        "",
        "First SEG in a fresh process (highdicom loads its DICOM-standard tables once per process):",
        "",
        "| case | import highdicom ms | warm_up() ms | first SEG write ms |",
        "|---|---|---|---|",
    ]
    for k, c in cold.items():
        md.append(
            f"| {k} | {c['import_highdicom_s'] * 1000:.0f} | {c['warm_up_s'] * 1000:.0f} | {c['first_seg_s'] * 1000:.0f} |"
        )
    md += [
        "",
        "Warm (same process, after the first):",
        "",
        "| writer | median ms | min ms | max ms | n |",
        "|---|---|---|---|---|",
    ]
    for k, s in stats.items():
        md.append(f"| {k} | {s.median * 1000:.1f} | {s.min * 1000:.1f} | {s.max * 1000:.1f} | {s.n} |")
    md += ["", "| file | bytes |", "|---|---|"] + [f"| {k} | {v} |" for k, v in sizes.items()]
    folder = write_report("output_writers", doc, md)
    print("\n".join(md))
    print(f"\nreport: {folder}")


if __name__ == "__main__":
    main()
