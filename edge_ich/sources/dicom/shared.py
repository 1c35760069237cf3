"""One element object for a value the slices of a series repeat.

The headers of a series repeat most of their elements byte for byte (patient, study, equipment,
orientation, pixel module); only a handful differ per slice (SOP Instance UID, position, instance
number). pydicom keeps every element of every header as its own object, about 30 KB a slice once
converted: 30 MB for a 1,000-slice thin series, the largest part of what a run holds beyond its
model. `ElementPool.share` points a header's repeated elements at one converted element object.
The headers read exactly as before; they are the series' cached headers, which no caller edits
(`DicomSeries.header` hands out copies for editing).

Not shared: private elements (their creator comes from their own header), sequences (items know
their parent), values whose VR depends on their header (US or SS and the like), deferred values,
and any value pydicom refuses to convert (it stays raw, and fails or warns where it is read, as before).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_CHARSET = 0x00080005


class ElementPool:
    """Converted elements by their raw form, for the headers of one discovery."""

    def __init__(self) -> None:
        # raw signature -> None (seen once), the shared element, or False (not shareable)
        self._seen: dict[tuple[Any, ...], Any] = {}

    def share(self, ds: Any) -> None:
        """Replace `ds`'s raw elements seen before with the shared converted element (file meta too)."""
        from pydicom.dataelem import RawDataElement

        raw_charset = ds._dict.get(_CHARSET)
        charset = (
            raw_charset.value if isinstance(raw_charset, RawDataElement) else str(getattr(raw_charset, "value", ""))
        )
        for target in (ds, getattr(ds, "file_meta", None)):
            if target is None:
                continue
            for tag, elem in list(target._dict.items()):
                if not isinstance(elem, RawDataElement) or tag == _CHARSET or tag.is_private:
                    continue
                if elem.is_buffered or elem.length == 0xFFFFFFFF or not isinstance(elem.value, bytes):
                    continue
                if not _plain_vr(tag, elem.VR):
                    continue
                sig = (charset, tag, elem.VR, elem.length, elem.value, elem.is_implicit_VR, elem.is_little_endian)
                got = self._seen.get(sig, ...)
                if got is ...:  # first sighting: a value only one slice has is never converted here
                    self._seen[sig] = None
                elif got is None:  # second sighting: convert it as pydicom would on access, then share
                    self._seen[sig] = self._convert(target, tag)
                elif got is not False:
                    target._dict[tag] = got

    @staticmethod
    def _convert(target: Any, tag: Any) -> Any:
        from pydicom.dataelem import DataElement

        try:
            elem = target[tag]
        except Exception:  # stays raw: it fails (or not) where it is read, as before
            return False
        return elem if isinstance(elem, DataElement) and _plain_vr(tag, elem.VR) else False


@lru_cache(maxsize=4096)  # asked for every element of every header: one dictionary lookup per (tag, VR)
def _plain_vr(tag: Any, vr: str | None) -> bool:
    """A VR that is neither a sequence nor one of those resolved per header (US or SS, OB or OW, ...)."""
    from pydicom.datadict import dictionary_VR
    from pydicom.valuerep import AMBIGUOUS_VR

    try:
        known = dictionary_VR(tag)
    except KeyError:
        known = None
    return all(v is not None and v not in AMBIGUOUS_VR and v != "SQ" for v in (vr or known, known or vr))
