"""Dataset adapters read format-faithful fixtures exactly, and refuse bad data with one clear line."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_ich.errors import InputError
from tests import datafixtures as fx
from tests import niftifixtures as nx
from tests.training.adaptercheck import assert_matches, one_line_error
from training.data import SUBTYPES, open_dataset

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def rsna(tmp_path_factory: pytest.TempPathFactory) -> fx.RsnaFixture:
    return fx.make_rsna(tmp_path_factory.mktemp("rsna"), n_series=2)


@pytest.fixture(scope="module")
def physionet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("physionet")
    return root, nx.make_physionet(root)


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("instance")
    return root, nx.make_instance(root)


@pytest.fixture(scope="module")
def bhsd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("bhsd")
    return root, nx.make_bhsd(root, unlabelled=("ID_99aa88bb",))


@pytest.fixture(scope="module")
def generic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("generic")
    return root, nx.make_generic(root)


def test_fixture_orientation_convention() -> None:
    """The fixtures' NIfTI writer stores slices the way the PhysioNet notes describe (rot90 to display)."""
    hu, _ = fx.synthetic_head(3, 32, {1: 2})
    data, affine = nx.display_to_nifti(hu, (5.0, 0.5, 0.5))
    np.testing.assert_array_equal(np.rot90(data[:, :, 1]), hu[1])
    assert affine[0, 0] < 0 < affine[1, 1]  # i runs to patient left, j to anterior
    assert hu[1, 1, -2] == 400.0 and hu[1, 1, 1] != 400.0  # the marker is anterior-left only


# --------------------------------------------------------------------------- RSNA


def test_rsna_reads_series_in_geometry_order_with_labels(rsna: fx.RsnaFixture) -> None:
    cases = open_dataset("rsna", rsna.root)
    assert_matches(cases, rsna.cases)
    assert cases.meta["duplicate_rows"] == 7 and cases.meta["conflicting_duplicates"] == 0
    for c in cases:
        assert c.meta["image_ids"] == rsna.ids[c.case_id]
        assert c.load_mask is None and c.n_slices == len(rsna.ids[c.case_id])
    quirk = [c for c in cases if not c.slice_labels.any()][0]
    hu, _ = quirk.load()
    assert hu.min() == -1000.0 and hu.max() == 900.0  # only right after the 12-bit fix


def test_rsna_index_cache_is_reused_and_refreshed(rsna: fx.RsnaFixture, tmp_path: Path) -> None:
    root = fx.copy_tree(rsna.root, tmp_path / "rsna")
    cache = tmp_path / "index.json"
    first = open_dataset("rsna", root, cache=cache)
    assert cache.is_file()
    doc = cache.read_text()
    assert all(sid in doc for sid in rsna.cases)
    again = open_dataset("rsna", root, cache=cache)
    assert [c.case_id for c in again] == [c.case_id for c in first]
    np.testing.assert_array_equal(again[0].load()[0], first[0].load()[0])
    (root / "stage_2_train" / "extra.txt").write_text("not dicom")  # a new file makes the cache stale
    refreshed = open_dataset("rsna", root, cache=cache)
    assert [s.reason for s in refreshed.skipped] == ["not DICOM"]


def test_rsna_loading_is_lazy(rsna: fx.RsnaFixture, tmp_path: Path) -> None:
    root = fx.copy_tree(rsna.root, tmp_path / "rsna")
    cases = open_dataset("rsna", root)
    victim = cases[0].meta["image_ids"][2]
    (root / "stage_2_train" / f"{victim}.dcm").unlink()
    with pytest.raises(InputError) as e:
        cases[0].load()
    one_line_error(e, "no longer exist", "reopen")
    cases[1].load()  # the other series still loads
    other = root / "stage_2_train" / f"{cases[1].meta['image_ids'][0]}.dcm"
    shutil.copy(other, root / "stage_2_train" / f"{cases[1].meta['image_ids'][1]}.dcm")  # replaced in place
    with pytest.raises(InputError) as e:
        cases[1].load()
    one_line_error(e, "changed on disk", "reopen")


