"""Inversion and what is done with codes: invert/reconstruct, refinement, apps.

Pure functions of explicit parameters and arrays (blending, interpolation,
editing, padding heatmaps), plus the codes .npz format. May import: models,
losses, evaluation. Must not: know about training, storage, data pipelines
or the CLI.
"""
