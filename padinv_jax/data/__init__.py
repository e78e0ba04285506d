"""Images in and out: preprocessing, the TFDS builder, batch iterators, image I/O.

Also the datasets made from a generator (demo_data). May import: models.
Must not: know about training (steps, optimisers, checkpoints), storage or
the CLI. `python -m padinv_jax.data` prepares a dataset.
"""
