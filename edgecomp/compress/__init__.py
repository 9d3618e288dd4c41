"""Compressors: one interface (base.Compressor), one implementation per file."""
