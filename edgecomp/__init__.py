"""edgecomp: compress vision models for edge devices and measure what the compression bought."""

__version__ = "0.1.0"
