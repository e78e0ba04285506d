"""Loss networks and losses: LPIPS, ArcFace (ID), GAN losses.

May import: models (their layers). Must not: read files (weights arrive as
variables from storage), know about training loops, data or the CLI.
"""
