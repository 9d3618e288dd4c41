"""Datasets (generated and on-disk formats) and the Lightning data modules that serve them."""
