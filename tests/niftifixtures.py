"""NIfTI-based copies of the public ICH datasets (PhysioNet CT-ICH, INSTANCE 2022, BHSD) and the generic
CSV layout, built by the tests themselves; see `tests.datafixtures` for the conventions they share."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tests.datafixtures import SUBTYPE_NAMES, TruthCase, labels_from_mask, synthetic_head, uid, write_series


def display_to_nifti(
    vol: np.ndarray, spacing: tuple[float, float, float], reverse_z: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Display-frame [Z, Y, X] -> a NIfTI data array [i, j, k] and its RAS affine, as dcm2niix writes axial CT.

    i runs to patient left (RAS x negative), j to anterior, k to superior (or inferior with
    reverse_z): a raw slice data[:, :, k] must be rotated by 90 degrees to look like the DICOM
    image, which is the PhysioNet CT-ICH documentation's remark.
    """
    dz, dy, dx = spacing
    data = np.transpose(vol[:, ::-1, :], (2, 1, 0))  # [col, anterior-up row, slice]
    affine = np.diag([-dx, dy, dz, 1.0])
    affine[:3, 3] = (0.0, -(vol.shape[1] - 1) * dy, -40.0)
    if reverse_z:
        data = data[:, :, ::-1]
        affine[2, 2] = -dz
        affine[2, 3] = -40.0 + (vol.shape[0] - 1) * dz
    return np.ascontiguousarray(data), affine


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, slope: float | None = None) -> None:
    """Write a NIfTI-1 file (.nii or .nii.gz by name), optionally with scl_slope/inter."""
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if slope is not None:
        img.header.set_slope_inter(slope, 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


# --------------------------------------------------------------------------- PhysioNet CT-ICH

PHYSIONET_COLUMNS = [
    "PatientNumber",
    "SliceNumber",
    "Intraventricular",
    "Intraparenchymal",
    "Subarachnoid",
    "Epidural",
    "Subdural",
    "No_Hemorrhage",
    "Fracture_Yes_No",
]


def make_physionet(
    root: Path, numbers: tuple[int, ...] = (49, 50), n_slices: int = 6, size: int = 32
) -> dict[str, TruthCase]:
    """`ct_scans/NNN.nii`, `masks/NNN.nii` (0/255) and `hemorrhage_diagnosis_raw_ct.csv`.

    The second scan is stored with its slices running downwards, so SliceNumber (1-based in
    the file's own k order) must be remapped when the reader returns ascending slices.
    """
    cases: dict[str, TruthCase] = {}
    rows: list[list[int]] = []
    spacing = (5.0, 0.45, 0.45)
    for idx, num in enumerate(numbers):
        lesions = {2: 2, 3: 3} if idx % 2 == 0 else {4: 5}
        hu, mask = synthetic_head(n_slices, size, lesions, seed=num)
        reverse = idx % 2 == 1
        data, aff = display_to_nifti(hu, spacing, reverse_z=reverse)
        save_nifti(root / "ct_scans" / f"{num:03d}.nii", data.astype(np.int16), aff)
        mdata, _ = display_to_nifti((mask > 0).astype(np.uint8) * 255, spacing, reverse_z=reverse)
        save_nifti(root / "masks" / f"{num:03d}.nii", mdata.astype(np.uint8), aff)
        sl, sub = labels_from_mask(mask)
        cid = f"{num:03d}"
        cases[cid] = TruthCase(cid, hu, spacing, sl, sub, (mask > 0).astype(np.uint8))
        for z in range(n_slices):
            k = (n_slices - 1 - z) if reverse else z  # file slice index of display slice z
            e, iph, ivh, sah, sdh = (int(v) for v in sub[z])
            rows.append([num, k + 1, ivh, iph, sah, e, sdh, int(1 - sl[z]), 0])
    rows.sort(key=lambda r: (r[0], r[1]))
    with open(root / "hemorrhage_diagnosis_raw_ct.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(PHYSIONET_COLUMNS)
        w.writerows(rows)
    return cases


# --------------------------------------------------------------------------- INSTANCE 2022


def make_instance(
    root: Path, numbers: tuple[int, ...] = (1, 2), n_slices: int = 5, size: int = 32
) -> dict[str, TruthCase]:
    """`train/data/NNN.nii.gz` and `train/label/NNN.nii.gz` (binary), float32 HU with a slope."""
    cases: dict[str, TruthCase] = {}
    spacing = (5.0, 0.42, 0.42)
    for idx, num in enumerate(numbers):
        lesions = {1: 2, 2: 2} if idx % 2 == 0 else {}
        hu, mask = synthetic_head(n_slices, size, lesions, seed=100 + num)
        data, aff = display_to_nifti(hu, spacing)
        save_nifti(root / "train" / "data" / f"{num:03d}.nii.gz", data.astype(np.int16), aff, slope=1.0)
        mdata, _ = display_to_nifti((mask > 0).astype(np.uint8), spacing)
        save_nifti(root / "train" / "label" / f"{num:03d}.nii.gz", mdata, aff)
        sl, _ = labels_from_mask(mask)
        cid = f"{num:03d}"
        cases[cid] = TruthCase(cid, hu, spacing, sl, None, (mask > 0).astype(np.uint8))
    return cases


# --------------------------------------------------------------------------- BHSD (nnU-Net layout)


def make_bhsd(
    root: Path,
    names: tuple[str, ...] = ("ID_0a1b2c3d", "ID_4e5f6a7b"),
    n_slices: int = 5,
    size: int = 32,
    channel_suffix: bool = True,
    unlabelled: tuple[str, ...] = (),
) -> dict[str, TruthCase]:
    """`imagesTr/<name>_0000.nii.gz` + `labelsTr/<name>.nii.gz` with codes 1 EDH 2 IPH 3 IVH 4 SAH 5 SDH."""
    cases: dict[str, TruthCase] = {}
    spacing = (5.0, 0.45, 0.45)
    suffix = "_0000" if channel_suffix else ""
    for idx, name in enumerate(names):
        lesions = {0: 1, 1: 2, 2: 3} if idx % 2 == 0 else {3: 4, 4: 5}
        hu, mask = synthetic_head(n_slices, size, lesions, seed=200 + idx)
        data, aff = display_to_nifti(hu, spacing)
        save_nifti(root / "imagesTr" / f"{name}{suffix}.nii.gz", data.astype(np.int16), aff)
        mdata, _ = display_to_nifti(mask, spacing)
        save_nifti(root / "labelsTr" / f"{name}.nii.gz", mdata.astype(np.uint8), aff)
        sl, sub = labels_from_mask(mask)
        cases[name] = TruthCase(name, hu, spacing, sl, sub, mask)
    for idx, name in enumerate(unlabelled):
        hu, _ = synthetic_head(n_slices, size, {}, seed=300 + idx)
        data, aff = display_to_nifti(hu, spacing)
        save_nifti(root / "imagesTr" / f"{name}{suffix}.nii.gz", data.astype(np.int16), aff)
    return cases


# --------------------------------------------------------------------------- generic


def make_generic(
    root: Path, n_series: int = 2, n_slices: int = 4, size: int = 32, key: str = "SOPInstanceUID", subtypes: bool = True
) -> dict[str, TruthCase]:
    """A folder of DICOM series (one subfolder each, any file names) + `labels.csv` of slice labels.

    key "SOPInstanceUID" writes rows `SOPInstanceUID,any[,epidural..subdural]`; key "file"
    writes the file path relative to root instead.
    """
    cases: dict[str, TruthCase] = {}
    rows: list[list[object]] = []
    for s in range(n_series):
        lesions = {1: 2} if s == 0 else {2: 5, 3: 5}
        hu, mask = synthetic_head(n_slices, size, lesions, seed=400 + s)
        series_uid = uid("7", s)
        sops = [uid("7", s, z + 1) for z in range(n_slices)]
        names = [f"IM{(z * 7919) % 1000:04d}" for z in range(n_slices)]  # no extension, unordered names
        write_series(
            root / f"series_{s}",
            hu,
            series_uid=series_uid,
            study_uid=uid("8", s),
            sop_uids=sops,
            names=names,
            spacing=(2.5, 0.5, 0.5),
            reverse_z=(s == 1),
        )
        sl, sub = labels_from_mask(mask)
        cases[series_uid] = TruthCase(series_uid, hu, (2.5, 0.5, 0.5), sl, sub if subtypes else None, None)
        for z in range(n_slices):
            k = sops[z] if key == "SOPInstanceUID" else f"series_{s}/{names[z]}"
            rows.append([k, int(sl[z])] + ([int(v) for v in sub[z]] if subtypes else []))
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([key, "any"] + (list(SUBTYPE_NAMES) if subtypes else []))
        w.writerows(rows[::-1])
    return cases
