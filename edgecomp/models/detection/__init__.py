"""Detectors behind one adapter interface (base.DetectorAdapter), one family per file."""
