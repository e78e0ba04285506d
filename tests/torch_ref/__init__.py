"""Independent PyTorch references used by the parity tests (NCHW/OIHW, official key names)."""