def _rewrite_csv(root: Path, edit) -> None:  # type: ignore[no-untyped-def]
    p = root / "stage_2_train.csv"
    p.write_text(edit(p.read_text()))


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (lambda t: t.replace("ID,Label", "ID,Lbl", 1), ["ID,Label"]),
        (lambda t: t.replace("_subdural,", "_subdurall,", 1), ["ID_<id>_<subtype>"]),
        (lambda t: t.replace("_any,0", "_any,2", 1), ["not 0 or 1"]),
        (
            lambda t: "\n".join(line for line in t.splitlines() if "_epidural" not in line) + "\n",
            ["lack some of the six"],
        ),
        (lambda t: "ID,Label\n", ["no label rows"]),
    ],
)
def test_rsna_malformed_csv_is_one_line(rsna: fx.RsnaFixture, tmp_path: Path, edit, fragments) -> None:  # type: ignore[no-untyped-def]
    root = fx.copy_tree(rsna.root, tmp_path / "rsna")
    _rewrite_csv(root, edit)
    with pytest.raises(InputError) as e:
        open_dataset("rsna", root)
    one_line_error(e, "stage_2_train.csv", *fragments)


def test_rsna_label_for_missing_image(rsna: fx.RsnaFixture, tmp_path: Path) -> None:
    root = fx.copy_tree(rsna.root, tmp_path / "rsna")
    _rewrite_csv(root, lambda t: t + "ID_0000dead0_any,1\n" + "".join(f"ID_0000dead0_{s.value},0\n" for s in SUBTYPES))
    with pytest.raises(InputError) as e:
        open_dataset("rsna", root)
    one_line_error(e, "1 image(s) with no file", "ID_0000dead0.dcm", "missing='skip'")
    cases = open_dataset("rsna", root, missing="skip")
    assert len(cases) == 2 and cases.skip_counts() == {"labelled image not on disk": 1}


def test_rsna_unreadable_file_and_unlabelled_series_are_skipped(rsna: fx.RsnaFixture, tmp_path: Path) -> None:
    root = fx.copy_tree(rsna.root, tmp_path / "rsna")
    ids = rsna.ids
    uids = list(ids)
    bad = root / "stage_2_train" / f"{ids[uids[0]][2]}.dcm"  # middle slice: its series gets a gap
    bad.write_bytes(b"\x00" * 64)
    (root / "stage_2_train" / "ID_6431af929.dcm").write_bytes(b"DICM" + b"\xff" * 10)  # the known corrupt kind
    cases = open_dataset("rsna", root, missing="skip")
    assert [c.case_id for c in cases] == [uids[1]]
    reasons = cases.skip_counts()
    assert sum(v for k, v in reasons.items() if k.startswith(("not DICOM", "unreadable"))) == 2
    assert any(k.startswith("series refused: missing slices") for k in reasons)
    # images with no label rows (a test set in the same folder) leave their series out, counted
    _rewrite_csv(
        root, lambda t: "\n".join(line for line in t.splitlines() if not any(i in line for i in ids[uids[1]])) + "\n"
    )
    cases = open_dataset("rsna", root, missing="skip")
    assert len(cases) == 0 and any(k.startswith("series without labels") for k in cases.skip_counts())


def test_rsna_missing_csv_or_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        open_dataset("rsna", tmp_path)
    one_line_error(e, "stage_2_train.csv")
    with pytest.raises(InputError) as e:
        open_dataset("rsna", tmp_path / "nope")
    one_line_error(e, "not found")


# --------------------------------------------------------------------------- PhysioNet


def test_physionet_reads_scans_masks_and_csv(physionet: tuple[Path, dict]) -> None:
    root, truth = physionet
    cases = open_dataset("physionet", root)
    assert_matches(cases, truth)
    by_id = {c.case_id: c for c in cases}
    assert by_id["050"].meta["file_slice_of_display_slice"] == [5, 4, 3, 2, 1, 0]  # stored downwards


