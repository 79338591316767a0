"""End-to-end parity of every model family with the original graphs.

Each reference below is an independent NumPy transcription of the original
TF1 graph, operation by operation (the WILLOW models and the starter's
DbofModel / FrameLevelLogisticModel / LogisticModel): L2-normalized input,
uniform frame sampling, the hard-coded rgb (1024) / audio (128) split,
``[B*N, D]`` reshapes, batch norm with moving statistics (eval mode),
transposes and L2 normalizations on the original's axes. It reads its
weights by their TF1 names, so a test also proves that the model exposes
exactly the variables the original graph reads.

Where the original crashes (the no-batch-norm branches of the cluster
layers), the reference follows the minimal repair: the bias is created with
the right size and used wherever the original graph uses it.
"""

from __future__ import annotations

import numpy as np
import pytest

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.layers.core import BatchNorm
from youtube8m_willow.models.registry import create_model

RGB, AUDIO = 1024, 128
FEATURES = RGB + AUDIO
CLASSES = 5
BATCH_NUM_FRAMES = np.array([12, 4, 1], np.int32)
MAX_FRAMES = 12
ITERATIONS = 5
ATOL = 1e-5


class Weights(dict):
    """TF1 name -> value, recording which names the reference reads."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read = set()

    def __getitem__(self, name):
        self.read.add(name)
        return super().__getitem__(name)


# --- the original's primitives ---------------------------------------------

def l2_normalize(x, axis):
    """tf.nn.l2_normalize: x * rsqrt(max(sum(x^2), 1e-12))."""
    return x / np.sqrt(np.maximum(np.sum(x * x, axis=axis, keepdims=True), 1e-12))


def batch_norm(x, w, scope):
    """slim.batch_norm(center, scale, epsilon=0.001), is_training=False."""
    scale = w[f"{scope}/gamma"] / np.sqrt(w[f"{scope}/moving_variance"] + 0.001)
    return x * scale + (w[f"{scope}/beta"] - w[f"{scope}/moving_mean"] * scale)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def relu6(x):
    return np.minimum(np.maximum(x, 0.0), 6.0)


def uniform_sample(model_input, num_frames, num_samples):
    """The deterministic sampling: frame floor(i * num_frames / num_samples)."""
    index = np.arange(num_samples)[None, :] * num_frames[:, None] // num_samples
    return model_input[np.arange(len(model_input))[:, None], index]


# --- video_level_models ------------------------------------------------------

def moe_model(model_input, w, c: ModelConfig):
    """WILLOW's MoeModel.create_model."""
    mixtures = c.moe_num_mixtures
    if c.moe_low_rank_gating == -1:
        gate_activations = model_input @ w["gates/weights"]
    else:
        gate_activations = (model_input @ w["gates1/weights"]) @ w["gates2/weights"]
    expert_activations = model_input @ w["experts/weights"] + w["experts/biases"]
    gating = softmax(gate_activations.reshape(-1, mixtures + 1))
    experts = sigmoid(expert_activations.reshape(-1, mixtures))
    probabilities = np.sum(gating[:, :mixtures] * experts, 1).reshape(-1, c.num_classes)
    if c.moe_prob_gating:
        gating_weights = w["gating_prob_weights"]
        source = probabilities if c.moe_prob_gating_input == "prob" else model_input
        gates = source @ gating_weights
        if c.gating_remove_diag:
            gates = gates - np.diagonal(gating_weights) * probabilities
        gates = batch_norm(gates, w, "gating_prob_bn")
        probabilities = probabilities * sigmoid(gates)
    return probabilities


def logistic_model(model_input, w, c: ModelConfig):
    """The starter's LogisticModel (slim.fully_connected, sigmoid)."""
    return sigmoid(model_input @ w["fully_connected/weights"] + w["fully_connected/biases"])


def classifier(model_input, w, c: ModelConfig):
    heads = {"MoeModel": moe_model, "LogisticModel": logistic_model}
    return heads[c.video_level_classifier_model](model_input, w, c)


# --- frame_level_models: the stream poolings --------------------------------

