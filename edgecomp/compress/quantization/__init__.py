"""Post-training quantization to ONNX files run by ONNX Runtime: the FP16 and INT8 compressors, INT8 calibration,
and the latency-chosen mixed precision (which nodes stay in FP32, from a per-node profile)."""
