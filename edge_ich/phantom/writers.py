"""Write phantom datasets to disk in the layouts of the public ICH datasets (and read their truth back).

Layouts: `dicom` (one CT series per case + truth), `rsna` (flat RSNA 2019 folder + ID,Label CSV),
`physionet` (PhysioNet CT-ICH NIfTI + diagnosis CSV), `instance` (INSTANCE 2022 NIfTI).
Same seed, same bytes: UIDs derive from the seed, dates are fixed, archives carry no timestamps.
pydicom and nibabel are imported inside the functions that use them.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zipfile
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from edge_ich.errors import InputError
from edge_ich.outputs.atomic import write_bytes_atomic, write_text_atomic
from edge_ich.phantom.generator import SUBTYPES, PhantomCase, case_seed, generate_case

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RSNA_SUBTYPES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any")
PHYSIONET_COLUMNS = (
    "PatientNumber",
    "SliceNumber",
    "Intraventricular",
    "Intraparenchymal",
    "Subarachnoid",
    "Epidural",
    "Subdural",
    "No_Hemorrhage",
    "Fracture_Yes_No",
)
_DATE, _TIME = "20200101", "120000"


class Layout(str, Enum):
    """On-disk layouts the phantom writes."""

    dicom = "dicom"
    rsna = "rsna"
    physionet = "physionet"
    instance = "instance"


def uid(seed: int, index: int, *parts: object) -> str:
    """A fixed DICOM UID (2.25 + a 128-bit integer, as for UUIDs) hashed from the seed, the case and a role."""
    h = hashlib.sha256("/".join(["edge-ich-phantom", str(seed), str(index), *map(str, parts)]).encode()).digest()
    return f"2.25.{int.from_bytes(h[:16], 'big')}"


def _hex(*parts: object, n: int = 9) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:n]


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """An .npz archive with fixed timestamps (np.savez stamps the current time, breaking same-seed-same-bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            b = io.BytesIO()
            np.lib.format.write_array(b, np.asanyarray(arr), allow_pickle=False)
            zf.writestr(info, b.getvalue())
    return buf.getvalue()


def _truth_npz(c: PhantomCase, **extra: np.ndarray) -> bytes:
    return npz_bytes(
        labels=c.labels,
        slice_labels=c.slice_labels,
        spacing=np.asarray(c.spacing, float),
        affine_lps=c.affine_lps,
        **extra,
    )


def nifti_bytes(data: np.ndarray, affine_ras: np.ndarray, gz: bool) -> bytes:
    """A NIfTI-1 file as bytes (gzip without a timestamp when gz)."""
    nib = _require("nibabel")
    img = nib.Nifti1Image(data, affine_ras)
    img.header.set_qform(affine_ras, code=1)
    img.header.set_sform(affine_ras, code=1)
    img.header.set_xyzt_units("mm")
    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=6, mtime=0) if gz else raw


def _require(name: str) -> Any:
    from edge_ich.errors import require

    return require(name)


def stored_pixels(hu: np.ndarray, storage: str, intercept: int) -> np.ndarray:
    """HU -> the stored pixel values of a storage scheme (inverse of what a correct reader does)."""
    if storage == "int16":
        return (hu.astype(np.int32) - intercept).astype(np.int16)
    if storage == "uint12":
        return (hu.astype(np.int32) - intercept).astype(np.uint16)
    # RSNA quirk: readers add 1000, wrap at 4096 and use intercept -1000, so stored = HU modulo 4096
    return np.mod(hu.astype(np.int32), 4096).astype(np.uint16)


