"""The runtime's SEG writer builds highdicom's dataset: compared attribute by attribute with the reference.

`build_seg` (highdicom) and `build_seg_dataset` (pydicom alone, what `write_seg` writes) get the
same mask and headers; every attribute, nested sequences included, must be equal except the new
UIDs, the creation times and the processing-equipment item that names the writing software.
The written file is read back by highdicom frame by frame and checked with dciodvfy
(tests/outputs/test_seg.py does that for every other SEG test too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from edge_ich.outputs.seg import build_seg, build_seg_dataset, read_seg_mask, write_seg
from tests.outputs.test_seg import dciodvfy_errors
from tests.outputs_series import blob_mask, make_series

#: Attributes that differ by nature between two builds (new UIDs, the clock).
FRESH = {"SOPInstanceUID", "SeriesInstanceUID", "DimensionOrganizationUID"}
CLOCK = {"InstanceCreationTime", "ContentTime", "InstanceCreationDate", "ContentDate"}


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Every element of two datasets that differs (tag, VR or value), recursing into sequences."""
    out = []
    for tag in sorted({e.tag for e in a} | {e.tag for e in b}):
        ea, eb = a.get(tag), b.get(tag)
        kw = (ea if ea is not None else eb).keyword or str(tag)
        where = f"{path}/{kw}"
        if kw in FRESH | CLOCK:
            continue
        if ea is None or eb is None:
            out.append(f"{where}: only in {'ours' if ea is None else 'highdicom'}")
        elif ea.VR != eb.VR:
            out.append(f"{where}: VR {ea.VR} vs {eb.VR}")
        elif ea.VR == "SQ":
            if len(ea.value) != len(eb.value):
                out.append(f"{where}: {len(ea.value)} vs {len(eb.value)} items")
            else:
                for i, (x, y) in enumerate(zip(ea.value, eb.value)):
                    out += differences(x, y, f"{where}[{i}]")
        elif ea.value != eb.value:
            out.append(f"{where}: {str(ea.value)[:60]!r} vs {str(eb.value)[:60]!r}")
    return out


def mismatches_with_highdicom(headers: list[pydicom.Dataset], mask: np.ndarray) -> list[str]:
    """Every way our SEG (from a dense and from a sparse mask) differs from highdicom's; [] when none."""
    kw = {"algorithm_name": "edge-ich-test", "algorithm_version": "abc123"}
    from edge_ich.analysis.masks import SliceMask

    ref = build_seg(mask, headers, **kw)
    ours = build_seg_dataset(mask, headers, **kw)
    sparse = build_seg_dataset(SliceMask.from_dense(mask), headers, **kw)  # what the runner hands over
    # the processing-equipment item names the software that wrote the file: compared apart
    ref_eq, our_eq = ref.ContributingEquipmentSequence[-1], ours.ContributingEquipmentSequence[-1]
    out = differences(ref_eq.PurposeOfReferenceCodeSequence[0], our_eq.PurposeOfReferenceCodeSequence[0])
    if our_eq.Manufacturer != "edge-ich" or our_eq.PurposeOfReferenceCodeSequence[0].CodeValue != "109102":
        out.append("processing equipment does not name edge-ich with purpose 109102")
    for ds in (ref, ours, sparse):
        ds.ContributingEquipmentSequence = ds.ContributingEquipmentSequence[:-1]
    out += differences(ref, ours) + ["sparse: " + d for d in differences(ours, sparse)]
    if ours.PixelData != ref.PixelData:  # the frames, bit for bit
        out.append("PixelData differs from highdicom's")
    if sparse.PixelData != ours.PixelData:
        out.append("PixelData from the sparse mask differs")
    return out


