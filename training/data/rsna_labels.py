"""The RSNA 2019 label table: `stage_2_train.csv` with header `ID,Label`, rows `ID_<id>_<subtype>,<0|1>`.

Six rows per image (five subtypes and `any`), images in no order, duplicate rows present. A
duplicate that disagrees is resolved to positive (any reader saw blood) and counted; a row
that cannot be parsed is an error, since a silently half-read label table trains a wrong model.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ich.errors import InputError
from training.data.base import SUBTYPES

#: Column order of the per-image label rows: the five subtypes (Subtype order) then `any`.
RSNA_CLASSES: tuple[str, ...] = tuple(s.value for s in SUBTYPES) + ("any",)
_CLASS_INDEX = {name: i for i, name in enumerate(RSNA_CLASSES)}


@dataclass
class RsnaLabels:
    """Labels per image ID (`ID_<id>`, the file stem and SOPInstanceUID): uint8 [6] each."""

    by_image: dict[str, np.ndarray]
    duplicates: int = 0
    conflicts: int = 0

    def slice_label(self, image_id: str) -> tuple[int, np.ndarray]:
        """(any, [5] subtypes) of one image."""
        row = self.by_image[image_id]
        return int(row[5]), row[:5]


def read_rsna_labels(path: Path) -> RsnaLabels:
    """Parse the label CSV; a wrong header, a bad row or an image lacking a class is one InputError line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"RSNA label CSV not found: {path}")
    rows: dict[str, list[int]] = {}  # image -> six labels, -1 where no row was seen yet (plain ints: fast)
    duplicates = conflicts = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if header[:2] != ["ID", "Label"]:
                raise InputError(
                    f"RSNA label CSV {path.name} must start with header 'ID,Label' (has: {','.join(header)[:60]})"
                )
            for line_no, cells in enumerate(reader, start=2):
                if not cells:
                    continue
                if len(cells) < 2:
                    raise InputError(f"RSNA label CSV {path.name} line {line_no}: expected 'ID,Label'")
                image_id, sep, cls = cells[0].strip().rpartition("_")
                k = _CLASS_INDEX.get(cls)
                if not sep or k is None or not image_id.startswith("ID_"):
                    raise InputError(
                        f"RSNA label CSV {path.name} line {line_no}: ID is not 'ID_<id>_<subtype>' "
                        f"with a subtype in {', '.join(RSNA_CLASSES)}"
                    )
                label = cells[1].strip()
                if label != "0" and label != "1":
                    raise InputError(f"RSNA label CSV {path.name} line {line_no}: label is not 0 or 1")
                v = 1 if label == "1" else 0
                row = rows.get(image_id)
                if row is None:
                    row = rows[image_id] = [-1] * 6
                if row[k] >= 0:
                    duplicates += 1
                    if row[k] != v:
                        conflicts += 1
                        row[k] = 1
                else:
                    row[k] = v
    except UnicodeDecodeError:
        raise InputError(f"RSNA label CSV {path.name} is not a UTF-8 text CSV") from None
    except csv.Error as exc:
        raise InputError(f"RSNA label CSV {path.name} is not a valid CSV: {exc}") from None
    except OSError as exc:
        raise InputError(f"cannot read RSNA label CSV {path.name}: {exc.strerror or exc}") from None
    if not rows:
        raise InputError(f"RSNA label CSV {path.name} has no label rows")
    incomplete = [i for i, r in rows.items() if min(r) < 0]
    if incomplete:
        first = incomplete[0]
        have = sum(1 for v in rows[first] if v >= 0)
        raise InputError(
            f"RSNA label CSV {path.name}: {len(incomplete)} image(s) lack some of the six classes "
            f"(e.g. {first} has {have} of 6)"
        )
    table = np.array(list(rows.values()), dtype=np.uint8).reshape(-1, 6)
    table[:, 5] = np.maximum(table[:, 5], table[:, :5].max(axis=1))  # 'any' covers the subtypes
    values = {image_id: table[n] for n, image_id in enumerate(rows)}
    return RsnaLabels(values, duplicates=duplicates, conflicts=conflicts)
