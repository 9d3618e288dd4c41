"""Pruning: unstructured magnitude pruning held through a fine-tune, and structured pruning by ModelOpt's FastNAS
(search space, search, measured-latency budget, result)."""
