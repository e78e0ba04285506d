"""The `padinv` command (main), its file handling (files) and jitted runners (run).

The top of the stack: may import every other part. Nothing imports it
except the package's console scripts.
"""
