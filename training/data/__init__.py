"""Training data adapters: every dataset becomes a list of lazy `Case`s in edge_ich's conventions.

    from training.data import open_dataset
    cases = open_dataset("rsna", Path("/data/rsna"))      # or phantom|physionet|instance|bhsd|generic
    hu, spacing = cases[0].load()                         # float32 [Z, Y, X], (slice, row, col) mm
    cases[0].slice_labels                                 # uint8 [Z]

Readers go through the runtime (edge_ich.sources.dicom, edge_ich.sources.nifti), so a model is trained
on exactly the slices, order, orientation and HU it will see at the point of care. See
docs/datasets.md for each dataset's layout and options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.data.base import SUBTYPES, Case, CaseList, DatasetKind, MissingPolicy, Subtype, check_options, coerce_enum

__all__ = ["Case", "CaseList", "DatasetKind", "MissingPolicy", "SUBTYPES", "Subtype", "open_dataset"]


def open_dataset(kind: str | DatasetKind, root: Path, **kw: Any) -> CaseList:
    """Open a dataset of the given kind at root; keyword options are the adapter's own (see docs/datasets.md).

    Returns a CaseList: a list of Cases that also carries `.skipped` (what was left out and why)
    and `.meta`. Bad data raise one-line InputErrors.
    """
    k = coerce_enum(DatasetKind, kind, "dataset kind")
    root = Path(root)
    if k is DatasetKind.PHANTOM:
        from training.data.phantom import open_phantom as fn
    elif k is DatasetKind.RSNA:
        from training.data.rsna import open_rsna as fn  # type: ignore[assignment]
    elif k is DatasetKind.PHYSIONET:
        from training.data.physionet import open_physionet as fn  # type: ignore[assignment]
    elif k is DatasetKind.INSTANCE:
        from training.data.instance import open_instance as fn  # type: ignore[assignment]
    elif k is DatasetKind.BHSD:
        from training.data.bhsd import open_bhsd as fn  # type: ignore[assignment]
    else:
        from training.data.generic import open_generic as fn  # type: ignore[assignment]
    check_options(fn, kw, f"{k.value} dataset")
    return fn(root, **kw)