def soft_assignment(x, w, p, cluster_size, add_batch_norm, use_biases=True):
    activation = x @ w[p + "cluster_weights"]
    if add_batch_norm:
        activation = batch_norm(activation, w, p + "cluster_bn")
    elif use_biases:
        activation = activation + w[p + "cluster_biases"]
    return softmax(activation)


def light_vlad(x, w, p, feature_size, max_frames, cluster_size, add_batch_norm):
    activation = soft_assignment(x, w, p, cluster_size, add_batch_norm)
    activation = activation.reshape(-1, max_frames, cluster_size).transpose(0, 2, 1)
    vlad = (activation @ x.reshape(-1, max_frames, feature_size)).transpose(0, 2, 1)
    vlad = l2_normalize(vlad, 1).reshape(-1, cluster_size * feature_size)
    return l2_normalize(vlad, 1)


def net_vlad(x, w, p, feature_size, max_frames, cluster_size, add_batch_norm):
    activation = soft_assignment(x, w, p, cluster_size, add_batch_norm)
    activation = activation.reshape(-1, max_frames, cluster_size)
    a = activation.sum(-2, keepdims=True) * w[p + "cluster_weights2"]
    activation = activation.transpose(0, 2, 1)
    vlad = (activation @ x.reshape(-1, max_frames, feature_size)).transpose(0, 2, 1) - a
    vlad = l2_normalize(vlad, 1).reshape(-1, cluster_size * feature_size)
    return l2_normalize(vlad, 1)


def net_vlagd(x, w, p, feature_size, max_frames, cluster_size, add_batch_norm):
    # The original creates cluster_biases without batch norm but never adds them.
    activation = soft_assignment(x, w, p, cluster_size, add_batch_norm, use_biases=False)
    activation = activation.reshape(-1, max_frames, cluster_size).transpose(0, 2, 1)
    vlagd = activation @ x.reshape(-1, max_frames, feature_size)
    vlagd = (vlagd * sigmoid(w[p + "gate_weights"])).transpose(0, 2, 1)
    vlagd = l2_normalize(vlagd, 1).reshape(-1, cluster_size * feature_size)
    return l2_normalize(vlagd, 1)


def net_fv(x, w, p, feature_size, max_frames, cluster_size, add_batch_norm, c: ModelConfig):
    covar = np.square(w[p + "covar_weights"]) + 1e-6
    activation = soft_assignment(x, w, p, cluster_size, add_batch_norm)
    activation = activation.reshape(-1, max_frames, cluster_size)
    a_sum = activation.sum(-2, keepdims=True)
    if not c.fv_couple_weights:
        centers = w[p + "cluster_weights2"]
    else:
        centers = c.fv_coupling_factor * w[p + "cluster_weights"]
    a = a_sum * centers
    activation = activation.transpose(0, 2, 1)
    frames = x.reshape(-1, max_frames, feature_size)
    fv1 = (activation @ frames).transpose(0, 2, 1)
    a2 = a_sum * np.square(centers)
    b2 = fv1 * centers
    fv2 = (activation @ np.square(frames)).transpose(0, 2, 1)
    fv2 = (a2 + fv2 + -2 * b2) / np.square(covar) - a_sum
    fv2 = l2_normalize(fv2.reshape(-1, cluster_size * feature_size), 1)
    fv2 = l2_normalize(fv2.reshape(-1, cluster_size * feature_size), 1)
    fv1 = (fv1 - a) / covar
    fv1 = l2_normalize(l2_normalize(fv1, 1).reshape(-1, cluster_size * feature_size), 1)
    return np.concatenate([fv1, fv2], 1)


def soft_dbof(x, w, p, feature_size, max_frames, cluster_size, add_batch_norm, max_pool):
    activation = soft_assignment(x, w, p, cluster_size, add_batch_norm)
    activation = activation.reshape(-1, max_frames, cluster_size)
    pooled = l2_normalize(activation.sum(1), 1)
    if max_pool:
        pooled = np.concatenate([pooled, l2_normalize(activation.max(1), 1)], 1)
    return pooled


