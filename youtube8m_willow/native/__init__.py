"""Kernels of this project's own, built against the installed TensorFlow.

``row_block_adam``: TF1's Adam on a row block of a variable and its slots,
in place (``training.factored_adam`` updates Gated NetVLAD's 1.1 GB hidden
weight block by block, so its whole gradient is never made). ``build``
compiles the kernels (``make`` runs it); without them training takes
TensorFlow's own path (more memory; the same numbers but for the clipping
norm's last digits).
"""
