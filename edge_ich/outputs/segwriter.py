"""The DICOM Segmentation written with pydicom alone: the dataset highdicom builds, without its tables.

highdicom (the reference, see `seg.build_seg`) parses a 22 MB JSON table of the whole standard
the first time it builds a SEG in a process: about 0.4 s of CPU and 67 MiB, more than the rest
of a cold run's outputs together. This module builds the same dataset for the one kind of SEG
edge-ich writes (BINARY, one segment, single-frame CT sources in a patient frame of reference,
frames only where the mask has content): the same attributes with the same values, the same
frame order (ascending along column x row cosine, as highdicom sorts), dimension indices,
derivation references and bit packing. What differs: the new UIDs and times, the file meta
implementation UID/name (pydicom's), and the processing-equipment item, which names edge-ich
rather than highdicom. tests/outputs/test_segwriter.py compares the two datasets attribute by
attribute on every test series, reads ours back with highdicom frame by frame and runs dciodvfy.

Only the slices with content are read from the mask, one at a time, so no volume-sized copy
is made.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pydicom

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"

#: Root attributes highdicom copies from a CT Image source (its tables: the Patient and
#: Clinical Trial Subject modules, General Study, Patient Study and Clinical Trial Study, and
#: Specimen). tests/outputs/test_segwriter.py checks these against highdicom's own tables.
SPECIMEN_KEYWORDS = (
    "ContainerIdentifier",
    "IssuerOfTheContainerIdentifierSequence",
    "AlternateContainerIdentifierSequence",
    "ContainerTypeCodeSequence",
    "ContainerDescription",
    "ContainerComponentSequence",
    "SpecimenDescriptionSequence",
)
PATIENT_STUDY_KEYWORDS = (
    # Patient
    *"ReferencedPatientSequence PatientName PatientID IssuerOfPatientID TypeOfPatientID".split(),
    *"IssuerOfPatientIDQualifiersSequence SourcePatientGroupIdentificationSequence".split(),
    *"GroupOfPatientsIdentificationSequence PatientBirthDate PatientBirthTime".split(),
    *"PatientBirthDateInAlternativeCalendar PatientDeathDateInAlternativeCalendar".split(),
    *"PatientAlternativeCalendar PatientSex QualityControlSubject StrainDescription".split(),
    *"StrainNomenclature StrainStockSequence StrainAdditionalInformation StrainCodeSequence".split(),
    *"GeneticModificationsSequence OtherPatientNames OtherPatientIDsSequence".split(),
    *"ReferencedPatientPhotoSequence EthnicGroupCodeSequence PatientSpeciesDescription".split(),
    *"PatientSpeciesCodeSequence PatientBreedDescription PatientBreedCodeSequence".split(),
    *"BreedRegistrationSequence ResponsiblePerson ResponsiblePersonRole ResponsibleOrganization".split(),
    *"PatientComments PatientIdentityRemoved DeidentificationMethod DeidentificationMethodCodeSequence".split(),
    # Clinical Trial Subject
    *"ClinicalTrialSponsorName ClinicalTrialProtocolID ClinicalTrialProtocolName".split(),
    *"IssuerOfClinicalTrialProtocolID OtherClinicalTrialProtocolIDsSequence ClinicalTrialSiteID".split(),
    *"ClinicalTrialSiteName IssuerOfClinicalTrialSiteID ClinicalTrialSubjectID".split(),
    *"IssuerOfClinicalTrialSubjectID ClinicalTrialSubjectReadingID".split(),
    *"IssuerOfClinicalTrialSubjectReadingID ClinicalTrialProtocolEthicsCommitteeName".split(),
    "ClinicalTrialProtocolEthicsCommitteeApprovalNumber",
    # General Study
    *"StudyDate StudyTime AccessionNumber IssuerOfAccessionNumberSequence ReferringPhysicianName".split(),
    *"ReferringPhysicianIdentificationSequence ConsultingPhysicianName".split(),
    *"ConsultingPhysicianIdentificationSequence StudyDescription ProcedureCodeSequence".split(),
    *"PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence NameOfPhysiciansReadingStudy".split(),
    *"PhysiciansReadingStudyIdentificationSequence ReferencedStudySequence StudyInstanceUID".split(),
    *"StudyID RequestingService RequestingServiceCodeSequence ReasonForPerformedProcedureCodeSequence".split(),
    # Patient Study
    *"AdmittingDiagnosesDescription AdmittingDiagnosesCodeSequence PatientAge PatientSize".split(),
    *"PatientSizeCodeSequence PatientBodyMassIndex MeasuredAPDimension MeasuredLateralDimension".split(),
    *"PatientWeight MedicalAlerts Allergies Occupation SmokingStatus AdditionalPatientHistory".split(),
    *"PregnancyStatus LastMenstrualDate PatientSexNeutered ReasonForVisit ReasonForVisitCodeSequence".split(),
    *"AdmissionID IssuerOfAdmissionIDSequence ServiceEpisodeID ServiceEpisodeDescription".split(),
    *"IssuerOfServiceEpisodeIDSequence PatientState".split(),
    # Clinical Trial Study
    *"ClinicalTrialTimePointID ClinicalTrialTimePointDescription LongitudinalTemporalOffsetFromEvent".split(),
    *"LongitudinalTemporalEventType ClinicalTrialTimePointTypeCodeSequence".split(),
    *"IssuerOfClinicalTrialTimePointID ConsentForClinicalTrialUseSequence".split(),
)

#: (code value, scheme, meaning) of the fixed codes.
_SOURCE_FOR_PROCESSING = ("121322", "DCM", "Source image for image processing operation")
_DERIVATION_SEGMENTATION = ("113076", "DCM", "Segmentation")
_ACQUISITION_EQUIPMENT = ("109101", "DCM", "Acquisition Equipment")
_PROCESSING_EQUIPMENT = ("109102", "DCM", "Processing Equipment")
_CATEGORY = ("49755003", "SCT", "Morphologically Abnormal Structure")
_PROPERTY_TYPE = ("1386000", "SCT", "Intracranial hemorrhage (disorder)")
_ANATOMY = ("12738006", "SCT", "Brain")
_ALGORITHM_FAMILY = ("123110", "DCM", "Artificial Intelligence")

#: Spacing regularity: slice gaps within 1% of the mean gap, stacking within 1e-3 of the normal.
_SPACING_RTOL = 1e-2
_PERPENDICULAR_TOL = 1e-3


def _code(code: tuple[str, str, str]) -> pydicom.Dataset:
    import pydicom

    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def _ds_list(values: Sequence[Any]) -> list[Any]:
    from pydicom.valuerep import DS

    return [DS(v, auto_format=True) for v in values]


def _normal(iop: Sequence[Any]) -> np.ndarray:
    """The frame-order normal: column cosine x row cosine (rows first, then columns, right-handed)."""
    v = np.asarray([float(x) for x in iop], dtype=np.float64)
    n = np.cross(v[3:], v[:3])
    return n / np.linalg.norm(n)


def regular_spacing(positions: np.ndarray, normal: np.ndarray) -> float | None:
    """|slice spacing| when the positions form a regularly spaced stack along `normal`, else None.

    One position counts as a stack of spacing 1.0; duplicates, uneven gaps (over 1% of the
    mean gap) and stacking off the normal mean no stack.
    """
    pos = np.unique(np.asarray(positions, dtype=np.float64), axis=0)
    if len(pos) < len(positions):
        return None
    if len(pos) == 1:
        return 1.0
    dist = pos @ normal
    order = np.argsort(dist)
    d = dist[order]
    spacing = (d[-1] - d[0]) / (len(d) - 1)
    if not np.isclose(np.diff(d), spacing, rtol=_SPACING_RTOL, atol=0.0).all():
        return None
    spans = pos[order[1:]] - pos[order[0]]
    spans /= np.linalg.norm(spans, axis=1)[:, None]
    dots = spans @ normal
    if not np.all((np.abs(dots - 1.0) < _PERPENDICULAR_TOL) | (np.abs(dots + 1.0) < _PERPENDICULAR_TOL)):
        return None
    return float(abs(spacing))


def _acquisition_equipment(src: pydicom.Dataset) -> pydicom.Dataset | None:
    """The source's acquisition equipment as a contributing-equipment item (None without a manufacturer)."""
    import pydicom
    from pydicom.valuerep import DT

    manufacturer = src.get("Manufacturer")
    if manufacturer is None or manufacturer == "":
        return None
    item = pydicom.Dataset()
    item.Manufacturer = manufacturer
    item.PurposeOfReferenceCodeSequence = [_code(_ACQUISITION_EQUIPMENT)]
    limits = {
        "ManufacturerModelName": 64,
        "InstitutionName": 64,
        "InstitutionalDepartmentName": 64,
        "InstitutionAddress": 1024,
        "StationName": 16,
        "DeviceSerialNumber": 64,
    }
    if len(str(manufacturer)) > 64:
        return None
    for kw, limit in limits.items():
        value = src.get(kw)
        if value is not None:
            if len(str(value)) > limit:
                return None
            setattr(item, kw, value)
    versions = src.get("SoftwareVersions")
    if versions is not None:
        many = versions if isinstance(versions, (list, tuple, pydicom.multival.MultiValue)) else [versions]
        if len(many) == 0 or any(len(str(v)) > 64 for v in many):
            return None
        item.SoftwareVersions = versions
    when = src.get("AcquisitionDateTime")
    if when is not None:
        item.ContributionDateTime = DT(when)
    item.ContributionDescription = "Acquisition equipment of the source image(s)"
    return item


