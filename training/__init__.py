"""Weakly supervised training of the edge-ich segmenter (PyTorch; not part of the runtime).

slice labels -> ResNet + BiLSTM classifier -> Grad-CAM through the LSTM -> unsupervised
refinement into pseudo-masks -> light 2.5D U-Net -> ONNX + ModelCard in engines/.
Run as `python -m training train ...` or `python -m training experiment ...`.
"""
