"""The report: a results folder's records turned into the benchmark paper's table (baseline vs compressed, mean ±
std over seeds, deltas) and a Pareto plot of accuracy vs latency. `python evaluate.py report=DIR` runs it
(edgecomp.pipelines.report); the functions here work on plain lists of records."""
