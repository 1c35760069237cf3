"""Measurement without a model: the intracranial mask (`brain`), the Hounsfield threshold baseline
(`baseline`), segmentation metrics (`metrics`) and timing statistics (`stats`: one median and
percentile definition for report.json timings and every benchmark). Training, benchmarks and tests
share them.
"""