def gated_dbof(x, w, p, feature_size, max_frames, cluster_size, add_batch_norm):
    activation = soft_assignment(x, w, p, cluster_size, add_batch_norm)
    activation = activation.reshape(-1, max_frames, cluster_size)
    activation_sum = activation.sum(1)
    activation_max = l2_normalize(activation.max(1), 1)
    gates = (activation_max @ w[p + "dim_red"]) @ w[p + "cluster_weights_2"]
    if add_batch_norm:
        gates = batch_norm(gates, w, p + "cluster_bn_2")
    else:
        gates = gates + w[p + "cluster_biases_2"]
    return l2_normalize(sigmoid(gates) * activation_sum, 1)


def willow_dbof(x, w, p, feature_size, max_frames, cluster_size, add_batch_norm):
    activation = x @ w[p + "cluster_weights"]
    if add_batch_norm:
        activation = batch_norm(activation, w, p + "cluster_bn")
    else:
        activation = activation + w[p + "cluster_biases"]
    # `activation == 'glu'` / `== 'relu'` compare a tensor with a string: no activation.
    activation = activation.reshape(-1, max_frames, cluster_size)
    average = l2_normalize(activation.mean(1), 1)
    maximum = l2_normalize(activation.max(1), 1)
    return np.concatenate([average, maximum], 1)


# --- frame_level_models: the LF models --------------------------------------

def hidden_and_gating(pooled, w, cluster_size, add_batch_norm, relu, gating, remove_diag):
    activation = pooled @ w["hidden1_weights"]
    if add_batch_norm and relu:
        activation = batch_norm(activation, w, "hidden1_bn")
    else:
        activation = activation + w["hidden1_biases"]
    if relu:
        activation = relu6(activation)
    if gating:
        gating_weights = w["gating_weights_2"]
        gates = activation @ gating_weights
        if remove_diag:
            gates = gates - np.diagonal(gating_weights) * activation
        if add_batch_norm:
            gates = batch_norm(gates, w, "gating_bn")
        else:
            gates = gates + w["gating_biases"]
        activation = activation * sigmoid(gates)
    return activation


def lf_front(model_input, num_frames, w, add_batch_norm):
    sampled = uniform_sample(model_input, num_frames, ITERATIONS)
    reshaped = sampled.reshape(-1, sampled.shape[2])
    if add_batch_norm:
        reshaped = batch_norm(reshaped, w, "input_bn")
    return reshaped[:, :RGB], reshaped[:, RGB:]


