"""Build small CT series for tests from one real slice (pydicom-data's CQ500 head CT by default).

Each slice is the real image shifted down by k rows (k = anatomical index, inferior -> superior)
with a marker: HU at row 0, cols 0..3 equals MARKER_BASE + k, so tests can check slice order
with `marker_of(hu)`. New UIDs, positions along the normal, shuffled file names (some without
`.dcm`), fake patient identifiers (PATIENT_NAME / PATIENT_ID) that must never reach a message.
"""

from __future__ import annotations

import copy
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np

PATIENT_NAME = "Secret^Patient"
PATIENT_ID = "PID-SECRET-4242"
MARKER_BASE = 1000


def default_source() -> Path:
    """The real 512x512 head CT slice from pydicom-data (CQ500, uncompressed)."""
    from pydicom.data import get_testdata_file

    p = get_testdata_file("693_UNCR.dcm")
    if p is None:
        p = get_testdata_file("CT_small.dcm")
    return Path(p)


def marker_of(hu: np.ndarray) -> int:
    """The anatomical index k written by make_series into a slice (read back from HU)."""
    return int(round(float(hu[0, 0]))) - MARKER_BASE


def _encode(ds, transfer_syntax: str) -> None:
    """Re-encode ds in place (pydicom's encoders; dcmtk's dcmcjpeg for JPEG lossless)."""
    from pydicom.uid import UID

    ts = UID(transfer_syntax)
    if ts.is_compressed:
        ds.compress(ts)
    else:
        ds.file_meta.TransferSyntaxUID = ts


def _dcmtk_jpeg_lossless(path: Path) -> None:
    exe = Path("/usr/bin/dcmcjpeg")
    if not exe.exists():
        raise RuntimeError("dcmtk's dcmcjpeg is not installed")
    tmp = path.with_suffix(path.suffix + ".jll")
    subprocess.run([str(exe), "+e1", str(path), str(tmp)], check=True, capture_output=True)
    tmp.replace(path)


def make_series(
    out_dir: Path,
    n: int = 8,
    from_file: Path | None = None,
    reverse: bool = False,
    flip: bool = False,
    spacing: float = 5.0,
    tilt: float = 0.0,
    transfer_syntax: str | None = None,
    modality: str = "CT",
    size: int | None = None,
    series_uid: str | None = None,
    study_uid: str | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write n slices of one series into out_dir; returns the paths in anatomical order (inferior first).

    reverse: InstanceNumber and file order run superior -> inferior. flip: rows stored mirrored
    (ImageOrientationPatient row cosine -1, same anatomy in patient space). tilt: gantry tilt in
    degrees (positions shift along the column direction). size: decimate to about size x size
    pixels (faster tests). transfer_syntax: UID to re-encode with (RLE, JPEG-LS, JPEG 2000 via
    pydicom; JPEG Lossless SV1 via dcmtk).
    """
    import pydicom
    from pydicom.uid import JPEGLosslessSV1, generate_uid

    rng = random.Random(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    src = pydicom.dcmread(from_file or default_source())
    base = src.pixel_array.astype(np.int32)
    del src.PixelData  # each slice is a deep copy of the header with new pixels
    ps = [float(x) for x in src.PixelSpacing]
    if size is not None and size < base.shape[0]:
        f = max(1, base.shape[0] // size)
        base = base[::f, ::f]
        ps = [ps[0] * f, ps[1] * f]
    rows, cols = base.shape
    slope = float(src.get("RescaleSlope", 1) or 1)
    intercept = float(src.get("RescaleIntercept", 0) or 0)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    r = np.array([-1.0, 0.0, 0.0]) if flip else np.array([1.0, 0.0, 0.0])
    c = np.array([0.0, 1.0, 0.0])
    origin0 = np.array([-(cols - 1) * ps[1] / 2, -(rows - 1) * ps[0] / 2, 0.0])
    if flip:
        origin0[0] = -origin0[0]
    names = [f"{rng.getrandbits(40):010x}" + (".dcm" if rng.random() < 0.5 else "") for _ in range(n)]
    paths: list[Path] = []
    for k in range(n):
        ds = copy.deepcopy(src)
        img = np.roll(base, k, axis=0)
        if flip:
            img = img[:, ::-1]
        raw = img.copy()
        raw[0, :4] = round((MARKER_BASE + k - intercept) / slope)
        lo, hi = (-32768, 32767) if int(src.PixelRepresentation) == 1 else (0, 65535)
        raw = np.clip(raw, lo, hi).astype(np.int16 if int(src.PixelRepresentation) == 1 else np.uint16)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.add_new(0x7FE00010, "OW", raw.tobytes())
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelSpacing = [f"{ps[0]:.6f}", f"{ps[1]:.6f}"]
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = study_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = modality
        ds.PatientName = PATIENT_NAME
        ds.PatientID = PATIENT_ID
        z = k * spacing
        pos = origin0 + z * np.array([0.0, 0.0, 1.0]) + np.tan(np.radians(tilt)) * z * c
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in np.concatenate([r, c])]
        ds.SliceThickness = f"{spacing:.3f}"
        ds.SliceLocation = f"{z:.4f}"
        ds.InstanceNumber = (n - k) if reverse else (k + 1)
        if tilt:
            ds.GantryDetectorTilt = f"{tilt:.2f}"
        if "WindowCenter" in ds:
            del ds.WindowCenter
            del ds.WindowWidth
        if transfer_syntax and transfer_syntax != JPEGLosslessSV1:
            _encode(ds, transfer_syntax)
        idx = (n - 1 - k) if reverse else k
        p = out_dir / names[idx]
        ds.save_as(p, enforce_file_format=True)
        if transfer_syntax == JPEGLosslessSV1:
            _dcmtk_jpeg_lossless(p)
        paths.append(p)
    return paths


def copy_series(paths: list[Path], out_dir: Path) -> list[Path]:
    """Copy files into out_dir keeping their names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(p, out_dir / p.name)) for p in paths]


def edit(path: Path, fn) -> Path:
    """Read a file, let fn(ds) change it in place, write it back (same transfer syntax)."""
    import pydicom

    ds = pydicom.dcmread(path)
    fn(ds)
    ds.save_as(path)
    return path


def write_text(path: Path, text: str = "not a DICOM file\n") -> Path:
    """A non-DICOM file (e.g. a stray notes file in a series folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def truncate(path: Path, keep_fraction: float = 0.5) -> Path:
    """Cut a file short (simulates an interrupted copy)."""
    data = path.read_bytes()
    path.write_bytes(data[: max(200, int(len(data) * keep_fraction))])
    return path
