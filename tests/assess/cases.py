"""Inputs for the assessability gate, built from the real files pydicom and pydicom-data ship.

`NOT_ASSESSABLE`: name -> (builder(tmp) -> path, flag, words the reason must hold); flag is
"--series" or "--volume". `WARNED`: name -> (builder, warning code, words of the summary label).
Each builder writes a fresh input under tmp. Real sources: the CQ500 head CT slice (pydicom-data),
pydicom's CT_small (body, 85 mm field), the abdomen CT explicit_VR-UN.dcm (BodyPartExamined
PANCREAS), the neck CT bad_sequence.dcm (NECK), the 16x16 CT series of pydicom's dicomdirtests.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.dicomkit import edit, make_series

Builder = Callable[[Path], Path]


def shipped(name: str) -> Path:
    """A file pydicom or pydicom-data ships (looked up locally: never downloaded)."""
    from pydicom.data.data_manager import DATA_ROOT, external_data_sources

    roots = [Path(DATA_ROOT) / "test_files"] + [
        Path(s.data_path) for s in external_data_sources().values() if hasattr(s, "data_path")
    ]
    for root in roots:
        hits = sorted(root.rglob(name))
        if hits:
            return hits[0]
    raise FileNotFoundError(name)


def put_raw(ds, keyword: str, vr: str, value: bytes) -> None:
    """Store raw bytes as an element's value (bypasses pydicom's checks: the file holds what we wrote)."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    tag = Tag(tag_for_keyword(keyword))
    if len(value) % 2:
        value += b" "
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


def edit_all(paths: list[Path], fn) -> None:
    for p in paths:
        edit(p, fn)


def head(tmp: Path, n: int = 6, size: int | None = 64, **kw) -> list[Path]:
    """A real-anatomy head CT series (the CQ500 slice, shifted per slice)."""
    return make_series(tmp / "d", n=n, size=size, **kw)


def _pixels(fn) -> Callable:
    """An edit that replaces the stored pixels by fn(stored array)."""

    def apply(ds) -> None:
        arr = ds.pixel_array
        new = np.clip(fn(arr.astype(np.float64)), -32768, 32767).astype(arr.dtype)
        ds.PixelData = new.tobytes()

    return apply


def _no_rescale(tmp: Path) -> Path:
    edit_all(head(tmp), lambda ds: (delattr(ds, "RescaleSlope"), delattr(ds, "RescaleIntercept")))
    return tmp / "d"


def _slope_zero(tmp: Path) -> Path:
    edit_all(head(tmp), lambda ds: setattr(ds, "RescaleSlope", "0"))
    return tmp / "d"


def _constant(tmp: Path) -> Path:
    edit_all(head(tmp), _pixels(lambda a: np.full_like(a, 1024.0)))
    return tmp / "d"


def _from(name: str, drop_body_part: bool = False, size: int | None = 128) -> Builder:
    def build(tmp: Path) -> Path:
        import warnings

        with warnings.catch_warnings():  # the neck CT's own UIDs are not valid UIs: pydicom says so
            warnings.simplefilter("ignore")
            paths = make_series(tmp / "d", n=3, from_file=shipped(name), size=size)
        if drop_body_part:
            edit_all(paths, lambda ds: delattr(ds, "BodyPartExamined") if "BodyPartExamined" in ds else None)
        return tmp / "d"

    return build


def _sixteen(tmp: Path) -> Path:
    """pydicom's 16x16 CT series (BodyPartExamined HEAD, 8 mm field of view)."""
    src = shipped("17106").parent
    shutil.copytree(src, tmp / "d")
    return tmp / "d"


def _mostly_blank(tmp: Path) -> Path:
    """3 of 8 slices blank, none of them among the slices the gate samples: found while streaming."""
    paths = head(tmp, n=8)
    for k in (0, 3, 7):
        edit(paths[k], _pixels(lambda a: np.zeros_like(a)))
    return tmp / "d"


def _far_apart(tmp: Path) -> Path:
    head(tmp, n=4, spacing=20.0)
    return tmp / "d"


def _mr(tmp: Path) -> Path:
    head(tmp, n=4, modality="MR")
    return tmp / "d"


def _noise_cube(tmp: Path) -> Path:
    """A NIfTI of noise, 48 mm across (what test_run used before the gate)."""
    import nibabel as nib

    data = np.random.default_rng(0).normal(30, 5, (96, 96, 7)).astype(np.float32)
    affine = np.diag([-0.5, 0.5, 5.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), str(tmp / "cube.nii.gz"))
    return tmp / "cube.nii.gz"


NOT_ASSESSABLE: dict[str, tuple[Builder, str, str]] = {
    "MR series": (_mr, "--series", "not CT"),
    "body CT, 85 mm field (CT_small)": (_from("CT_small.dcm", size=None), "--series", "field of view"),
    "16x16 CT series": (_sixteen, "--series", "matrix"),
    "abdomen CT (PANCREAS)": (_from("explicit_VR-UN.dcm"), "--series", "BodyPartExamined is PANCREAS"),
    "abdomen CT, body part removed": (_from("explicit_VR-UN.dcm", True), "--series", "intracranial cavity"),
    "neck CT (NECK)": (_from("bad_sequence.dcm"), "--series", "BodyPartExamined is NECK"),
    "neck CT, body part removed": (_from("bad_sequence.dcm", True), "--series", "intracranial cavity"),
    "head CT, rescale removed": (_no_rescale, "--series", "RescaleSlope/RescaleIntercept absent"),
    "RescaleSlope 0": (_slope_zero, "--series", "RescaleSlope is 0"),
    "constant slices": (_constant, "--series", "constant value"),
    "3 of 8 slices blank": (_mostly_blank, "--series", "3 of 8 slices hold one constant value"),
    "slices 20 mm apart": (_far_apart, "--series", "mm apart"),
    "NIfTI noise cube": (_noise_cube, "--volume", "field of view"),
}


