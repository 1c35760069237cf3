"""Image analysis without a model: the intracranial mask (`brain`), the Hounsfield threshold
baseline (`baseline`) and the segmentation metrics (`metrics`) that training, benchmarks and
tests share.
"""