def test_physionet_rot90_matches_affine_for_upward_files(physionet: tuple[Path, dict]) -> None:
    root, truth = physionet
    cases = {c.case_id: c for c in open_dataset("physionet", root, orientation="rot90")}
    t = truth["049"]
    hu, spacing = cases["049"].load()
    np.testing.assert_array_equal(hu, t.hu)
    np.testing.assert_array_equal(cases["049"].load_mask(), t.mask)
    np.testing.assert_allclose(spacing, t.spacing, rtol=1e-5)


def _edit_physionet_csv(root: Path, edit) -> None:  # type: ignore[no-untyped-def]
    p = root / "hemorrhage_diagnosis_raw_ct.csv"
    p.write_text(edit(p.read_text()))


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (lambda t: t.replace("Subarachnoid,", "SAH,", 1), ["lacks column(s) Subarachnoid"]),
        (lambda t: t.replace("\n49,3,", "\n49,3.5,", 1), ["not a whole number"]),
        (lambda t: "\n".join(t.splitlines()[:-1]) + "\n", ["scan 050", "5 rows", "6 slices"]),
        (lambda t: t + "51,1,0,0,0,0,0,1,0\n", ["no scan in ct_scans", "051.nii"]),
    ],
)
def test_physionet_malformed_csv(physionet: tuple[Path, dict], tmp_path: Path, edit, fragments) -> None:  # type: ignore[no-untyped-def]
    root = fx.copy_tree(physionet[0], tmp_path / "p")
    _edit_physionet_csv(root, edit)
    with pytest.raises(InputError) as e:
        open_dataset("physionet", root)
    one_line_error(e, *fragments)


def test_physionet_bad_files(physionet: tuple[Path, dict], tmp_path: Path) -> None:
    root = fx.copy_tree(physionet[0], tmp_path / "p")
    hu, mask = fx.synthetic_head(6, 24, {})
    data, aff = nx.display_to_nifti(mask, (5.0, 0.45, 0.45))
    nx.save_nifti(root / "masks" / "049.nii", data, aff)  # mask grid differs from the scan
    with pytest.raises(InputError) as e:
        open_dataset("physionet", root)
    one_line_error(e, "case 049", "does not match scan shape")
    (root / "ct_scans" / "049.nii").write_bytes(b"not a nifti at all" * 30)
    with pytest.raises(InputError) as e:
        open_dataset("physionet", root)
    one_line_error(e, "049.nii", "NIfTI")


# --------------------------------------------------------------------------- INSTANCE


@pytest.mark.parametrize("sub", ["", "train"])
def test_instance_reads_either_root(instance: tuple[Path, dict], sub: str) -> None:
    root, truth = instance
    cases = open_dataset("instance", root / sub if sub else root)
    assert_matches(cases, truth)
    assert all(c.subtype_labels is None for c in cases)


def test_instance_bad_masks(instance: tuple[Path, dict], tmp_path: Path) -> None:
    root = fx.copy_tree(instance[0], tmp_path / "i")
    label = root / "train" / "label" / "002.nii.gz"
    label.write_bytes(gzip.compress(b"\x00" * 10)[:-4])  # truncated gzip
    with pytest.raises(InputError) as e:
        open_dataset("instance", root)
    one_line_error(e, "case 002", "002.nii.gz")
    label.unlink()
    cases = open_dataset("instance", root)
    assert [c.case_id for c in cases] == ["001"] and cases.skip_counts() == {"scan without a mask": 1}
    assert [c.case_id for c in open_dataset("instance", root, unlabelled=True)] == ["001", "002"]
    shutil.move(root / "train" / "data" / "001.nii.gz", tmp_path / "elsewhere.nii.gz")
    with pytest.raises(InputError) as e:
        open_dataset("instance", root)
    one_line_error(e, "mask(s) with no scan", "001")


