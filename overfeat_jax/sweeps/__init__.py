"""Ablation sweeps of the evaluation procedure: grid (what to run), runner (resumable), report (table, plot)."""
