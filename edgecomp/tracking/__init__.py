"""Experiment loggers: W&B (offline by default), Lightning's CSV logs, or none; and how a record reaches them."""