# --------------------------------------------------------------------------- BHSD


def test_bhsd_codes_become_subtypes(bhsd: tuple[Path, dict]) -> None:
    root, truth = bhsd
    cases = open_dataset("bhsd", root)
    assert_matches(cases, truth)
    assert cases.skip_counts() == {"image without a label map": 1}
    first = {c.case_id: c for c in cases}["ID_0a1b2c3d"]
    assert first.subtype_labels[:3].tolist() == [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]]
    assert set(np.unique(first.load_mask()).tolist()) == {0, 1, 2, 3}
    with_unlabelled = open_dataset("bhsd", root, unlabelled=True)
    extra = [c for c in with_unlabelled if c.case_id == "ID_99aa88bb"][0]
    assert extra.slice_labels is None and extra.load_mask is None and extra.load()[0].shape == (5, 32, 32)


def test_bhsd_without_channel_suffix_and_bad_codes(tmp_path: Path) -> None:
    truth = nx.make_bhsd(tmp_path / "b", names=("case1",), channel_suffix=False)
    assert_matches(open_dataset("bhsd", tmp_path / "b"), truth)
    hu, mask = fx.synthetic_head(5, 32, {1: 7})
    data, aff = nx.display_to_nifti(mask, (5.0, 0.45, 0.45))
    nx.save_nifti(tmp_path / "b" / "labelsTr" / "case1.nii.gz", data, aff)
    with pytest.raises(InputError) as e:
        open_dataset("bhsd", tmp_path / "b")
    one_line_error(e, "case case1", "outside 0..5")
    with pytest.raises(InputError) as e:
        open_dataset("bhsd", tmp_path / "b", split="val")
    one_line_error(e, "unknown split")


# --------------------------------------------------------------------------- generic


@pytest.mark.parametrize("key", ["SOPInstanceUID", "file"])
def test_generic_reads_series_and_labels(tmp_path: Path, key: str) -> None:
    truth = nx.make_generic(tmp_path, key=key)
    cases = open_dataset("generic", tmp_path)
    assert_matches(cases, truth)
    assert cases.skipped == []


def test_generic_without_subtypes(tmp_path: Path) -> None:
    truth = nx.make_generic(tmp_path, subtypes=False)
    assert_matches(open_dataset("generic", tmp_path), truth)


def test_generic_real_head_ct_slice(tmp_path: Path, real_ct_files: dict[str, Path]) -> None:
    """A series made of pydicom-data's real 512x512 head CT slice reads to the file's own HU."""
    import pydicom

    src = real_ct_files.get("693_UNCR.dcm")
    if src is None:
        pytest.skip("pydicom-data is not installed")
    sops = fx.real_ct_series(tmp_path / "real", src, n=3)
    (tmp_path / "labels.csv").write_text(
        "SOPInstanceUID,any\n" + "".join(f"{s},{int(i == 1)}\n" for i, s in enumerate(sops))
    )
    cases = open_dataset("generic", tmp_path)
    assert len(cases) == 1
    hu, spacing = cases[0].load()
    ds = pydicom.dcmread(src)
    expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert hu.shape == (3, 512, 512)
    for z in range(3):
        np.testing.assert_array_equal(hu[z], expected)
    assert cases[0].slice_labels.tolist() == [0, 1, 0]
    assert spacing[0] == pytest.approx(5.0) and spacing[1] == pytest.approx(float(ds.PixelSpacing[0]))
    assert -1100 < float(np.median(hu[0])) < 100  # a real head slice: air/brain, not raw stored values


