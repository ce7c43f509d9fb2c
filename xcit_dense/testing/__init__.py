"""Helpers for running configs through the tools on generated toy data (the suite and
``tools/analysis_tools/head_matrix.py``)."""