def netvlad_model_lf(model_input, num_frames, w, c: ModelConfig):
    k, bn = c.netvlad_cluster_size, c.netvlad_add_batch_norm
    pooling = light_vlad if c.lightvlad else net_vlagd if c.vlagd else net_vlad
    video, audio = lf_front(model_input, num_frames, w, bn)
    vlad = np.concatenate([pooling(video, w, "video_VLAD/", RGB, ITERATIONS, k, bn),
                           pooling(audio, w, "audio_VLAD/", AUDIO, ITERATIONS, k // 2, bn)], 1)
    activation = hidden_and_gating(vlad, w, k, bn, c.netvlad_relu, c.gating,
                                   c.gating_remove_diag)
    return classifier(activation, w, c)


def netfv_model_lf(model_input, num_frames, w, c: ModelConfig):
    k, bn = c.fv_cluster_size, c.netvlad_add_batch_norm
    video, audio = lf_front(model_input, num_frames, w, bn)
    fv = np.concatenate([net_fv(video, w, "video_FV/", RGB, ITERATIONS, k, bn, c),
                         net_fv(audio, w, "audio_FV/", AUDIO, ITERATIONS, k // 2, bn, c)], 1)
    # NetFV's gating has no remove_diag branch.
    activation = hidden_and_gating(fv, w, k, bn, c.fv_relu, c.gating, False)
    return classifier(activation, w, c)


def dbof_lf_hidden(dbof, w, c: ModelConfig, cluster_size):
    if not c.fc_dimred:
        return dbof
    return hidden_and_gating(dbof, w, cluster_size, c.dbof_add_batch_norm, c.dbof_relu,
                             False, False)


def gated_dbof_model_lf(model_input, num_frames, w, c: ModelConfig):
    k, bn = c.dbof_cluster_size, c.dbof_add_batch_norm
    video, audio = lf_front(model_input, num_frames, w, bn)
    dbof = np.concatenate(
        [gated_dbof(video, w, "video_DBOF/", RGB, ITERATIONS, k, bn),
         soft_dbof(audio, w, "audio_DBOF/", AUDIO, ITERATIONS, k // 8, bn, c.softdbof_maxpool)],
        1)
    return classifier(dbof_lf_hidden(dbof, w, c, k), w, c)


def soft_dbof_model_lf(model_input, num_frames, w, c: ModelConfig):
    k, bn = c.dbof_cluster_size, c.dbof_add_batch_norm
    video, audio = lf_front(model_input, num_frames, w, bn)
    dbof = np.concatenate(
        [soft_dbof(video, w, "video_DBOF/", RGB, ITERATIONS, k, bn, c.softdbof_maxpool),
         soft_dbof(audio, w, "audio_DBOF/", AUDIO, ITERATIONS, k // 8, bn, c.softdbof_maxpool)],
        1)
    return classifier(dbof_lf_hidden(dbof, w, c, k), w, c)


def dbof_model_lf(model_input, num_frames, w, c: ModelConfig):
    k, bn = c.dbof_cluster_size, c.dbof_add_batch_norm
    if c.dbof_activation == "glu":
        k = 2 * k
    video, audio = lf_front(model_input, num_frames, w, bn)
    dbof = np.concatenate([willow_dbof(video, w, "video_DBOF/", RGB, ITERATIONS, k, bn),
                           willow_dbof(audio, w, "audio_DBOF/", AUDIO, ITERATIONS, k // 8, bn)],
                          1)
    # DbofModelLF does not read fc_dimred: the hidden layer is always there.
    activation = hidden_and_gating(dbof, w, k, bn, c.dbof_relu, False, False)
    return classifier(activation, w, c)


# --- the starter's frame-level models ---------------------------------------

def starter_dbof_model(model_input, num_frames, w, c: ModelConfig):
    act = {"relu": relu6, "relu6": relu6, "sigmoid": sigmoid}[c.dbof_activation]
    bn, k = c.dbof_add_batch_norm, c.dbof_cluster_size
    sampled = uniform_sample(model_input, num_frames, ITERATIONS)
    reshaped = sampled.reshape(-1, FEATURES)
    if bn:
        reshaped = batch_norm(reshaped, w, "input_bn")
    activation = reshaped @ w["cluster_weights"]
    activation = (batch_norm(activation, w, "cluster_bn") if bn
                  else activation + w["cluster_biases"])
    activation = act(activation).reshape(-1, ITERATIONS, k)
    activation = activation.max(1) if c.dbof_pooling_method == "max" else activation.mean(1)
    activation = activation @ w["hidden1_weights"]
    activation = (batch_norm(activation, w, "hidden1_bn") if bn
                  else activation + w["hidden1_biases"])
    return classifier(act(activation), w, c)


def frame_level_logistic_model(model_input, num_frames, w, c: ModelConfig):
    # Sum over every (padded) frame divided by num_frames: padding is zero.
    avg_pooled = model_input.sum(1) / num_frames[:, None].astype(np.float64)
    return sigmoid(avg_pooled @ w["fully_connected/weights"] + w["fully_connected/biases"])


# --- WILLOW's recurrent models ----------------------------------------------

def lstm_cell(w, scope, units):
    kernel, bias = w[f"{scope}/basic_lstm_cell/kernel"], w[f"{scope}/basic_lstm_cell/bias"]

    def step(x, state):  # state_is_tuple=False: state = [c, h]
        c, h = state[:, :units], state[:, units:]
        gates = np.concatenate([x, h], 1) @ kernel + bias
        i, j, f, o = (gates[:, n * units:(n + 1) * units] for n in range(4))
        new_c = c * sigmoid(f + 1.0) + sigmoid(i) * np.tanh(j)
        new_h = np.tanh(new_c) * sigmoid(o)
        return new_h, np.concatenate([new_c, new_h], 1)
    return step, 2 * units


def gru_cell(w, scope, units):
    p = f"{scope}/gru_cell/"

    def step(x, h):
        value = sigmoid(np.concatenate([x, h], 1) @ w[p + "gates/kernel"] + w[p + "gates/bias"])
        r, u = value[:, :units], value[:, units:]
        candidate = np.tanh(np.concatenate([x, r * h], 1) @ w[p + "candidate/kernel"]
                            + w[p + "candidate/bias"])
        new_h = u * h + (1 - u) * candidate
        return new_h, new_h
    return step, units


def dynamic_rnn(cells, inputs, sequence_length):
    """dynamic_rnn of a MultiRNNCell(state_is_tuple=False): the final state."""
    states = [np.zeros([len(inputs), size]) for _, size in cells]
    for t in range(inputs.shape[1]):
        x, new_states = inputs[:, t], []
        for (step, _), state in zip(cells, states):
            x, state = step(x, state)
            new_states.append(state)
        alive = (t < sequence_length)[:, None]
        states = [np.where(alive, new, old) for new, old in zip(new_states, states)]
    return np.concatenate(states, 1)


def reverse_sequence(x, lengths):
    out = x.copy()
    for b, n in enumerate(np.minimum(lengths, x.shape[1])):
        out[b, :n] = x[b, :n][::-1]
    return out


def recurrent_model(model_input, num_frames, w, c: ModelConfig, cell, units, layers,
                    random_sequence, backward):
    if random_sequence:
        model_input = uniform_sample(model_input, num_frames, ITERATIONS)
    if backward:
        model_input = reverse_sequence(model_input, num_frames)
    cells = [cell(w, f"RNN/rnn/multi_rnn_cell/cell_{i}", units) for i in range(layers)]
    return classifier(dynamic_rnn(cells, model_input, num_frames), w, c)


def lstm_model(model_input, num_frames, w, c):
    return recurrent_model(model_input, num_frames, w, c, lstm_cell, c.lstm_cells,
                           c.lstm_layers, c.lstm_random_sequence, c.lstm_backward)


def gru_model(model_input, num_frames, w, c):
    return recurrent_model(model_input, num_frames, w, c, gru_cell, c.gru_cells,
                           c.gru_layers, c.gru_random_sequence, c.gru_backward)


REFERENCES = {
    "NetVLADModelLF": netvlad_model_lf, "NetFVModelLF": netfv_model_lf,
    "GatedDbofModelLF": gated_dbof_model_lf, "SoftDbofModelLF": soft_dbof_model_lf,
    "DbofModelLF": dbof_model_lf, "DbofModel": starter_dbof_model,
    "FrameLevelLogisticModel": frame_level_logistic_model,
    "LstmModel": lstm_model, "GruModel": gru_model,
}

SMALL = dict(netvlad_cluster_size=4, netvlad_hidden_size=6, fv_cluster_size=4,
             fv_hidden_size=6, dbof_cluster_size=16, dbof_hidden_size=6, lstm_cells=4,
             lstm_layers=2, gru_cells=4, gru_layers=2)

FRAME_CASES = {
    # NetVLAD family.
    "netvlad": dict(model="NetVLADModelLF"),
    "netvlad_gating_remove_diag": dict(model="NetVLADModelLF", gating=True,
                                       gating_remove_diag=True),
    "netvlad_norelu_gating_logistic": dict(
        model="NetVLADModelLF", netvlad_relu=False, gating=True,
        video_level_classifier_model="LogisticModel"),
    "netvlad_no_bn_gating": dict(model="NetVLADModelLF", netvlad_add_batch_norm=False,
                                 gating=True, gating_remove_diag=True),
    "netrvlad": dict(model="NetVLADModelLF", lightvlad=True, gating=True),
    "netrvlad_no_bn": dict(model="NetVLADModelLF", lightvlad=True,
                           netvlad_add_batch_norm=False),
    "netvlagd": dict(model="NetVLADModelLF", vlagd=True, netvlad_relu=False),
    "netvlagd_no_bn": dict(model="NetVLADModelLF", vlagd=True, netvlad_add_batch_norm=False),
    "lightvlad_wins_over_vlagd": dict(model="NetVLADModelLF", lightvlad=True, vlagd=True),
    # NetFV.
    "netfv_coupled": dict(model="NetFVModelLF"),
    "netfv_uncoupled_gating": dict(model="NetFVModelLF", fv_couple_weights=False, gating=True,
                                   gating_remove_diag=True, fv_coupling_factor=0.3),
    "netfv_norelu_no_bn": dict(model="NetFVModelLF", fv_relu=False,
                               netvlad_add_batch_norm=False, gating=True),
    # DBoF family.
    "gated_dbof": dict(model="GatedDbofModelLF", gating=True),
    "gated_dbof_maxpool_norelu": dict(model="GatedDbofModelLF", softdbof_maxpool=True,
                                      dbof_relu=False),
    "gated_dbof_no_fc_dimred_no_bn": dict(model="GatedDbofModelLF", fc_dimred=False,
                                          dbof_add_batch_norm=False),
    "soft_dbof": dict(model="SoftDbofModelLF", gating=True),
    "soft_dbof_maxpool_no_fc_dimred": dict(model="SoftDbofModelLF", softdbof_maxpool=True,
                                           fc_dimred=False, dbof_var_features=3),
    "soft_dbof_norelu_no_bn": dict(model="SoftDbofModelLF", dbof_relu=False,
                                   dbof_add_batch_norm=False),
    "willow_dbof": dict(model="DbofModelLF", fc_dimred=False),
    "willow_dbof_glu": dict(model="DbofModelLF", dbof_activation="glu"),
    "willow_dbof_norelu_no_bn": dict(model="DbofModelLF", dbof_relu=False,
                                     dbof_add_batch_norm=False),
    # The starter's models.
    "starter_dbof_max_relu": dict(model="DbofModel"),
    "starter_dbof_average_sigmoid": dict(model="DbofModel", dbof_pooling_method="average",
                                         dbof_activation="sigmoid"),
    "starter_dbof_no_bn": dict(model="DbofModel", dbof_add_batch_norm=False,
                               dbof_activation="relu6"),
    "frame_level_logistic": dict(model="FrameLevelLogisticModel"),
    # Recurrent models.
    "lstm": dict(model="LstmModel"),
    "lstm_backward_one_layer": dict(model="LstmModel", lstm_backward=True, lstm_layers=1),
    "lstm_random_sequence": dict(model="LstmModel", lstm_random_sequence=True),
    "gru": dict(model="GruModel", video_level_classifier_model="LogisticModel"),
    # The original's reverse_sequence rejects num_frames > iterations (the 12-frame
    # video): the port clips the length to the sampled frames, as dynamic_rnn does.
    "gru_backward_random_sequence": dict(model="GruModel", gru_backward=True,
                                         gru_random_sequence=True, gru_layers=3),
    # Classifier options under a frame-level model.
    "netvlad_moe_options": dict(model="NetVLADModelLF", moe_num_mixtures=3,
                                moe_low_rank_gating=3, moe_prob_gating=True,
                                moe_prob_gating_input="input", gating_remove_diag=True),
}


def frame_config(**flags) -> ModelConfig:
    values = dict(num_classes=CLASSES, feature_names=("rgb", "audio"),
                  feature_sizes=(RGB, AUDIO), frame_features=True, max_frames=MAX_FRAMES,
                  frame_sampling="uniform", iterations=ITERATIONS, **SMALL)
    values.update(flags)
    return ModelConfig(**values)


def random_weights(model, seed=0) -> Weights:
    """Non-trivial values for every TF1 variable (moving statistics included)."""
    rng = np.random.RandomState(seed)
    values = {}
    for name, var in sorted(model.tf1_weights().items()):
        if name.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, var.shape)
        elif name.endswith("covar_weights"):
            value = 1.0 + 0.2 * rng.randn(*var.shape)
        else:
            value = 0.5 * rng.randn(*var.shape)
        var.assign(value.astype(np.float32))
        values[name] = var.numpy().astype(np.float64)
    return Weights(values)


def frame_inputs(seed=1):
    """Raw frames with zero padding past each video's num_frames."""
    rng = np.random.RandomState(seed)
    video = rng.randn(len(BATCH_NUM_FRAMES), MAX_FRAMES, FEATURES).astype(np.float32)
    video *= (np.arange(MAX_FRAMES)[None, :] < BATCH_NUM_FRAMES[:, None])[..., None]
    return video, BATCH_NUM_FRAMES


def check_against_reference(config, raw, num_frames, reference):
    model = create_model(config).build_for_config()
    w = random_weights(model)
    normalized = l2_normalize(raw.astype(np.float64), -1)
    expected = reference(normalized, num_frames, w, config)
    got = model({"video_matrix": raw, "num_frames": num_frames}, training=False).numpy()
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=1e-5)
    return w


# Variables the original creates but its graph never reads.
UNREAD = {"netvlagd_no_bn": {"video_VLAD/cluster_biases", "audio_VLAD/cluster_biases"}}


@pytest.mark.parametrize("case", sorted(FRAME_CASES))
def test_frame_level_model_matches_original_graph(case):
    config = frame_config(**FRAME_CASES[case])
    raw, num_frames = frame_inputs()
    w = check_against_reference(config, raw, num_frames, REFERENCES[config.model])
    # The model holds exactly the variables the original graph has.
    assert set(w) - w.read == UNREAD.get(case, set())


VIDEO_CASES = {
    "moe": dict(model="MoeModel"),
    "moe_low_rank_prob_gating": dict(model="MoeModel", moe_num_mixtures=1,
                                     moe_low_rank_gating=4, moe_prob_gating=True),
    "moe_prob_gating_remove_diag": dict(model="MoeModel", moe_prob_gating=True,
                                        gating_remove_diag=True),
    "moe_input_gating_remove_diag": dict(model="MoeModel", moe_prob_gating=True,
                                         moe_prob_gating_input="input",
                                         gating_remove_diag=True),
    # The original takes the low-rank branch for any value but -1: rank 0 gives zero gates.
    "moe_rank_zero_gating": dict(model="MoeModel", moe_low_rank_gating=0),
    # ... and gates on the input for any moe_prob_gating_input but "prob".
    "moe_other_gating_input_means_input": dict(model="MoeModel", moe_prob_gating=True,
                                               moe_prob_gating_input="features"),
    "logistic": dict(model="LogisticModel"),
}


@pytest.mark.parametrize("case", sorted(VIDEO_CASES))
def test_video_level_model_matches_original_graph(case):
    flags = VIDEO_CASES[case]
    config = ModelConfig(num_classes=CLASSES, feature_names=("mean_rgb", "mean_audio"),
                         feature_sizes=(RGB, AUDIO), video_level_classifier_model=flags["model"],
                         **flags)
    raw = np.random.RandomState(2).randn(4, FEATURES).astype(np.float32)
    raw[3] = 0.0  # an all-zero video stays zero after normalization

    def reference(features, num_frames, w, c):
        return classifier(features, w, c)

    w = check_against_reference(config, raw, np.ones(4, np.int32), reference)
    assert set(w) == w.read


def test_moe_rejects_a_negative_rank_other_than_minus_one():
    config = ModelConfig(model="MoeModel", num_classes=CLASSES, moe_low_rank_gating=-2)
    with pytest.raises(ValueError, match="low_rank_gating"):
        create_model(config)


def test_batch_norm_eval_equals_slim_with_moving_statistics():
    rng = np.random.RandomState(3)
    layer = BatchNorm()
    layer.build((None, 7))
    values = {"beta": rng.randn(7), "gamma": rng.randn(7), "moving_mean": rng.randn(7),
              "moving_variance": rng.uniform(0.1, 2.0, 7)}
    for name, var in layer.tf1_weights().items():
        var.assign(values[name].astype(np.float32))
    x = rng.randn(5, 7).astype(np.float32)
    w = {f"bn/{k}": v.astype(np.float32).astype(np.float64) for k, v in values.items()}
    expected = batch_norm(x.astype(np.float64), w, "bn")
    np.testing.assert_allclose(layer(x, training=False).numpy(), expected, atol=1e-6)
    # Inference never moves the statistics.
    np.testing.assert_array_equal(layer.moving_mean.numpy(),
                                  values["moving_mean"].astype(np.float32))