@pytest.mark.parametrize(
    "header, fragments",
    [
        ("SOPInstanceUID,label\n", ["lacks column any"]),
        ("UID,any\n", ["exactly one key column"]),
        ("SOPInstanceUID,any,epidural\n", ["lacks intraparenchymal"]),
    ],
)
def test_generic_malformed_csv(generic: tuple[Path, dict], tmp_path: Path, header: str, fragments: list[str]) -> None:
    root = fx.copy_tree(generic[0], tmp_path / "g")
    p = root / "labels.csv"
    p.write_text(header + "1.2.3,0" + (",0" if header.count(",") == 2 else "") + "\n")
    with pytest.raises(InputError) as e:
        open_dataset("generic", root)
    one_line_error(e, "labels.csv", *fragments)


def test_generic_label_for_missing_slice(generic: tuple[Path, dict], tmp_path: Path) -> None:
    root = fx.copy_tree(generic[0], tmp_path / "g")
    p = root / "labels.csv"
    p.write_text(p.read_text() + "1.2.3.4.5,1,0,0,0,0,1\n")
    with pytest.raises(InputError) as e:
        open_dataset("generic", root)
    one_line_error(e, "1 slice(s) not found", "1.2.3.4.5")
    cases = open_dataset("generic", root, missing="skip")
    assert len(cases) == 2 and cases.skip_counts() == {"labelled slice not found": 1}
    p.write_text("SOPInstanceUID,any\nx,0\nx,1\n")
    with pytest.raises(InputError) as e:
        open_dataset("generic", root)
    one_line_error(e, "listed twice")


# --------------------------------------------------------------------------- open_dataset


def test_open_dataset_refuses_unknown_kind_and_option(generic: tuple[Path, dict]) -> None:
    with pytest.raises(InputError) as e:
        open_dataset("kaggle", generic[0])
    one_line_error(e, "unknown dataset kind", "rsna")
    with pytest.raises(InputError) as e:
        open_dataset("generic", generic[0], colour="red")
    one_line_error(e, "generic dataset has no option colour", "cache")


def test_cases_pickle_for_worker_processes(physionet: tuple[Path, dict], rsna: fx.RsnaFixture) -> None:
    """DataLoader workers and torchrun ranks may receive Cases by pickling: loaders must survive it."""
    import pickle

    for kind, root in (("physionet", physionet[0]), ("rsna", rsna.root)):
        case = open_dataset(kind, root)[0]
        copy = pickle.loads(pickle.dumps(case))
        np.testing.assert_array_equal(copy.load()[0], case.load()[0])
        np.testing.assert_array_equal(copy.slice_labels, case.slice_labels)


def test_rsna_parallel_header_reading_gives_the_same_index(tmp_path: Path) -> None:
    big = fx.make_rsna(tmp_path, n_series=4, n_slices=16)  # 64 files: enough to use the process pool
    serial = open_dataset("rsna", tmp_path)
    parallel = open_dataset("rsna", tmp_path, workers=2)
    assert [c.meta["image_ids"] for c in parallel] == [c.meta["image_ids"] for c in serial]
    assert sorted(c.case_id for c in parallel) == sorted(big.cases)


def test_rsna_conflicting_duplicate_resolves_to_positive(rsna: fx.RsnaFixture, tmp_path: Path) -> None:
    root = fx.copy_tree(rsna.root, tmp_path / "rsna")
    uid = next(u for u, t in rsna.cases.items() if not t.slice_labels.any())
    img = rsna.ids[uid][0]
    _rewrite_csv(root, lambda t: t + f"{img}_subdural,1\n")
    cases = open_dataset("rsna", root)
    assert cases.meta["conflicting_duplicates"] == 1
    case = next(c for c in cases if c.case_id == uid)
    assert case.slice_labels.tolist() == [1, 0, 0, 0, 0]
    assert case.subtype_labels[0].tolist() == [0, 0, 0, 0, 1]


def test_adapters_do_not_need_torch(physionet: tuple[Path, dict]) -> None:
    """Reading data is torch-free, so data checks run on a machine with the runtime install alone."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from training.data import open_dataset; "
        "import training.data.rsna, training.data.generic, training.data.bhsd, training.data.phantom; "
        f"c = open_dataset('physionet', Path({str(physionet[0])!r})); c[0].load(); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