def _processing_equipment(version: str, now: _dt.datetime) -> pydicom.Dataset:
    import pydicom
    from pydicom.valuerep import DT

    item = pydicom.Dataset()
    item.Manufacturer = "edge-ich"
    item.PurposeOfReferenceCodeSequence = [_code(_PROCESSING_EQUIPMENT)]
    item.ManufacturerModelName = "edge-ich"
    item.SoftwareVersions = version
    item.ContributionDateTime = DT(now)
    item.ContributionDescription = "Software used to create this instance"
    return item


def _segment_item(algorithm_name: str, algorithm_version: str) -> pydicom.Dataset:
    import pydicom

    algo = pydicom.Dataset()
    algo.AlgorithmFamilyCodeSequence = [_code(_ALGORITHM_FAMILY)]
    algo.AlgorithmName = algorithm_name
    algo.AlgorithmVersion = algorithm_version
    seg = pydicom.Dataset()
    seg.SegmentNumber = 1
    seg.SegmentLabel = "Hemorrhage"
    seg.SegmentedPropertyCategoryCodeSequence = [_code(_CATEGORY)]
    seg.SegmentedPropertyTypeCodeSequence = [_code(_PROPERTY_TYPE)]
    seg.SegmentAlgorithmType = "AUTOMATIC"
    seg.SegmentationAlgorithmIdentificationSequence = [algo]
    seg.SegmentAlgorithmName = algorithm_name
    seg.AnatomicRegionSequence = [_code(_ANATOMY)]
    return seg


