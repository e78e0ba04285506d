"""The networks and their numerics: ops, resizes, configs, generators, encoder, D.

Pure Flax modules and pure functions over explicit parameters (NHWC, float32
params, the originals' storage conventions). May import: nothing else in
padinv_jax. Must not: read or write files, know about training, data or the
command line (loading weights is storage's and convert's business).
"""
