"""Kernels of this project's own, built against the installed TensorFlow.

- ``row_block_adam``: TF1's Adam on a row block of a variable and its
  slots, in place (``training.factored_adam`` updates Gated NetVLAD's 1.1 GB
  hidden weight block by block, so its whole gradient is never made);
- ``softmax_pool``: the DBoF poolings' batch norm, softmax, sum and maximum
  over frames, and their gradient;
- ``vlad_descriptor``: the NetVLAD poolings' residuals and normalizations,
  and their gradient;
- ``frame_streams``: the LF models' input scaling, input batch norm and
  stream split in training;
- ``dequantize_frames``: a batch's frames kept as bytes, to floats;
- ``moe_mixture``: the MoE head's per-class softmax over its gates, its
  experts' sigmoids and their mixture, and its gradient.

``build`` compiles them (``make`` runs it), ``loading`` loads them and says
where they may run; without them the callers take TensorFlow's own ops
(more memory and time; the same numbers to float32 rounding).
"""
