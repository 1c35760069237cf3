"""Small format-faithful copies of the public ICH datasets, built by the tests themselves.

Each builder writes files laid out exactly as the real dataset lies on disk (names, folders,
CSV headers, DICOM tags, NIfTI orientation) but with a few 32x32 slices, and returns the
truth it wrote in edge_ich's conventions: HU float32 [Z, Y, X] in ascending slice order and
display orientation (rows -> posterior, cols -> patient left), masks and labels per slice.

The synthetic head is simple but asymmetric on purpose: a bright marker sits anterior and on
the patient's left, and brain HU changes with the slice index, so a flip, a rotation or a
wrong slice order changes the volume and a test comparing arrays fails.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUBTYPE_NAMES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass
class TruthCase:
    """What a builder wrote for one scan, in the Case contract's conventions."""

    case_id: str
    hu: np.ndarray  # float32 [Z, Y, X], ascending, display orientation
    spacing: tuple[float, float, float]
    slice_labels: np.ndarray  # uint8 [Z]
    subtype_labels: np.ndarray | None  # uint8 [Z, 5]
    mask: np.ndarray | None  # uint8 [Z, Y, X]
    meta: dict = field(default_factory=dict)


def synthetic_head(n: int, size: int, lesions: dict[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A toy head [n, size, size] in HU (integers) and its lesion mask with subtype codes.

    lesions maps slice index -> code (1..5, the Subtype order); a blob of blood-range HU is
    drawn on the patient's left on those slices.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2.0
    r = np.hypot((yy - c) / (0.42 * size), (xx - c) / (0.36 * size))
    hu = np.full((n, size, size), -1000.0, dtype=np.float32)
    mask = np.zeros((n, size, size), dtype=np.uint8)
    for z in range(n):
        s = hu[z]
        s[r < 1.0] = 900.0  # skull
        s[r < 0.85] = 20.0 + z  # brain, a different value on every slice
        s[r < 0.85] += rng.integers(-3, 4, size=int((r < 0.85).sum()))
        s[1:3, size - 4 : size - 1] = 400.0  # marker: anterior (low rows), patient left (high cols)
        code = lesions.get(z)
        if code:
            blob = np.hypot(yy - c, xx - (c + 0.18 * size)) < 0.12 * size
            s[blob] = 70.0
            mask[z][blob] = code
    return hu, mask


def labels_from_mask(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slice labels and [Z, 5] subtype labels from a coded mask."""
    flat = mask.reshape(mask.shape[0], -1)
    sub = np.stack([(flat == k + 1).any(axis=1) for k in range(5)], axis=1).astype(np.uint8)
    return (flat.max(axis=1) > 0).astype(np.uint8), sub


# --------------------------------------------------------------------------- DICOM


def write_ct_slice(
    path: Path,
    hu: np.ndarray,
    *,
    sop_uid: str,
    series_uid: str,
    study_uid: str,
    position: tuple[float, float, float],
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    pixel_spacing: tuple[float, float] = (0.5, 0.5),
    thickness: float = 5.0,
    instance_number: int = 1,
    intercept: float = -1024.0,
    rsna_quirk: bool = False,
    multi_window: bool = False,
    patient_id: str = "ANON",
) -> None:
    """One CT Image Storage file holding `hu` (integers) as 16-bit unsigned stored values.

    RSNA-style `ID_...` UIDs are invalid on purpose, so pydicom's value validation is off here.

    rsna_quirk writes the RSNA 12-bit variant: stored = HU mod 4096 with an intercept > -100,
    which only reads back right after the documented fix (add 1000, wrap at 4096, intercept -1000).
    """
    from pydicom.config import disable_value_validation

    with disable_value_validation():
        _write_ct_slice(
            path,
            hu,
            sop_uid=sop_uid,
            series_uid=series_uid,
            study_uid=study_uid,
            position=position,
            orientation=orientation,
            pixel_spacing=pixel_spacing,
            thickness=thickness,
            instance_number=instance_number,
            intercept=intercept,
            rsna_quirk=rsna_quirk,
            multi_window=multi_window,
            patient_id=patient_id,
        )


def _write_ct_slice(
    path: Path,
    hu: np.ndarray,
    *,
    sop_uid: str,
    series_uid: str,
    study_uid: str,
    position: tuple[float, float, float],
    orientation: tuple[float, ...],
    pixel_spacing: tuple[float, float],
    thickness: float,
    instance_number: int,
    intercept: float,
    rsna_quirk: bool,
    multi_window: bool,
    patient_id: str,
) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    hu_i = np.rint(hu).astype(np.int32)
    if rsna_quirk:
        stored = np.mod(hu_i, 4096).astype(np.uint16)
        bits_stored, intercept = 12, 1.0
    else:
        stored = (hu_i - int(intercept)).astype(np.uint16)
        bits_stored = 16 if stored.max() >= 4096 else 12
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = series_uid + ".1" if series_uid[0].isdigit() else series_uid + "_FOR"
    ds.PatientID = patient_id
    ds.PatientName = "ANON^FIXTURE"
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.SliceThickness = float(thickness)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(v) for v in stored.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = 1.0
    ds.RescaleType = "HU"
    if multi_window:
        ds.WindowCenter = [36.0, 36.0]
        ds.WindowWidth = [80.0, 80.0]
    else:
        ds.WindowCenter = 40.0
        ds.WindowWidth = 80.0
    ds.PixelData = stored.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_series(
    folder: Path,
    hu: np.ndarray,
    *,
    series_uid: str,
    study_uid: str,
    sop_uids: list[str],
    names: list[str],
    spacing: tuple[float, float, float] = (5.0, 0.5, 0.5),
    reverse_z: bool = False,
    **kw: object,
) -> None:
    """Write volume `hu` (ascending, display orientation) as one axial series.

    reverse_z numbers the instances downwards (InstanceNumber runs against the positions), so a
    reader that sorted by InstanceNumber or by name would return the slices in the wrong order.
    """
    n = hu.shape[0]
    for z in range(n):
        pos = (0.0, 0.0, -40.0 + z * spacing[0])
        write_ct_slice(
            folder / names[z],
            hu[z],
            sop_uid=sop_uids[z],
            series_uid=series_uid,
            study_uid=study_uid,
            position=pos,
            pixel_spacing=(spacing[1], spacing[2]),
            thickness=spacing[0],
            instance_number=(n - z) if reverse_z else (z + 1),
            **kw,
        )  # type: ignore[arg-type]


def uid(prefix: str, *parts: int) -> str:
    """A valid numeric DICOM UID built from small integers."""
    return "1.2.826.0.1.3680043.8.498." + prefix + "." + ".".join(str(p) for p in parts)


# --------------------------------------------------------------------------- RSNA


@dataclass
class RsnaFixture:
    root: Path
    csv: Path
    cases: dict[str, TruthCase]  # by SeriesInstanceUID
    ids: dict[str, list[str]]  # series uid -> image IDs in ascending slice order


def make_rsna(root: Path, n_series: int = 2, n_slices: int = 5, size: int = 32, seed: int = 0) -> RsnaFixture:
    """`stage_2_train/ID_<id>.dcm` + `stage_2_train.csv` (`ID,Label`, six rows per image, duplicates).

    As in the real data, UIDs are `ID_...` strings, files sit in one flat folder with names
    unrelated to slice order, the second series uses the 12-bit intercept quirk and
    multi-valued windows, and the CSV lists images in no particular order with duplicate rows.
    """
    rng = np.random.default_rng(seed)
    img_dir = root / "stage_2_train"
    img_dir.mkdir(parents=True, exist_ok=True)
    cases: dict[str, TruthCase] = {}
    ids: dict[str, list[str]] = {}
    rows: list[tuple[str, int]] = []
    for s in range(n_series):
        lesions = {1: 2, 2: 5} if s % 2 == 0 else {}
        if s % 2 == 0:
            lesions[3] = 4
        hu, mask = synthetic_head(n_slices, size, lesions, seed=seed + s)
        series_uid = f"ID_{rng.integers(16**9):09x}"
        study_uid = f"ID_{rng.integers(16**10):010x}"
        img_ids = [f"ID_{rng.integers(16**9):09x}" for _ in range(n_slices)]
        write_series(
            img_dir,
            hu,
            series_uid=series_uid,
            study_uid=study_uid,
            sop_uids=img_ids,
            names=[f"{i}.dcm" for i in img_ids],
            rsna_quirk=(s % 2 == 1),
            multi_window=(s % 2 == 1),
            patient_id=f"ID_{rng.integers(16**8):08x}",
        )
        sl, sub = labels_from_mask(mask)
        cases[series_uid] = TruthCase(series_uid, hu, (5.0, 0.5, 0.5), sl, sub, None)
        ids[series_uid] = img_ids
        for z, img in enumerate(img_ids):
            for k, name in enumerate(SUBTYPE_NAMES):
                rows.append((f"{img}_{name}", int(sub[z, k])))
            rows.append((f"{img}_any", int(sl[z])))
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order] + [rows[i] for i in order[:7]]  # shuffled, with duplicates
    csv_path = root / "stage_2_train.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "Label"])
        w.writerows(rows)
    return RsnaFixture(root, csv_path, cases, ids)


# --------------------------------------------------------------------------- NIfTI helpers


def real_ct_series(folder: Path, source: Path, n: int = 3, step: float = 5.0) -> list[str]:
    """Copies of one real CT slice (pydicom-data's 693_UNCR.dcm) made into an n-slice series.

    Pixels and rescale tags stay the real file's; only positions, SOP Instance UIDs and a
    Frame of Reference change. Returns the SOP Instance UIDs in ascending slice order.
    """
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    sops: list[str] = []
    for z in range(n):
        ds = pydicom.dcmread(source)
        pos = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [pos[0], pos[1], pos[2] + z * step]
        ds.SOPInstanceUID = uid("9", z + 1)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = z + 1
        if "FrameOfReferenceUID" not in ds:
            ds.FrameOfReferenceUID = uid("9", 0)
        ds.save_as(folder / f"slice_{n - z}.dcm")
        sops.append(ds.SOPInstanceUID)
    return sops


def copy_tree(src: Path, dst: Path) -> Path:
    """Copy a fixture so a test can break the copy without touching the shared one."""
    shutil.copytree(src, dst)
    return dst
