"""Training: encoder trainer, pure update steps, frozen loss networks, input, CLI entry.

May import: models, losses, evaluation, data, inversion, storage. Must not:
import convert or cli (weights arrive as model/part directories).
"""