def _lossy(tmp: Path) -> Path:
    """The lossy JPEG 2000 copy of the real head CT slice (693_J2KI, LossyImageCompression 01)."""
    make_series(tmp / "d", n=6, size=64, from_file=shipped("693_J2KI.dcm"))
    return tmp / "d"


def _one_missing(tmp: Path) -> Path:
    head(tmp, n=8)[4].unlink()
    return tmp / "d"


def _truncated_middle(tmp: Path) -> Path:
    """A slice cut short in the middle of the series (was refused outright before gaps were processed)."""
    from tests.dicomkit import truncate

    truncate(head(tmp, n=8)[3], 0.5)
    return tmp / "d"


def _excluded(tmp: Path) -> Path:
    """One file of the series has another image size: left out, and said so."""
    from pydicom.uid import generate_uid

    paths = head(tmp, n=8)
    other = make_series(tmp / "other", n=1, size=128, series_uid=None)[0]

    def join(ds) -> None:
        import pydicom

        first = pydicom.dcmread(paths[0], stop_before_pixels=True)
        ds.SeriesInstanceUID = first.SeriesInstanceUID
        ds.StudyInstanceUID = first.StudyInstanceUID
        ds.FrameOfReferenceUID = first.FrameOfReferenceUID
        ds.SOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [str(v) for v in first.ImagePositionPatient[:2]] + ["2.5"]

    edit(other, join)
    shutil.move(str(other), tmp / "d" / "odd_size")
    return tmp / "d"


def _thin(tmp: Path) -> Path:
    head(tmp, n=6, spacing=0.6)
    return tmp / "d"


def _bone_kernel(tmp: Path) -> Path:
    edit_all(head(tmp), lambda ds: setattr(ds, "ConvolutionKernel", "BONE"))
    return tmp / "d"


def _tilted(tmp: Path) -> Path:
    head(tmp, n=5, tilt=15.0, spacing=2.5)
    return tmp / "d"


def _noisy(tmp: Path) -> Path:
    rng = np.random.default_rng(1)
    edit_all(head(tmp, size=128), _pixels(lambda a: a + rng.normal(0, 25, a.shape)))
    return tmp / "d"


def _rescale_in_pixels(tmp: Path) -> Path:
    """Stored values already in HU and no rescale elements: the assumption (1, 0) holds and is checked."""

    def to_hu(ds) -> None:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        _pixels(lambda a: a * slope + intercept)(ds)
        del ds.RescaleSlope, ds.RescaleIntercept

    edit_all(head(tmp), to_hu)
    return tmp / "d"


def _blank_slice(tmp: Path) -> Path:
    paths = head(tmp, n=8)
    edit(paths[6], _pixels(lambda a: np.zeros_like(a)))
    return tmp / "d"


def _contrast(tmp: Path) -> Path:
    edit_all(head(tmp), lambda ds: setattr(ds, "ContrastBolusAgent", "IODINE"))
    return tmp / "d"


def _bad_kvp(tmp: Path) -> Path:
    edit_all(head(tmp), lambda ds: put_raw(ds, "KVP", "DS", b"x"))
    return tmp / "d"


def _library_warning(tmp: Path) -> Path:
    """A StudyInstanceUID in the RSNA style ('ID_...', not a valid UI): pydicom warns while reading;
    the warning goes to the report with the value replaced."""
    edit_all(head(tmp), lambda ds: put_raw(ds, "StudyInstanceUID", "UI", b"ID_6b47de7cb9"))
    return tmp / "d"


WARNED: dict[str, tuple[Builder, str, str]] = {
    "lossy compression (693_J2KI)": (_lossy, "lossy_compression", "lossy compression"),
    "one slice missing": (_one_missing, "incomplete_series", "missing: volume is a lower bound"),
    "truncated slice mid-series": (_truncated_middle, "slices_excluded", "missing: volume is a lower bound"),
    "slice of another size in the series": (_excluded, "slices_excluded", "excluded"),
    "slices thinner than the card's range": (_thin, "thickness_outside_card", "outside 1-5 mm"),
    "bone kernel": (_bone_kernel, "kernel_outside_card", "sharp kernel"),
    "gantry tilt": (_tilted, "tilt_corrected", "tilt 15.0 deg corrected"),
    "high noise": (_noisy, "noise_high", "noise high"),
    "rescale absent, pixels in HU": (_rescale_in_pixels, "rescale_assumed", "rescale assumed"),
    "a blank slice": (_blank_slice, "blank_slices", "blank slice"),
    "contrast recorded": (_contrast, "contrast", "contrast recorded"),
    "invalid informational element": (_bad_kvp, "element_ignored", "header values ignored"),
    "pydicom warning while reading": (_library_warning, "library", "reader notices"),
}
