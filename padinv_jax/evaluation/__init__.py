"""Evaluation: per-image reconstruction metrics (MSE, PSNR, SSIM), FID statistics.

May import: models, losses. Must not: know about training, data pipelines,
storage or the CLI (it takes arrays and feature functions).
"""
