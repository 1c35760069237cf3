"""Engine building: FP16/INT8 precision ONNX (Q/DQ), the accuracy gate, TensorRT builder, manifest."""
