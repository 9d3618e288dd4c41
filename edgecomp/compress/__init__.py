"""Compressors: one interface (compressor.Compressor), one implementation per file, grouped by family
(quantization/, pruning/, distillation/); none.py and finetune.py are the controls."""
