"""What the entry points run: train, evaluate (and, with the compressors, compress)."""
