"""Loss networks used in training and evaluation: LPIPS and ArcFace (ID)."""