def _dimension_index(uid: str) -> list[pydicom.Dataset]:
    import pydicom
    from pydicom.tag import Tag

    items = []
    for pointer, group, label in (
        (0x0062000B, 0x0062000A, "Referenced Segment Number"),
        (0x00200032, 0x00209113, "Image Position Patient"),
    ):
        item = pydicom.Dataset()
        item.DimensionOrganizationUID = uid
        item.DimensionIndexPointer = Tag(pointer)
        item.FunctionalGroupPointer = Tag(group)
        item.DimensionDescriptionLabel = label
        items.append(item)
    return items


def _frame_item(src: pydicom.Dataset, index: int) -> pydicom.Dataset:
    import pydicom

    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID = src.SOPClassUID
    ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
    ref.PurposeOfReferenceCodeSequence = [_code(_SOURCE_FOR_PROCESSING)]
    ref.SpatialLocationsPreserved = "YES"
    derivation = pydicom.Dataset()
    derivation.DerivationCodeSequence = [_code(_DERIVATION_SEGMENTATION)]
    derivation.SourceImageSequence = [ref]
    content = pydicom.Dataset()
    content.DimensionIndexValues = [1, index]
    position = pydicom.Dataset()
    position.ImagePositionPatient = _ds_list(src.ImagePositionPatient)
    item = pydicom.Dataset()
    item.DerivationImageSequence = [derivation]
    item.FrameContentSequence = [content]
    item.PlanePositionSequence = [position]
    return item


