"""The synthetic head-CT phantom: determinism, geometry of each subtype, truth consistency, mimics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from edge_ich.analysis.baseline import threshold_segment
from edge_ich.analysis.brain import brain_mask
from edge_ich.errors import InputError
from edge_ich.phantom.generator import MIMICS, SUBTYPES, PhantomCase, case_seed, generate_case

FAST = {"slices": 20, "thickness": 5.0, "size": 128}


def _case(seed: int, **kw: object) -> PhantomCase:
    args = {**FAST, **kw}
    return generate_case(seed, **args)  # type: ignore[arg-type]


def _bone_distance_mm(c: PhantomCase) -> np.ndarray:
    """In-plane distance (mm) of every voxel to the nearest bone voxel, slice by slice."""
    out = np.empty(c.hu.shape, np.float32)
    for k in range(c.hu.shape[0]):
        out[k] = ndimage.distance_transform_edt(c.hu[k] < 300) * c.spacing[1]
    return out


def test_same_seed_same_case_and_different_seeds_differ() -> None:
    a, b, other = _case(11), _case(11), _case(12)
    assert a.hu.dtype == np.int16 and a.labels.dtype == np.uint8
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.labels, b.labels)
    assert a.meta == b.meta and np.array_equal(a.affine_lps, b.affine_lps)
    assert not np.array_equal(a.hu, other.hu)


def test_case_seed_is_stable_and_distinct() -> None:
    seeds = [case_seed(5, i) for i in range(50)]
    assert seeds == [case_seed(5, i) for i in range(50)]
    assert len(set(seeds)) == 50 and case_seed(6, 0) != case_seed(5, 0)


def test_shapes_spacing_and_affine() -> None:
    c = _case(3, size=128)
    assert c.hu.shape == c.labels.shape == (20, 128, 128)
    assert c.spacing[0] == 5.0
    # pixel spacing scales with the matrix so the head keeps its physical size (0.4-0.5 mm at 512)
    assert 0.4 * 4 <= c.spacing[1] <= 0.5 * 4 and c.spacing[1] == c.spacing[2]
    assert np.allclose(np.linalg.norm(c.affine_lps[:3, 0]), c.spacing[2])
    assert c.affine_lps[2, 2] > 0  # ascending along the slice normal (inferior to superior)
    assert -1024 <= c.hu.min() and c.hu.max() <= 3095
    # physical head width is about the same at 128 and 256
    widths = []
    for size in (64, 128):
        d = _case(3, size=size, slices=3, thickness=10.0)
        widths.append(np.ptp(np.nonzero((d.hu[1] > -500).any(0))[0]) * d.spacing[2])
    assert abs(widths[0] - widths[1]) < 10


def test_slice_labels_match_labels() -> None:
    c = _case(4, subtypes=["intraparenchymal"])
    sl = c.slice_labels
    assert sl.dtype == np.uint8 and sl.shape == (c.hu.shape[0],)
    assert np.array_equal(sl.astype(bool), (c.labels > 0).any(axis=(1, 2)))
    assert sl.sum() >= 2  # a 3D object across contiguous slices
    on = np.nonzero(sl)[0]
    assert np.all(np.diff(on) == 1)


def test_negative_cases_exist_and_are_empty() -> None:
    pos = [_case(s, slices=8).meta["positive"] for s in range(12)]
    assert 0 < sum(pos) < 12
    neg = _case(5, positive=False)
    assert not neg.labels.any() and neg.meta["subtypes"] == [] and neg.meta["volume_ml"] == 0


def test_labels_are_blood_dense() -> None:
    for name in ("epidural", "intraparenchymal", "intraventricular", "subarachnoid"):
        c = _case(21, subtypes=[name], difficulty="easy")
        m = c.labels > 0
        assert m.any(), name
        assert set(np.unique(c.labels[m])) == {[k for k, v in SUBTYPES.items() if v == name][0]}
        assert 45 <= np.median(c.hu[m]) <= 100, name
        assert c.meta["volumes_ml"][name] > 0


def test_epidural_and_subdural_touch_the_inner_table() -> None:
    for name in ("epidural", "subdural"):
        c = _case(2, subtypes=[name])
        m = c.labels > 0
        assert m.any()
        near = _bone_distance_mm(c)[m]
        assert np.mean(near < 2.5 * c.spacing[1]) > 0.1, name  # part of it lies on the bone
        assert np.median(near) < 12, name


def test_intraparenchymal_is_deep_with_edema_rim() -> None:
    c = _case(6, subtypes=["intraparenchymal"], difficulty="easy")
    m = c.labels == 2
    assert np.median(_bone_distance_mm(c)[m]) > 10
    rim = ndimage.binary_dilation(m, iterations=2) & ~ndimage.binary_dilation(m)
    assert np.mean(c.hu[rim]) < np.mean(c.hu[m]) - 20


def test_intraventricular_is_inside_ventricles_and_layers_posteriorly() -> None:
    c = _case(8, subtypes=["intraventricular"])
    m = c.labels == 3
    assert m.any()
    assert np.median(_bone_distance_mm(c)[m]) > 20
    # dependent layering (supine): blood sits posterior (higher rows) to the CSF it shares a ventricle with
    csf = (c.hu > -5) & (c.hu < 16) & ndimage.binary_dilation(m, iterations=4) & brain_mask(c.hu)
    rows = np.indices(c.hu.shape)[1]
    assert csf.any() and rows[m].mean() > rows[csf].mean()


def test_subarachnoid_is_thin() -> None:
    c = _case(9, subtypes=["subarachnoid"])
    m = c.labels == 4
    assert m.any()
    core = ndimage.binary_erosion(m, structure=np.ones((1, 3, 3)))
    assert core.sum() < 0.35 * m.sum()


def test_mimics_are_present_and_mapped() -> None:
    c = _case(1, positive=False)
    assert c.mimic_map is not None and c.mimic_map.shape == c.hu.shape
    names = {MIMICS[int(v)] for v in np.unique(c.mimic_map) if v}
    assert "inner_table" in names and names <= set(MIMICS.values())
    assert set(c.meta["mimics"]) == names


def test_difficulty_scales_lesion_contrast() -> None:
    easy = _case(30, subtypes=["intraparenchymal"], difficulty="easy")
    hard = _case(30, subtypes=["intraparenchymal"], difficulty="hard")
    assert np.median(easy.hu[easy.labels > 0]) > np.median(hard.hu[hard.labels > 0])
    assert easy.meta["volume_ml"] > hard.meta["volume_ml"]


def test_gantry_tilt_shears_the_grid() -> None:
    c = _case(13, tilt=True, slices=6)
    assert c.meta["tilt_deg"] > 5
    col = c.affine_lps[:3, 1] / np.linalg.norm(c.affine_lps[:3, 1])
    normal = np.cross(c.affine_lps[:3, 0], c.affine_lps[:3, 1])
    normal /= np.linalg.norm(normal)
    assert abs(col[2]) > 0.05  # tilted image plane
    assert np.isclose(c.affine_lps[:3, 2] @ normal, c.spacing[0])  # spacing measured along the normal
    assert _case(13, tilt=False, slices=6).meta["tilt_deg"] == 0


def test_bad_arguments_are_input_errors() -> None:
    with pytest.raises(InputError):
        generate_case(0, difficulty="brutal", size=64, slices=2)
    with pytest.raises(InputError):
        generate_case(0, subtypes=["chronic"], size=64, slices=2)
    with pytest.raises(InputError):
        generate_case(0, size=8, slices=2)


def test_brain_mask_on_real_ct(real_ct_files: dict) -> None:
    import pydicom

    if "693_UNCR.dcm" not in real_ct_files:
        pytest.skip("pydicom-data is not installed")
    ds = pydicom.dcmread(real_ct_files["693_UNCR.dcm"])
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    m = brain_mask(hu)
    assert m.shape == hu.shape and 0.1 < m.mean() < 0.5
    assert 10 < np.median(hu[m]) < 50
    assert brain_mask(hu[None]).shape == (1, *hu.shape)


def test_threshold_baseline_is_fooled_by_mimics() -> None:
    fp = 0
    for s in range(4):
        c = _case(40 + s, positive=False, slices=16)
        fp += int(threshold_segment(c.hu, c.spacing).sum())
    assert fp > 0  # mimics survive the blood window and the component filter
    c = _case(41, subtypes=["intraparenchymal"], difficulty="easy")
    pred = threshold_segment(c.hu, c.spacing)
    assert (pred & (c.labels > 0)).sum() > 0.3 * (c.labels > 0).sum()
