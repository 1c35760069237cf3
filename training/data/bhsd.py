"""BHSD (2023) in the nnU-Net layout: `imagesTr/<case>[_0000].nii.gz` + `labelsTr/<case>.nii.gz`.

Label codes 1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH are exactly the Subtype order, so a mask's codes
give per-slice subtype labels directly. `split="test"` reads imagesTs/labelsTs, "all" both.
Images without a label map (BHSD also ships unlabelled scans) are left out and counted unless
unlabelled=True.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path

from edge_ich.errors import InputError
from edge_ich.sources.volume import Skipped
from training.data.base import SUBTYPES, CaseList, MissingPolicy, coerce_enum, refuse_or_skip_orphans, require_dir
from training.data.instance import nifti_case
from training.data.niftiutil import list_nifti, nifti_stem

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")


class Split(str, Enum):
    TRAIN = "train"
    TEST = "test"
    ALL = "all"


def _images(folder: Path) -> dict[str, Path]:
    """Case name -> image file; nnU-Net's channel suffix `_0000` is dropped, other channels refused."""
    out: dict[str, Path] = {}
    for p in list_nifti(folder):
        stem = nifti_stem(p)
        m = _CHANNEL.match(stem)
        if m is not None:
            if m.group("ch") != "0000":
                raise InputError(f"BHSD image {p.name} is channel {m.group('ch')}; only single-channel CT is expected")
            stem = m.group("case")
        if stem in out:
            raise InputError(f"BHSD case {stem} has two image files ({out[stem].name}, {p.name})")
        out[stem] = p
    return out


def open_bhsd(
    root: Path, split: str | Split = "train", missing: str | MissingPolicy = "error", unlabelled: bool = False
) -> CaseList:
    """One Case per image with labels, subtypes and mask from its label map."""
    root = require_dir(Path(root), "BHSD")
    which = coerce_enum(Split, split, "split")
    pairs = [("imagesTr", "labelsTr")] if which is not Split.TEST else []
    if which is not Split.TRAIN:
        pairs.append(("imagesTs", "labelsTs"))
    policy = coerce_enum(MissingPolicy, missing, "missing-image policy")
    cases = CaseList(
        meta={
            "dataset": "bhsd",
            "split": which.value,
            "label_codes": {str(i + 1): s.value for i, s in enumerate(SUBTYPES)},
        }
    )
    for img_name, lab_name in pairs:
        if which is Split.ALL and not (root / img_name).is_dir():
            continue
        images = _images(require_dir(root / img_name, f"BHSD {img_name}"))
        label_dir = root / lab_name
        labels = {nifti_stem(p): p for p in list_nifti(label_dir)} if label_dir.is_dir() else {}
        absent = sorted(set(labels) - set(images))
        if absent:
            refuse_or_skip_orphans(
                cases,
                policy,
                [f"{lab_name}/{labels[a].name}" for a in absent],
                "label map without an image",
                f"BHSD {lab_name}/ has {len(absent)} label map(s) with no image in {img_name}/ (e.g. {absent[0]})",
            )
        for name, path in sorted(images.items()):
            label = labels.get(name)
            if label is None and not unlabelled:
                cases.skipped.append(Skipped(f"{img_name}/{path.name}", "image without a label map"))
                continue
            cases.append(nifti_case("bhsd", name, path, label, max_code=len(SUBTYPES)))
    return cases
