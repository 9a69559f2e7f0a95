"""Datasets: the synthetic shapes world (more sources arrive with the training issue)."""