def _lesion_on(shape: tuple[int, int, int], slices: list[int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    for k in slices:
        mask[k, 10 + k : 30 + k, 20:35] = 1
    return mask


@pytest.mark.parametrize(
    "kind", ["plain", "reverse", "flip_row", "ct_small", "no_frame_of_reference", "no_thickness", "deidentified"]
)
def test_same_dataset_as_highdicom_on_real_slices(tmp_path: Path, kind: str) -> None:
    if kind == "ct_small":
        series = make_series(tmp_path, 4, base="CT_small.dcm")
    else:
        series = make_series(
            tmp_path,
            5,
            reverse=kind == "reverse",
            flip_row=kind == "flip_row",
            frame_of_reference=kind != "no_frame_of_reference",
        )
    if kind == "no_thickness":
        for h in series.headers:
            del h.SliceThickness
    if kind == "deidentified":
        for h in series.headers:
            h.PatientIdentityRemoved = "YES"
    assert mismatches_with_highdicom(series.headers, blob_mask(series.geometry.shape, seed=len(kind))) == []


@pytest.mark.parametrize(
    "slices", [[], [2], [1, 2, 3], [0, 4], [0, 1, 2, 3, 4]], ids=["empty", "one", "run", "gap", "all"]
)
def test_same_dataset_as_highdicom_for_every_frame_layout(tmp_path: Path, slices: list[int]) -> None:
    """Spacing and 3D organisation depend on which frames carry content: empty, one, a run, a gap, all."""
    series = make_series(tmp_path, 5, base="CT_small.dcm")
    assert mismatches_with_highdicom(series.headers, _lesion_on(series.geometry.shape, slices)) == []


@pytest.mark.parametrize("opts", [{}, {"reverse": True, "flip": True}, {"tilt": 12.0}, {"spacing": 2.5}])
def test_same_dataset_as_highdicom_from_the_runtime_series(tmp_path: Path, opts: dict) -> None:
    """The runtime's DicomSeries (sorting, cached headers), gantry tilt included."""
    from edge_ich.sources.dicom.source import series_from_files
    from tests.dicomkit import make_series as kit_series

    series = series_from_files(kit_series(tmp_path / "src", 6, size=128, **opts))
    headers = [series.header(i, copy_=False) for i in range(len(series))]
    assert mismatches_with_highdicom(headers, blob_mask(series.geometry.shape, seed=5)) == []


def test_odd_frame_size_packs_frames_as_one_bit_stream(tmp_path: Path) -> None:
    """Frames whose pixel count is not a multiple of 8 share bytes, as highdicom packs them."""
    from edge_ich.sources.dicom.source import series_from_files
    from tests.dicomkit import make_series as kit_series

    series = series_from_files(kit_series(tmp_path / "src", 4, size=100))
    rows, cols = series.geometry.shape[1:]
    if (rows * cols) % 8 == 0:
        pytest.skip("decimation gave a frame size that is a multiple of 8")
    headers = [series.header(i, copy_=False) for i in range(len(series))]
    mask = blob_mask(series.geometry.shape, seed=2)
    assert mismatches_with_highdicom(headers, mask) == []
    out = tmp_path / "seg.dcm"
    write_seg(out, mask, headers, algorithm_name="a", algorithm_version="1")
    np.testing.assert_array_equal(read_seg_mask(out, series.sop_instance_uids), mask)
    assert dciodvfy_errors(out) == []


def test_the_copied_modules_are_highdicoms(tmp_path: Path) -> None:
    """The root attributes copied from a CT source are those highdicom's tables list for it."""
    from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map

    from edge_ich.outputs.segwriter import PATIENT_STUDY_KEYWORDS, SPECIMEN_KEYWORDS

    modules, attributes = get_iod_module_map()["ct-image"], get_module_attribute_map()

    def root(ie: str, key: str | None = None) -> list[str]:
        return [
            a["keyword"]
            for m in modules
            if m["ie"] == ie and (key is None or m["key"] == key)
            for a in attributes[m["key"]]
            if not a["path"]
        ]

    assert list(SPECIMEN_KEYWORDS) == root("Image", "specimen")
    assert list(PATIENT_STUDY_KEYWORDS) == root("Patient") + root("Study")


def test_writer_reads_only_slices_with_content_and_leaves_the_mask_alone(tmp_path: Path) -> None:
    series = make_series(tmp_path, 5, base="CT_small.dcm")
    mask = _lesion_on(series.geometry.shape, [1, 3])
    before = mask.copy()
    seg = build_seg_dataset(mask, series.headers, algorithm_name="a", algorithm_version="1")
    assert int(seg.NumberOfFrames) == 2
    np.testing.assert_array_equal(mask, before)