def _slice_ds(c: PhantomCase, k: int, seed: int, index: int, name: str, ids: dict[str, str], compress: bool) -> Any:
    """One CT Image Storage instance for slice k (ascending order) of case c."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, JPEG2000Lossless

    m = c.meta
    sop = uid(seed, index, "sop", k)
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
    fm.MediaStorageSOPInstanceUID = UID(sop)
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = "EDGE_ICH_PH"
    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = _DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = _TIME
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "edge-ich phantom"
    ds.ManufacturerModelName = "synthetic"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT HEAD WO CONTRAST (SYNTHETIC)"
    ds.SeriesDescription = f"PHANTOM {m['thickness']:g}MM"
    ds.PatientName = name
    ds.PatientID = ids["patient"]
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "HEAD"
    ds.SliceThickness = f"{c.spacing[0]:g}"
    ds.KVP = "120"
    ds.GantryDetectorTilt = f"{m['tilt_deg']:.2f}"
    ds.ConvolutionKernel = "H30s"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = ids["study"]
    ds.SeriesInstanceUID = ids["series"]
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = k + 1
    pos = c.affine_lps[:3, 3] + k * c.affine_lps[:3, 2]
    ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in m["orientation"]]
    ds.FrameOfReferenceUID = ids["frame"]
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = f"{pos[2]:.4f}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(c.hu.shape[1]), int(c.hu.shape[2])
    ds.PixelSpacing = [f"{c.spacing[1]:.6f}", f"{c.spacing[2]:.6f}"]
    storage, intercept = m["storage"], int(m["intercept"])
    signed = storage == "int16"
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if signed else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.WindowCenter = ["40", "80"]
    ds.WindowWidth = ["80", "200"]
    ds.WindowCenterWidthExplanation = ["BRAIN", "SUBDURAL"]
    ds.RescaleIntercept = str(intercept)
    ds.RescaleSlope = "1"
    arr = stored_pixels(c.hu[k], storage, intercept)
    if compress:
        ds.compress(JPEG2000Lossless, arr, encoding_plugin="pylibjpeg")
    else:
        ds.PixelData = arr.tobytes()
    return ds


def _ds_bytes(ds: Any) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _case_ids(seed: int, i: int) -> dict[str, str]:
    return {
        "study": uid(seed, i, "study"),
        "series": uid(seed, i, "series"),
        "frame": uid(seed, i, "frame"),
        "patient": f"PHANTOM-{i:03d}",
    }


def _write_dicom_case(out: Path, c: PhantomCase, seed: int, i: int, compress: bool) -> str:
    ids = _case_ids(seed, i)
    d = out / f"case_{i:03d}"
    for k in range(c.hu.shape[0]):
        ds = _slice_ds(c, k, seed, i, f"PHANTOM^{i:03d}", ids, compress)
        write_bytes_atomic(d / "dicom" / f"IM_{_hex(seed, i, k, n=10)}.dcm", _ds_bytes(ds))
    write_bytes_atomic(d / "truth.npz", _truth_npz(c))
    from edge_ich.sources.volume import lps_to_ras

    write_bytes_atomic(
        d / "truth_mask.nii.gz", nifti_bytes(c.labels.transpose(2, 1, 0), lps_to_ras(c.affine_lps), gz=True)
    )
    return ids["series"]


def _write_rsna_case(out: Path, c: PhantomCase, seed: int, i: int, compress: bool, rows: list[str]) -> str:
    ids = _case_ids(seed, i)
    ids["patient"] = f"ID_{_hex(seed, i, 'patient')}"
    slice_ids = []
    for k in range(c.hu.shape[0]):
        sid = f"ID_{_hex(seed, i, k)}"
        slice_ids.append(sid)
        ds = _slice_ds(c, k, seed, i, ids["patient"], ids, compress)
        write_bytes_atomic(out / "stage_2_train" / f"{sid}.dcm", _ds_bytes(ds))
        present = {SUBTYPES[int(v)] for v in np.unique(c.labels[k]) if v}
        for st in RSNA_SUBTYPES:
            hit = bool(present) if st == "any" else st in present
            rows.append(f"{sid}_{st},{int(hit)}")
    write_bytes_atomic(out / "truth" / f"case_{i:03d}.npz", _truth_npz(c, ids=np.array(slice_ids)))
    return ids["series"]


def _write_nifti_case(out: Path, c: PhantomCase, i: int, layout: Layout, diag: list[list[int]]) -> None:
    from edge_ich.sources.volume import lps_to_ras

    aff = lps_to_ras(c.affine_lps)
    vol = c.hu.transpose(2, 1, 0)
    fg = (c.labels > 0).transpose(2, 1, 0)
    if layout is Layout.physionet:
        num = f"{i + 1:03d}"
        write_bytes_atomic(out / "ct_scans" / f"{num}.nii", nifti_bytes(vol, aff, gz=False))
        write_bytes_atomic(out / "masks" / f"{num}.nii", nifti_bytes(fg.astype(np.uint8) * 255, aff, gz=False))
        for k in range(c.hu.shape[0]):
            present = {int(v) for v in np.unique(c.labels[k]) if v}
            diag.append(
                [
                    i + 1,
                    k + 1,
                    int(3 in present),
                    int(2 in present),
                    int(4 in present),
                    int(1 in present),
                    int(5 in present),
                    int(not present),
                    0,
                ]
            )
    else:
        num = f"{i + 1:03d}"
        write_bytes_atomic(out / "data" / f"{num}.nii.gz", nifti_bytes(vol, aff, gz=True))
        write_bytes_atomic(out / "label" / f"{num}.nii.gz", nifti_bytes(fg.astype(np.uint8), aff, gz=True))
    write_bytes_atomic(out / "truth" / f"{num}.npz", _truth_npz(c))


def write_dataset(
    out: Path,
    cases: int,
    seed: int,
    layout: str,
    difficulty: str,
    slices: int | None,
    thickness: float | None,
    compress: bool,
    size: int = 512,
    site: str = "default",
) -> str:
    """Generate `cases` phantom cases into `out` in `layout`; return a one-line summary."""
    try:
        lay = Layout(layout)
    except ValueError:
        raise InputError(f"unknown layout {layout!r} (dicom, rsna, physionet, instance)") from None
    if cases < 1:
        raise InputError("cases must be at least 1")
    if compress and lay in (Layout.physionet, Layout.instance):
        raise InputError(f"--compress applies to DICOM layouts, not {lay.value}")
    out = Path(out)
    table: list[list[Any]] = []
    rsna_rows: list[str] = []
    diag: list[list[int]] = []
    n_slices = n_pos = 0
    for i in range(cases):
        c = generate_case(
            case_seed(seed, i), difficulty=difficulty, slices=slices, thickness=thickness, size=size, site=site
        )
        series = ""
        if lay is Layout.dicom:
            series = _write_dicom_case(out, c, seed, i, compress)
        elif lay is Layout.rsna:
            series = _write_rsna_case(out, c, seed, i, compress, rsna_rows)
        else:
            _write_nifti_case(out, c, i, lay, diag)
        n_slices += c.hu.shape[0]
        n_pos += int(c.meta["positive"])
        table.append(
            [
                f"case_{i:03d}",
                series,
                c.hu.shape[0],
                f"{c.spacing[0]:g}",
                int(c.meta["positive"]),
                ";".join(c.meta["subtypes"]),
                f"{c.meta['volume_ml']:.3f}",
            ]
        )
    _write_csv(
        out / "cases.csv", ["case", "series_uid", "slices", "thickness_mm", "positive", "subtypes", "volume_ml"], table
    )
    if lay is Layout.rsna:
        dup = [rsna_rows[j] for j in range(0, len(rsna_rows), 6 * 7)][:6]  # the real CSV repeats some rows
        write_text_atomic(out / "stage_2_train.csv", "ID,Label\n" + "\n".join(rsna_rows + dup) + "\n")
    if lay is Layout.physionet:
        _write_csv(out / "hemorrhage_diagnosis_raw_ct.csv", list(PHYSIONET_COLUMNS), diag)
    return (
        f"wrote {cases} phantom case(s) ({n_pos} with hemorrhage, {n_slices} slices, {difficulty}) "
        f"to {out} in the {lay.value} layout"
    )


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def load_truth(case_dir: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Truth of one case: (labels uint8 [Z,Y,X] ascending, slice_labels uint8 [Z], spacing).

    case_dir: a `dicom`-layout case folder holding truth.npz, or a truth .npz file itself.
    """
    p = Path(case_dir)
    f = p / "truth.npz" if p.is_dir() else p
    if not f.is_file():
        raise InputError(f"no phantom truth at {f}")
    with np.load(f, allow_pickle=False) as z:
        sp = tuple(float(v) for v in z["spacing"])
        return z["labels"], z["slice_labels"], (sp[0], sp[1], sp[2])
