"""Every CT and MR file that pydicom and pydicom-data ship, alone and as a 3-slice series, through `edge-ich run`.

No traceback ever; exit 0 only for the real head CTs; every MR file and every other readable CT
image series is not assessable (`edge-ich: not assessable: ...`); a CT file that cannot be read as
an image series at all (enhanced multi-frame, localizer, pixel-less) is refused with `edge-ich: error:`.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pydicom
import pytest

from edge_ich.cli import main

#: The real head CTs (CQ500 slice 693 in four encodings, and a JPEG 2000 head CT): answered.
HEAD_CT = {"693_UNCR.dcm", "693_UNCI.dcm", "693_J2KR.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"}


def _roots() -> list[Path]:
    from pydicom.data.data_manager import DATA_ROOT, external_data_sources

    return [Path(DATA_ROOT) / "test_files"] + [
        Path(s.data_path) for s in external_data_sources().values() if hasattr(s, "data_path")
    ]


def _ct_mr_files() -> list[Path]:
    out = []
    for root in _roots():
        for p in sorted(root.rglob("*")):
            if not p.is_file() or p.suffix in (".json", ".py", ".txt", ".gz", ".bz2", ".zip"):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
                if str(ds.get("Modality", "")) in ("CT", "MR"):
                    out.append(p)
            except Exception:  # not DICOM at all: not a CT/MR file
                continue
    return out


FILES = _ct_mr_files()


def _ids(files: list[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.name}" for p in files]


def _series_of_three(src: Path, out: Path) -> None:
    """Three copies of one file as one series: new instance UIDs, positions 5 mm apart along z."""
    from pydicom.uid import generate_uid

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(src, force=True)
        out.mkdir(parents=True)
        for k in range(3):
            c = copy.deepcopy(ds)
            c.SOPInstanceUID = generate_uid()
            if "ImagePositionPatient" in c and len(c.ImagePositionPatient) == 3:
                x, y, z = (float(v) for v in c.ImagePositionPatient)
                c.ImagePositionPatient = [f"{x:g}", f"{y:g}", f"{z + 5.0 * k:g}"]
            c.save_as(out / f"s{k}.dcm")


def _run(folder: Path, model: Path, out: Path, capsys) -> tuple[int, str, str]:
    code = main(["run", "--series", str(folder), "--model", str(model), "--out", str(out), "--no-seg"])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_the_list_holds_the_files_we_know() -> None:
    names = {p.name for p in FILES}
    assert HEAD_CT <= names and {"CT_small.dcm", "MR_small.dcm", "explicit_VR-UN.dcm", "bad_sequence.dcm"} <= names
    assert len(FILES) >= 60


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_shipped_file_alone(tmp_path: Path, tiny_model: Path, path: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / path.name).write_bytes(path.read_bytes())
    code, stdout, err = _run(tmp_path / "in", tiny_model, tmp_path / "out", capsys)
    assert code == 1 and stdout == "" and "Traceback" not in err  # one slice is never a volume
    assert len(err.splitlines()) == 1 and err.startswith(("edge-ich: not assessable: ", "edge-ich: error: ")), err
    if path.name in HEAD_CT:
        assert "one usable slice" in err


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_shipped_file_as_three_slices(tmp_path: Path, tiny_model: Path, path: Path, capsys) -> None:
    _series_of_three(path, tmp_path / "in")
    code, stdout, err = _run(tmp_path / "in", tiny_model, tmp_path / "out", capsys)
    assert "Traceback" not in err
    if path.name in HEAD_CT:
        assert code == 0 and err == "" and stdout.count("\n") == 1, err
        return
    assert code == 1 and stdout == "" and len(err.splitlines()) == 1, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        modality = str(pydicom.dcmread(path, stop_before_pixels=True, force=True).get("Modality", ""))
    if "truncated" in err:  # a cut file is refused as cut, whatever it holds
        assert err.startswith("edge-ich: error: "), err
    elif modality != "CT" or _is_single_frame_image(path):  # the modality is judged before anything else
        assert err.startswith("edge-ich: not assessable: "), err
    else:
        assert err.startswith("edge-ich: error: "), err


def _is_single_frame_image(path: Path) -> bool:
    """An image edge-ich can read as a series (single frame, pixels decodable, placed in space, no localizer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
            ds.pixel_array  # noqa: B018 (decodable?)
        except Exception:
            return False
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return (
        int(ds.get("NumberOfFrames", 1) or 1) == 1
        and "LOCALIZER" not in image_type
        and all(k in ds for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"))
    )
