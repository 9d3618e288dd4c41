"""Measuring an artifact: accuracy, latency on a target device, FLOPs, parameters, sizes, and the record."""
