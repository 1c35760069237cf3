"""Real small ONNX nets and calibration folders for the engine-build tests.

`build_deep_model` writes a genuine 4-layer conv net (first conv and head stay FP32 under
INT8, so two middle convs get Q/DQ) that detects acute blood (> 60 HU) away from bone.
`bone_gain` scales a bone-detector channel that shares one activation tensor (hence one
per-tensor INT8 scale) with the brain-window channel: at 4 the range is ~[0, 1] and INT8 is
faithful; at 2000 bone drives that tensor to ~500, the INT8 step (~4) swallows the whole brain
window and INT8 detects nothing. Same FP32 masks either way: only the activation range differs.

`write_calib_dir` writes a phantom-style folder (case_NNN/dicom/*.dcm + case_NNN/truth.npz)
of synthetic heads with skull, brain, noise and blood blobs, or air-only series.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ich.card import ModelCard, sha256_file
from edge_ich.preprocess import DEFAULT_WINDOWS

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def build_deep_model(out_dir: Path, name: str = "deep", size: int = 64, bone_gain: float = 4.0) -> Path:
    """Write `out_dir/<name>.onnx` (context 1, the 3 default windows) and its card; return the path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    windows = list(DEFAULT_WINDOWS)
    c_in = 3 * len(windows)
    brain, wide = len(windows) + 0, len(windows) + 2  # centre slice channels
    w1 = np.zeros((4, c_in, 3, 3), np.float32)
    b1 = np.zeros(4, np.float32)
    w1[0, brain] = 1.0 / 9.0  # local mean of the brain window
    b1[0] = 0.01
    w1[1, brain, 1, 1] = 1.0  # brain window itself
    w1[3, wide, 1, 1] = bone_gain  # bone: wide window above 0.75 (~135 HU)
    b1[3] = -0.75 * bone_gain
    w2 = np.zeros((2, 4, 3, 3), np.float32)
    w2[0, 0] = 1.0 / 9.0
    # Suppress blood calls next to bone (same FP32 mask for any gain). 127/27 makes the channel's
    # symmetric INT8 weight scale exactly 1/27, so the 1/9 mean weights quantize without error.
    w2[0, 3] = -127.0 / 27.0
    w2[1, 1] = 0.5 / 9.0
    b2 = np.zeros(2, np.float32)
    w3 = np.zeros((2, 2, 1, 1), np.float32)
    w3[0, 0], w3[1, 1] = 1.0, 1.0
    b3 = np.zeros(2, np.float32)
    w4 = np.zeros((1, 2, 1, 1), np.float32)
    w4[0, 0] = 40.0
    b4 = np.array([-30.0], np.float32)  # logit = 40 * (x - 0.75): brain window 0.75 = 60 HU
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv_first", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv_mid", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="conv_mix"),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("Conv", ["r3", "w4", "b4"], ["logits"], name="conv_head"),
    ]
    inits = [
        numpy_helper.from_array(a, n)
        for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (w3, "w3"), (b3, "b3"), (w4, "w4"), (b4, "b4"))
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c_in, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1, size, size])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edge-ich-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.onnx"
    onnx.save(model, str(path))
    ModelCard(
        name=name,
        model_file=path.name,
        model_sha256=sha256_file(path),
        input_name="input",
        output_name="logits",
        input_size=(size, size),
        context=1,
        windows=windows,
        min_component_mm3=5.0,
        parameters=int(sum(a.size for a in (w1, b1, w2, b2, w3, b3, w4, b4))),
        training={"note": f"hand-set weights for tests (bone_gain {bone_gain}), not trained"},
    ).save(path.with_name(f"{name}.card.json"))
    return path


def synthetic_head(
    seed: int, slices: int = 12, size: int = 128, air_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """HU int16 [Z, Y, X] (skull 1000, brain 30 +- 4, blood 75 on about half the slices) and uint8 labels."""
    rng = np.random.default_rng(seed)
    hu = np.full((slices, size, size), -1000, np.int16)
    labels = np.zeros((slices, size, size), np.uint8)
    if air_only:
        hu += rng.normal(0, 4, hu.shape).astype(np.int16)
        return hu, labels
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    r = np.hypot((yy - c) / (0.44 * size), (xx - c) / (0.38 * size))
    for z in range(slices):
        s = np.where(r < 1.0, 1000.0, -1000.0)
        s[r < 0.9] = 30.0
        s[r < 0.9] += rng.normal(0, 4, int((r < 0.9).sum()))
        if z % 2 == 1:
            cy, cx = c + rng.uniform(-0.15, 0.15) * size, c + rng.uniform(-0.15, 0.15) * size
            rad = rng.uniform(0.07, 0.12) * size
            blob = np.hypot(yy - cy, xx - cx) < rad
            s[blob] = 75.0 + rng.normal(0, 4, int(blob.sum()))
            labels[z][blob] = 1
        hu[z] = np.rint(s).astype(np.int16)
    return hu, labels


def write_series(
    folder: Path, hu: np.ndarray, series_no: int, spacing: tuple[float, float, float] = (5.0, 1.5, 1.5)
) -> None:
    """One axial CT series (CT Image Storage, explicit VR little endian), ascending positions."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    root = f"1.2.826.0.1.3680043.8.498.77.{series_no}"
    folder.mkdir(parents=True, exist_ok=True)
    for z, sl in enumerate(hu):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = f"{root}.3.{z + 1}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = f"{root}.1", f"{root}.2", f"{root}.4"
        ds.Modality = "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = z + 1
        ds.ImagePositionPatient = [0.0, 0.0, z * spacing[0]]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = sl.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0.0, 1.0
        ds.PixelData = np.ascontiguousarray(sl, dtype=np.int16).tobytes()
        ds.save_as(folder / f"slice_{z:03d}.dcm", enforce_file_format=True)


def write_calib_dir(
    root: Path, cases: int = 4, slices: int = 12, size: int = 128, seed: int = 0, air_only: bool = False
) -> Path:
    """Phantom-style folder: case_NNN/dicom/*.dcm and case_NNN/truth.npz (labels, slice_labels, spacing)."""
    root = Path(root)
    for k in range(cases):
        hu, labels = synthetic_head(seed + k, slices, size, air_only)
        case = root / f"case_{k:03d}"
        write_series(case / "dicom", hu, seed * 1000 + k + (500 if air_only else 0))
        np.savez_compressed(
            case / "truth.npz",
            labels=labels,
            slice_labels=labels.reshape(slices, -1).any(1).astype(np.uint8),
            spacing=np.array([5.0, 1.5, 1.5]),
        )
    return root