def _pixel_data(mask: np.ndarray, order: Sequence[int], rows: int, cols: int, empty: bool) -> bytes:
    """Frames bit-packed back to back (first pixel in the lowest bit), padded to an even length."""
    if empty:
        packed = bytes((len(order) * rows * cols + 7) // 8)
    elif (rows * cols) % 8 == 0:
        packed = b"".join(np.packbits(np.asarray(mask[z]) != 0, bitorder="little").tobytes() for z in order)
    else:  # frames share bytes: pack their pixels as one stream
        flat = np.concatenate([(np.asarray(mask[z]) != 0).reshape(-1) for z in order])
        packed = np.packbits(flat, bitorder="little").tobytes()
    if len(packed) % 2:
        packed += b"0"  # highdicom pads with the character zero; readers ignore the pad
    return packed


def segmentation_dataset(
    mask: np.ndarray,
    headers: Sequence[pydicom.Dataset],
    *,
    algorithm_name: str,
    algorithm_version: str,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    manufacturer: str,
    software_version: str,
    device_serial_number: str,
    content_label: str,
    content_description: str,
) -> pydicom.Dataset:
    """The BINARY SEG of `mask` ([Z, Y, X], slice i <-> headers[i]); headers already complete
    (frame of reference, slice thickness) and checked by the caller."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
    from pydicom.valuerep import DA, DS, TM, format_number_as_ds

    src = headers[0]
    rows, cols = int(src.Rows), int(src.Columns)
    has = mask.slices() if hasattr(mask, "slices") else [i for i in range(mask.shape[0]) if np.asarray(mask[i]).any()]
    empty = not has
    planes = list(range(len(headers))) if empty else has
    normal = _normal(src.ImageOrientationPatient)
    positions = np.array([[float(v) for v in headers[i].ImagePositionPatient] for i in planes])
    _, first = np.unique(positions @ normal, return_index=True)
    order = [planes[k] for k in first]
    if len(order) != len(planes):
        raise ValueError("two source slices share a position")

    now = _dt.datetime.now()
    ds = pydicom.Dataset()
    ds.preamble = b"\x00" * 128
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = UID(SEGMENTATION_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.FileMetaInformationVersion = b"\x00\x01"
    ds.file_meta = meta
    # what highdicom's base class sets from the source, before the module copies override it
    ds.PatientID = src.get("PatientID")
    ds.PatientName = src.get("PatientName")
    ds.PatientBirthDate = src.get("PatientBirthDate")
    ds.PatientSex = src.get("PatientSex")
    ds.StudyInstanceUID = str(src.StudyInstanceUID)
    ds.AccessionNumber = src.get("AccessionNumber")
    ds.StudyID = src.get("StudyID")
    ds.StudyDate = src.get("StudyDate")
    ds.StudyTime = src.get("StudyTime")
    ds.ReferringPhysicianName = src.get("ReferringPhysicianName")
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = series_number
    ds.Modality = "SEG"
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = manufacturer
    ds.DeviceSerialNumber = device_serial_number
    ds.SoftwareVersions = software_version
    ds.SOPInstanceUID = sop_instance_uid
    ds.SOPClassUID = SEGMENTATION_STORAGE
    ds.InstanceNumber = 1
    ds.InstanceCreationDate = DA(now.date())
    ds.InstanceCreationTime = TM(now.time())
    if src.get("SpecificCharacterSet") is not None:
        ds.SpecificCharacterSet = src.SpecificCharacterSet
    ds.ContentDate = DA(now.date())
    ds.ContentTime = TM(now.time())
    for kw in (*SPECIMEN_KEYWORDS, *PATIENT_STUDY_KEYWORDS):
        if kw in src:
            ds.add(src[kw])
    equipment = [e for e in (_acquisition_equipment(src), _processing_equipment(software_version, now)) if e]
    ds.ContributingEquipmentSequence = equipment

    ds.SegmentationType = "BINARY"
    ds.ContentLabel = content_label
    ds.ContentDescription = content_description
    ds.FrameOfReferenceUID = src.FrameOfReferenceUID
    ds.PositionReferenceIndicator = src.get("PositionReferenceIndicator")
    ds.BitsAllocated = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelRepresentation = 0
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.PresentationLUTShape = "IDENTITY"
    refs = []
    for h in headers:
        ref = pydicom.Dataset()
        ref.ReferencedSOPClassUID = h.SOPClassUID
        ref.ReferencedSOPInstanceUID = h.SOPInstanceUID
        refs.append(ref)
    ds.SourceImageSequence = refs
    series = pydicom.Dataset()
    series.SeriesInstanceUID = src.SeriesInstanceUID
    series.ReferencedInstanceSequence = refs
    ds.ReferencedSeriesSequence = [series]
    ds.LossyImageCompression = src.get("LossyImageCompression", "00")
    if ds.LossyImageCompression == "01":
        for kw in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if kw in src:
                setattr(ds, kw, src[kw].value)
    ds.Rows, ds.Columns = rows, cols
    dim_uid = generate_uid()
    ds.DimensionIndexSequence = _dimension_index(dim_uid)
    ds.SegmentSequence = [_segment_item(algorithm_name, algorithm_version)]

    shared = pydicom.Dataset()
    orientation = pydicom.Dataset()
    orientation.ImageOrientationPatient = _ds_list(src.ImageOrientationPatient)
    shared.PlaneOrientationSequence = [orientation]
    measures = pydicom.Dataset()
    measures.PixelSpacing = _ds_list(src.PixelSpacing)
    measures.SliceThickness = DS(src.SliceThickness, auto_format=True)
    if src.get("SpacingBetweenSlices") is not None:
        measures.SpacingBetweenSlices = DS(src.SpacingBetweenSlices, auto_format=True)
    else:
        spacing = regular_spacing(positions, normal)
        if spacing is not None:
            measures.SpacingBetweenSlices = format_number_as_ds(spacing)
    shared.PixelMeasuresSequence = [measures]
    ident = pydicom.Dataset()
    ident.ReferencedSegmentNumber = 1
    shared.SegmentIdentificationSequence = [ident]
    ds.SharedFunctionalGroupsSequence = [shared]

    organization = pydicom.Dataset()
    organization.DimensionOrganizationUID = dim_uid
    ds.DimensionOrganizationSequence = [organization]
    if len(order) > 1:
        spacing = regular_spacing(positions, normal)
        if spacing is not None and spacing > 0.0:
            ds.DimensionOrganizationType = "3D"
    ds.PerFrameFunctionalGroupsSequence = [_frame_item(headers[z], k) for k, z in enumerate(order, 1)]
    ds.NumberOfFrames = len(order)
    ds.SegmentsOverlap = "NO"
    ds.PixelData = _pixel_data(mask, order, rows, cols, empty)
    return ds


def synthetic_headers(n: int = 2, size: int = 4) -> list[pydicom.Dataset]:
    """A tiny in-memory CT series (no patient data) for `seg.warm_up`."""
    import pydicom
    from pydicom.uid import CTImageStorage, generate_uid

    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    out = []
    for k in range(n):
        ds = pydicom.Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "CT", "", "", "", ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "", "", "", "", ""
        ds.Rows = ds.Columns = size
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 1.0
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        out.append(ds)
    return out
