"""The few operations of the layers whose TensorFlow form is a faster fused
kernel or a leaner gradient, each with its portable ``keras.ops`` form for
JAX and PyTorch.

Everything else in ``youtube8m_willow.layers`` and ``models`` is written
with ``keras.ops`` and ``keras.random`` only. Here each function computes
the same values on every backend; on TensorFlow it runs what the original
graphs ran (TF1's fused batch norm, ``l2_loss``, stateful and stateless
random ops, a compiled scan), custom gradients that hold less memory or
stream a large weight in its own order (the per-video matmul, a wide
softmax, the sum and maximum over frames), the project's own kernels
(batch norm, softmax and pooling over frames: ``native.softmax_pool``;
the NetVLAD poolings' normalizations: ``native.vlad_descriptor``; the LF
models' input preparation: ``native.frame_streams``; the MoE head's
mixture: ``native.moe_mixture``), and a gather of the rows worth computing
(``RowSubset``), so the TensorFlow path keeps its speed and its numbers.
TensorFlow is imported only when it is the backend.
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops

BACKEND = keras.backend.backend()
ON_TENSORFLOW = BACKEND == "tensorflow"

if ON_TENSORFLOW:
    import tensorflow as tf

    from youtube8m_willow.native import (frame_streams, loading, moe_mixture, softmax_pool,
                                         vlad_descriptor)


def weight_shapes_only():
    """A context in which building a model gives its weights their shapes
    without computing their initial values (a scratch TensorFlow graph, where
    initializers are ops that never run): counting the 333M weights of a
    paper model takes a fraction of a second instead of seconds per model.
    On JAX and PyTorch the weights are built as usual."""
    return tf.Graph().as_default() if ON_TENSORFLOW else contextlib.nullcontext()


def video_matmul(inputs, kernel):
    """``inputs @ kernel`` for the per-video layers (a batch of rows against
    a large weight, e.g. Gated NetVLAD's 278528 x 1024 hidden weights).

    Same values and gradients as a plain matmul; on TensorFlow only the
    input gradient ``dy @ kernel^T`` takes another form, ``(kernel dy^T)^T``
    (``_input_gradient``: the faster of its two variants for the matmul's
    dtype, measured on CPUs for float32 and bfloat16). Not for the
    frame-level matmuls (``[B*N, D]`` rows), where the plain form is faster.
    """
    if not ON_TENSORFLOW or len(inputs.shape) != 2:
        return ops.matmul(inputs, kernel)
    return _tf_video_matmul(inputs, tf.convert_to_tensor(kernel))


if ON_TENSORFLOW:
    @tf.custom_gradient
    def _tf_video_matmul(inputs, kernel):
        def gradient(upstream):
            return (_input_gradient(upstream, kernel),
                    tf.matmul(inputs, upstream, transpose_a=True))

        return tf.matmul(inputs, kernel), gradient

    def _input_gradient(upstream, kernel):
        """``upstream @ kernel^T`` as ``(kernel @ upstream^T)^T``, which
        streams the weight in its own row order (a 2-core AVX2 CPU: 0.73 s
        instead of 1.86 s for 80 rows against 278528 x 1024).

        In float32 ``upstream^T`` is written out first (``Snapshot``, which
        grappler does not fold back into the matmul's ``transpose_b``): on a
        Zen 5 CPU 0.24 s instead of 0.31 s for that shape, and no slower for
        the smaller ones. In bfloat16 the folded form is as fast or faster
        there (``bench/bench_video_matmul.py``); float16 takes it unmeasured.
        """
        upstream_t = tf.transpose(upstream)
        if kernel.dtype == tf.float32:
            upstream_t = tf.raw_ops.Snapshot(input=upstream_t)
        return tf.transpose(tf.matmul(kernel, upstream_t))


def normalize_batch(inputs, gamma, beta, epsilon: float):
    """Batch normalization of ``[M, C]`` rows with their own moments.

    Returns ``(outputs, mean, variance)`` with the variance Bessel-corrected
    (``n / (n - 1)``, none for one row), as TF1's fused kernel reports it.
    On TensorFlow that kernel itself (what slim ran for 2-D inputs: one pass
    for the moments, one for the output, a fused gradient).
    """
    if ON_TENSORFLOW:
        channels = inputs.shape[-1]
        rows = tf.reshape(inputs, [-1, 1, 1, channels])
        if inputs.dtype in (tf.bfloat16, tf.float16) and channels % 16:
            # oneDNN's half-precision kernel has no fast path for these (1000
            # channels, bfloat16: about 80x slower than float32): in float32.
            rows = tf.cast(rows, tf.float32)
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=rows, scale=gamma, offset=beta, mean=tf.zeros([0]), variance=tf.zeros([0]),
            epsilon=epsilon, exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        return tf.cast(tf.reshape(outputs, tf.shape(inputs)), inputs.dtype), mean, variance
    mean = ops.mean(inputs, axis=0)
    variance = ops.mean(ops.square(inputs - mean), axis=0)
    outputs = (inputs - mean) * (ops.rsqrt(variance + epsilon) * gamma) + beta
    return outputs, mean, bessel_corrected(variance, ops.shape(inputs)[0])


def bessel_corrected(variance, count):
    """A population variance over ``count`` rows times ``n / (n - 1)``
    (none for one row): the variance TF1's fused batch norm reports."""
    count = ops.cast(count, variance.dtype)
    return variance * count / ops.maximum(count - 1.0, 1.0)


def gather_frames(frames, indices):
    """``frames[b, indices[b, s], :]``: ``[B, T, D]``, int ``[B, S]`` ->
    ``[B, S, D]``. On TensorFlow a batched gather; Keras' own
    ``take_along_axis`` there transposes the whole ``[B, T, D]`` first."""
    if ON_TENSORFLOW:
        return tf.gather(frames, indices, batch_dims=1)
    return ops.take_along_axis(frames, ops.cast(indices, "int32")[:, :, None], axis=1)


class RowSubset:
    """The rows of ``[M, C]`` tensors where the bool ``valid`` ``[M]`` holds.

    ``take`` gives a per-row computation those rows and ``place`` puts its
    results back, ``fill`` in the other rows. On TensorFlow the rows are
    gathered and scattered, so the computation runs on the valid rows alone
    (NeXtVLAD's frame matmuls on a video's frames, not on its padding).
    Elsewhere, where shapes stay static (``jax.jit``), every row is computed
    with the others zeroed, and ``place`` overwrites them with ``fill``: the
    same values.
    """

    def __init__(self, valid):
        self.valid = valid
        self.indices = tf.where(valid) if ON_TENSORFLOW else None  # int64 [N, 1]

    def take(self, rows):
        if ON_TENSORFLOW:
            return tf.gather_nd(rows, self.indices)
        return ops.where(self.valid[:, None], rows, ops.zeros_like(rows))

    def place(self, values, fill):
        """``[M, C]``: ``values`` (one row per taken row) in the valid rows,
        ``fill`` (broadcast to ``[C]``) in the others."""
        if ON_TENSORFLOW:
            shape = tf.stack([tf.shape(self.valid, out_type=tf.int64)[0],
                              tf.shape(values, out_type=tf.int64)[1]])
            values = tf.scatter_nd(self.indices, values, shape)
        return ops.where(self.valid[:, None], values, ops.cast(fill, values.dtype))


def half_squared_norm(x):
    """``sum(x ** 2) / 2``: TF's ``l2_loss`` (one pass, no squared copy)."""
    if ON_TENSORFLOW:
        return tf.nn.l2_loss(x)
    return ops.sum(ops.square(x)) / 2.0


def uniform(shape, seed=None, generator=None, sampling_seed=None):
    """U[0, 1) float32 draws.

    With ``sampling_seed`` (int ``[2]``) the draws are a function of it
    (stateless; what training uses). Otherwise, on TensorFlow, the original's
    stateful op seeded by ``seed``; on other backends the draws come from
    ``generator`` (a ``keras.random.SeedGenerator``, the layer's state, so
    they work under ``jax.jit``).
    """
    if sampling_seed is not None:
        return _stateless_uniform(shape, sampling_seed)
    if ON_TENSORFLOW:
        return tf.random.uniform(shape, seed=seed)
    return keras.random.uniform(shape, seed=generator)


def _stateless_uniform(shape, sampling_seed):
    """Draws that are a function of the int ``[2]`` seed: TensorFlow's and
    JAX's stateless generators take both halves; PyTorch's generator takes
    one integer, mixed from both."""
    if ON_TENSORFLOW:
        return tf.random.stateless_uniform(shape, seed=tf.cast(sampling_seed, tf.int64))
    if BACKEND == "jax":
        import jax

        key = jax.numpy.asarray(sampling_seed).astype("uint32")
        return jax.random.uniform(key, shape)
    first, second = (int(v) for v in ops.convert_to_numpy(sampling_seed))
    return keras.random.uniform(shape, seed=(first * 1_000_003 + second) & 0x7FFFFFFF)


def seed_generator(seed):
    """The layer's random state for ``uniform``: none on TensorFlow (its
    stateful op keeps the state), a ``SeedGenerator`` elsewhere."""
    return None if ON_TENSORFLOW else keras.random.SeedGenerator(seed)


def scan(step, initial, elements, reverse: bool = False):
    """``keras.ops.scan``: ``step(carry, element) -> (carry, output)`` over
    the elements (sliced along their first axis, from the last to the first
    with ``reverse``); returns ``(final carry, every output stacked along a
    new first axis)`` (a nest of outputs: each stacked). Only the outputs are
    kept frame by frame, not the carry. ``elements`` hold at least one
    element. On TensorFlow each element is read as a slice (``_tf_scan``)."""
    if ON_TENSORFLOW:
        return _tf_scan(step, initial, elements, reverse)
    return ops.scan(step, initial, elements, reverse=reverse)


def _tf_scan(step, initial, elements, reverse: bool):
    """``scan`` in a ``tf.while_loop`` that reads each element as a slice
    of its stacked input.

    ``tf.scan`` first copies each input into a list of elements
    (``TensorListFromTensor``), made as soon as the input exists: the
    recurrent layers' frames in inference, and in training's written-out
    backward pass every layer's saved activations, copied while the layer
    above was still running. A slice along the first axis shares its input's
    memory (an element whose size is not a multiple of the allocator's
    alignment is copied, one at a time). The outputs are stacked as
    ``tf.scan`` stacks them, their static length kept.
    """
    first = tf.nest.flatten(elements)[0]
    count = tf.shape(first)[0]

    def run(t, carry):
        index = count - 1 - t if reverse else t
        return index, step(carry, tf.nest.map_structure(lambda x: x[index], elements))

    # The first element outside the loop: its outputs give the stacks' dtypes and shapes.
    index, (carry, output) = run(0, initial)
    arrays = [tf.TensorArray(y.dtype, size=count, element_shape=y.shape).write(index, y)
              for y in tf.nest.flatten(output)]

    def body(t, carry, arrays):
        index, (carry, output) = run(t, carry)
        written = [ta.write(index, y) for ta, y in zip(arrays, tf.nest.flatten(output))]
        return t + 1, carry, written

    _, carry, arrays = tf.while_loop(lambda t, *_: t < count, body,
                                     (tf.constant(1), carry, arrays),
                                     maximum_iterations=count - 1)
    stacked = [ta.stack() for ta in arrays]
    for tensor in stacked:
        tensor.set_shape(first.shape[:1].concatenate(tensor.shape[1:]))
    return carry, tf.nest.pack_sequence_as(output, stacked)


def mixture_probabilities(gate_logits, expert_logits, num_mixtures: int):
    """WILLOW's per-class mixture: ``[B, C]`` probabilities
    ``sum_m softmax(gates)[b, c, m] * sigmoid(experts)[b, c, m]`` from gate
    logits ``[B, C * (num_mixtures + 1)]`` (the last gate of each class is
    the "nothing" expert's) and expert logits ``[B, C * num_mixtures]``, in
    float32 whatever their dtype.

    On TensorFlow the logits go to the project's kernel and its gradient
    (``native.moe_mixture``, where ``fuses_mixture`` holds: float32, or
    bfloat16 read and written as it is, computed in float32); elsewhere
    (float16, no kernel, XLA, an export) to one XLA-compiled loop for the
    forward pass and one for the gradient: as separate kernels, the softmax
    over rows of 3 is oneDNN's slowest shape (a third of the MoE head's time
    outside its matmuls). Inside ``uncompiled_mixture`` (a model's build)
    the XLA loop's place is taken by separate kernels."""
    if ON_TENSORFLOW and fuses_mixture(gate_logits.dtype, expert_logits.dtype):
        if gate_logits.dtype != expert_logits.dtype:
            gate_logits, expert_logits = (tf.cast(x, tf.float32)
                                          for x in (gate_logits, expert_logits))
        return moe_mixture.probabilities(gate_logits, expert_logits, num_mixtures)
    if ON_TENSORFLOW and _COMPILED_MIXTURE:
        return _xla_mixture(gate_logits, expert_logits, num_mixtures)
    return _mixture(gate_logits, expert_logits, num_mixtures)


_COMPILED_MIXTURE = True


@contextlib.contextmanager
def uncompiled_mixture():
    """A context in which ``mixture_probabilities`` runs as separate
    kernels where it would run XLA's loop: for a call whose output is thrown
    away (a model built by a call on zeros), whose shape no step runs again.
    XLA would compile its loop for that shape alone, about 0.1 s of every
    script's start. (The project's kernel, compiled beforehand, still runs.)"""
    global _COMPILED_MIXTURE
    previous, _COMPILED_MIXTURE = _COMPILED_MIXTURE, False
    try:
        yield
    finally:
        _COMPILED_MIXTURE = previous


def _mixture(gate_logits, expert_logits, num_mixtures: int):
    num_classes = gate_logits.shape[-1] // (num_mixtures + 1)
    gates = softmax(ops.reshape(ops.cast(gate_logits, "float32"), (-1, num_mixtures + 1)))
    experts = ops.sigmoid(ops.reshape(ops.cast(expert_logits, "float32"), (-1, num_mixtures)))
    probabilities = ops.sum(gates[:, :num_mixtures] * experts, axis=1)
    return ops.reshape(probabilities, (-1, num_classes))


# From this many entries on, softmax's gradient on TensorFlow is
# ``_lean_softmax``'s (Soft-DBoF's 8000 clusters over 24000 frames: 768 MB
# a float32 tensor); below it TensorFlow's own, which is faster there.
LEAN_SOFTMAX_MIN_ENTRIES = 1024


def softmax(x):
    """``softmax`` over the last axis. Over one entry (the original's
    one-cluster assignments) it is ``exp(x - x)``: the ones (NaN where ``x``
    is not finite) and zero gradient that softmax computes there, without
    Keras's warning about such an axis. Silencing that warning instead
    (``warnings.catch_warnings``) breaks the graph under ``torch.compile``.
    Over many entries on TensorFlow, the same values with a gradient that
    holds one tensor of ``x``'s size fewer (``_lean_softmax``)."""
    if x.shape[-1] == 1:
        return ops.exp(x - x)
    if ON_TENSORFLOW and (x.shape[-1] or 0) >= LEAN_SOFTMAX_MIN_ENTRIES:
        return _lean_softmax(x)
    return ops.softmax(x)


if ON_TENSORFLOW:
    @tf.custom_gradient
    def _lean_softmax(x):
        """``tf.nn.softmax`` with the gradient ``s * (g - <g, s>)`` written
        out. TensorFlow's own makes the product ``g * s`` for the dot, a
        tensor of ``x``'s size held beside ``g``; here the dot is a batched
        matmul of each row of ``g`` with the same row of ``s`` (no such
        product), and the subtraction and multiplication can reuse ``g``'s
        buffer when nothing else holds it (the gradient of a sum over
        frames, broadcast). Like every float32 matmul of the model, the dot
        runs at the matmul precision TensorFlow sets (TF32 on recent
        GPUs)."""
        s = tf.nn.softmax(x)

        def gradient(upstream):
            dot = tf.matmul(upstream[..., None, :], s[..., :, None])[..., 0]
            return (upstream - dot) * s

        return s, gradient


def sum_and_max_over_frames(x):
    """``(sum, max)`` of ``[B, N, K]`` over its frames (axis 1), with ties
    sharing the maximum's gradient equally (as TensorFlow's own gradient).

    On TensorFlow one gradient tensor for both. TensorFlow's gradient of the
    maximum builds its indicator of the maximal frames (a ``[B, N, K]``
    float) as soon as the forward pass allows, holds it until the backward
    pass, and then adds its gradient to the sum's, both ``[B, N, K]``
    (Gated DBoF's 4096 clusters over 80 x 300 frames: 393 MB each in
    float32). Here the indicator is a boolean made in the backward pass,
    and the two gradients are one tensor."""
    if ON_TENSORFLOW:
        return _tf_sum_and_max(x)
    return ops.sum(x, 1), ops.max(x, 1)


if ON_TENSORFLOW:
    _xla_mixture = tf.function(_mixture, jit_compile=True, autograph=False)

    @tf.custom_gradient
    def _tf_sum_and_max(x):
        maximum = tf.reduce_max(x, 1)

        def gradient(d_sum, d_max):
            with tf.control_dependencies([d_sum, d_max]):  # not in the forward pass
                at_max = tf.equal(x, maximum[:, None])
            count = tf.reduce_sum(tf.cast(at_max, x.dtype), 1)
            share = (d_max / count)[:, None]
            # A NaN maximum equals no frame: TensorFlow's gradient is NaN there (0 / 0).
            nan = tf.fill(tf.shape(count), tf.constant(float("nan"), x.dtype))
            elsewhere = tf.where(count > 0, tf.zeros_like(count), nan)[:, None]
            return tf.where(at_max, share, elsewhere) + d_sum[:, None]

        return (tf.reduce_sum(x, 1), maximum), gradient


def fuses_softmax_pool(dtype) -> bool:
    """Whether ``normalized_softmax_pool`` runs here for ``dtype`` inputs:
    float32 on TensorFlow, outside XLA, on a machine without a GPU (the
    kernel is the CPU's), with the kernel built."""
    return _native_kernel_runs(dtype) and softmax_pool.available()


def fuses_vlad_descriptor(dtype) -> bool:
    """Whether ``normalized_vlad`` runs here for ``dtype`` inputs: as
    ``fuses_softmax_pool`` (with its own kernel built), and for bfloat16
    inputs too, computed in float32."""
    return _native_kernel_runs_in_float32(dtype) and vlad_descriptor.available()


def fuses_frame_streams(dtype) -> bool:
    """Whether ``standardized_streams`` and ``scaled_streams`` run here for
    ``dtype`` rows: as ``fuses_softmax_pool``, with their kernel built."""
    return _native_kernel_runs(dtype) and frame_streams.available()


def fuses_mixture(gate_dtype, expert_dtype) -> bool:
    """Whether ``mixture_probabilities`` runs the project's kernel here:
    float32 or bfloat16 logits (computed in float32), where the kernels run
    (``fuses_softmax_pool``'s rule), with its kernel built."""
    return (_native_kernel_runs_in_float32(gate_dtype)
            and _native_kernel_runs_in_float32(expert_dtype) and moe_mixture.available())


def _native_kernel_runs(dtype) -> bool:
    """float32 on TensorFlow (the project's kernels are float32; their
    ``available`` checks the machine, the export context and XLA)."""
    return ON_TENSORFLOW and keras.backend.standardize_dtype(dtype) == "float32"


def _native_kernel_runs_in_float32(dtype) -> bool:
    """``_native_kernel_runs`` for a kernel that also takes bfloat16 inputs,
    computed in float32."""
    if keras.backend.standardize_dtype(dtype) == "bfloat16":
        dtype = "float32"
    return _native_kernel_runs(dtype)


def tensorflow_ops_only():
    """A context in which the layers trace TensorFlow's own ops, none of the
    project's kernels (``native.loading.tensorflow_ops_only``): for a
    SavedModel export. A plain context on the other backends."""
    return loading.tensorflow_ops_only() if ON_TENSORFLOW else contextlib.nullcontext()


def normalized_vlad(weighted, assignment_sum, scale, shift, squares=None, square_scale=None,
                    intra_normalize: bool = True):
    """The pooled vector ``[B, D*K]`` of a NetVLAD-style pooling from its
    assignment-weighted sums ``[B, K, D]``, their assignments' sums
    ``[B, K]`` and a per-(cluster, feature) map ``[K, D]`` each:
    ``v = weighted * scale + assignment_sum * shift`` (plus ``squares *
    square_scale`` where given: NetFV's second order), intra-normalized
    over ``D`` (or, without ``intra_normalize``, L2-normalized over the
    video), flattened in ``(d, k)`` order and L2-normalized (TF1's
    ``l2_normalize`` at both steps). One kernel and its gradient
    (``native.vlad_descriptor``) where TensorFlow's ops make about 25
    passes over ``[B, K, D]`` tensors (Gated NetVLAD's video stream: 84 MB
    each). bfloat16 inputs are computed in float32, the vector cast back
    (TensorFlow's bfloat16 ops were slower than the casts and the kernel).
    Where ``fuses_vlad_descriptor`` holds."""
    dtype = weighted.dtype
    inputs = [None if x is None else tf.cast(x, tf.float32)
              for x in (weighted, assignment_sum, scale, shift, squares, square_scale)]
    return tf.cast(vlad_descriptor.normalize(*inputs, intra_normalize=intra_normalize), dtype)


def standardized_streams(rows, sizes: list[int], l2_first: bool, epsilon: float):
    """``(streams, mean, variance)``: ``rows`` ``[M, C]`` (float32),
    L2-normalized each first where ``l2_first`` (TF1's ``l2_normalize``),
    standardized with their own moments as ``normalize_batch`` does without
    its map, and cut into column blocks of ``sizes``; the moments ``[C]``,
    the variance Bessel-corrected. One kernel (``native.frame_streams``):
    two passes over the rows where TensorFlow's ops make about ten (the
    L2 norm's, the fused batch norm's, the split's), with the moments in
    float64. Where ``fuses_frame_streams`` holds."""
    return frame_streams.standardize(rows, sizes, l2_first, epsilon)


def scaled_streams(rows, sizes: list[int], l2_first: bool) -> list:
    """``rows`` ``[M, C]`` (float32), L2-normalized each where ``l2_first``
    and cut into column blocks of ``sizes``: ``standardized_streams``
    without the moments and the standardization (inference, where
    ``BatchNorm.inference_parts`` leaves the moving statistics' map to the
    poolings). One pass (``native.frame_streams``) where TensorFlow's ops
    make four (the L2 norm's square, sum and product, the split's copy).
    Where ``fuses_frame_streams`` holds."""
    return frame_streams.scale(rows, sizes, l2_first)


def normalized_softmax_pool(projections, gamma, beta, epsilon: float, offset=None):
    """``(sum, max, mean, variance)``: the sum and maximum over frames of
    ``softmax(BN(projections))`` (``[B, N, K]`` -> ``[B, K]`` each), batch
    norm with the batch's moments over its ``B*N`` frames, and those moments
    (``[K]``, the variance Bessel-corrected as ``normalize_batch`` returns
    it). One kernel and its gradient (``native.softmax_pool``) that never
    store the assignments: training holds one tensor of the projections'
    size for them, where batch norm, softmax (with ``softmax``'s lean
    gradient), sum and maximum hold three (Soft-DBoF's 8000 clusters over
    80 x 300 frames: 768 MB each in float32). With ``offset`` (``[K]``),
    of ``projections + offset``, which is never made (nor its gradient's
    sum over frames: the kernel's). Where ``fuses_softmax_pool`` holds."""
    summed, maximum, mean, variance = softmax_pool.pool(
        projections, tf.convert_to_tensor(gamma), tf.convert_to_tensor(beta), epsilon, offset)
    shape = tf.shape(projections)
    return summed, maximum, mean, bessel_corrected(variance, shape[0] * shape[1])


def compiled(function, **options):
    """``function`` compiled for eager callers where the backend has such a
    wrapper that needs nothing static (``tf.function``); as is elsewhere."""
    return tf.function(function, **options) if ON_TENSORFLOW else function
