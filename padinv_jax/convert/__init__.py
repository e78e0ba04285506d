"""Safe conversion of official PyTorch weights into padinv_jax variables.

Entry point: ``padinv_jax.convert.main.run`` (the ``padinv-convert`` command).
"""
