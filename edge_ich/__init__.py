"""edge-ich: intracranial hemorrhage segmentation on head CT at the point of care.

Importing this package is cheap on purpose: heavy dependencies (onnxruntime, highdicom,
pynetdicom, nibabel, matplotlib, tensorrt) are imported inside the functions that use them.
"""

__version__ = "0.1.0"

from edge_ich.errors import EdgeIchError

__all__ = ["EdgeIchError", "__version__"]
