"""The report: a results folder's records turned into the benchmark paper's table (baseline vs compressed, mean ±
std and a 95 % interval over seeds, paired deltas with verdicts) and a Pareto plot of accuracy vs latency with
intervals on both axes. `python evaluate.py report=DIR` runs it
(edgecomp.pipelines.report); the functions here work on plain lists of records."""
