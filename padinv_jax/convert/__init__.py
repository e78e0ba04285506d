"""Safe conversion of official PyTorch / TF weights into padinv_jax directories.

safe_pickle is the one unpickler (pickle_objects its allow-listed object
table, torch_files the containers); one module per source format. Entry
point: ``padinv_jax.convert.main.run`` (``padinv-convert``). May import:
models, losses, storage. Must not: import training, data, inversion or cli.
"""
