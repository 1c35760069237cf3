"""The gate's parts on real pixels and headers: head CTs pass, other anatomy fails, choice prefers a head."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from edge_ich.assess import assess
from edge_ich.assess.pixels import slice_stats
from edge_ich.sources.dicom.checks import candidate_problem, kernel_class
from edge_ich.sources.dicom.pixels import hu_from_dataset
from edge_ich.sources.dicom.source import open_series
from edge_ich.sources.volume import ArraySource
from tests.assess.cases import shipped
from tests.dicomkit import make_series

HEADS = ["693_UNCR.dcm", "693_J2KR.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"]
NOT_HEADS = ["CT_small.dcm", "bad_sequence.dcm", "explicit_VR-UN.dcm"]


def _hu(name: str) -> tuple[np.ndarray, tuple[float, float]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(shipped(name))
        ps = [float(v) for v in ds.PixelSpacing]
        return hu_from_dataset(ds), (ps[0], ps[1])


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("step", [1, 4, 8])
def test_real_head_slices_show_a_cavity(name: str, step: int) -> None:
    hu, ps = _hu(name)
    st = slice_stats(0, hu[::step, ::step], (ps[0] * step, ps[1] * step))
    assert st.cavity_ok, st


@pytest.mark.parametrize("name", NOT_HEADS)
def test_other_anatomy_shows_no_cavity(name: str) -> None:
    hu, ps = _hu(name)
    st = slice_stats(0, hu, ps)
    assert not st.cavity_ok, st


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("size", [64, 128, 512])
def test_phantoms_are_assessable(seed: int, size: int) -> None:
    """Our own phantoms (any pose, size, slab) pass: `make demo` must stay answered."""
    from edge_ich.phantom.generator import generate_case

    c = generate_case(seed, size=size, slices=12 if size == 512 else None)
    verdict = assess(ArraySource(c.hu.astype(np.float32), c.spacing))
    assert verdict.assessable, verdict


def test_kernel_classes() -> None:
    assert [kernel_class(k) for k in ("STANDARD", "SOFT", "H30s", "J40s", "B30f", "Hr38")] == ["soft"] * 6
    assert [kernel_class(k) for k in ("BONE", "BONEPLUS", "LUNG", "H70h", "B60f", "Br64", "EDGE")] == ["sharp"] * 7
    assert [kernel_class(k) for k in ("11", "FC21", "B50f", "")] == ["unknown"] * 4


def test_candidate_problem_names_the_reason() -> None:
    def hdr(**kw: object) -> pydicom.Dataset:
        ds = pydicom.Dataset()
        ds.Rows, ds.Columns, ds.PixelSpacing = 512, 512, [0.45, 0.45]
        for k, v in kw.items():
            setattr(ds, k, v)
        return ds

    assert candidate_problem([hdr()]) is None
    assert candidate_problem([hdr(BodyPartExamined="HEAD")]) is None
    assert candidate_problem([hdr(BodyPartExamined="HEADNECK")]) is None
    assert "CHEST" in (candidate_problem([hdr(BodyPartExamined="CHEST")]) or "")
    assert "matrix" in (candidate_problem([hdr(Rows=32, Columns=32, PixelSpacing=[7.0, 7.0])]) or "")
    assert "field of view" in (candidate_problem([hdr(PixelSpacing=[0.1, 0.1])]) or "")
    assert "field of view" in (candidate_problem([hdr(PixelSpacing=[1.2, 1.2])]) or "")


def test_mixed_folder_chooses_the_head_over_a_larger_16x16_series(tmp_path: Path) -> None:
    """pydicom's 4-file 16x16 HEAD series beside a 3-slice real head CT: the real one is chosen."""
    shutil.copytree(shipped("17106").parent, tmp_path / "tiny")
    make_series(tmp_path / "real", n=3, size=64)
    s = open_series(tmp_path)
    assert s.geometry.shape == (3, 64, 64)
    (other,) = s.other_series
    assert other["n_files"] == 4


def test_the_real_head_ct_series_is_assessable(tmp_path: Path) -> None:
    for name in ("693_UNCR.dcm", "J2K_pixelrep_mismatch.dcm"):
        make_series(tmp_path / name, n=3, from_file=shipped(name))
        verdict = assess(open_series(tmp_path / name))
        assert verdict.assessable, verdict
        assert not verdict.warnings, verdict.warnings


def test_the_receiver_path_is_gated_too(tmp_path: Path, tiny_model: Path) -> None:
    """`edge-ich serve` builds series with series_from_files and stages with stage_outputs: both gate."""
    from edge_ich import runner
    from edge_ich.errors import NotAssessable
    from edge_ich.pipeline import segment
    from edge_ich.sources.dicom.source import series_from_files
    from tests.assess.cases import NOT_ASSESSABLE

    with pytest.raises(NotAssessable, match="PANCREAS"):
        series_from_files(sorted((NOT_ASSESSABLE["abdomen CT (PANCREAS)"][0](tmp_path / "a")).iterdir()))
    src = series_from_files(sorted((NOT_ASSESSABLE["abdomen CT, body part removed"][0](tmp_path / "b")).iterdir()))
    model = runner.load_model(tiny_model)
    try:
        seg = segment(src, model.backend)
        out = tmp_path / "out"
        out.mkdir()
        with pytest.raises(NotAssessable, match="intracranial cavity"):
            runner.stage_outputs(out, src, model, seg, runner.RunOptions(out=out))
        assert list(out.iterdir()) == []
    finally:
        model.close()
