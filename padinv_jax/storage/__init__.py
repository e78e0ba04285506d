"""Storage: array directories, model directories (load/save_model), part directories.

The only place variables meet files (besides convert's readers). May import:
models, losses, evaluation, inversion (PadInvModel wraps its functions). Must
not: know about training, data pipelines, conversion or the CLI.
"""
