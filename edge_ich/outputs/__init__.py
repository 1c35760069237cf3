"""Writers for the run's outputs: report JSON, NIfTI mask, DICOM SEG, key images."""
