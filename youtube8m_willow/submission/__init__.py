"""Kaggle submission CSVs: writing them and averaging several (ensembles)."""
