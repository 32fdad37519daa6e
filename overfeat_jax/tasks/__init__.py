"""The tasks (paper sections 3-5): classification, localization, detection; each owns its networks, loss,
evaluation and summary. The trainer (`train/`), the inference tools and the sweeps use them; they import
nothing from `train/`."""
