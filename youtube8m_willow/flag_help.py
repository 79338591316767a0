"""Every flag's help, in one table: what the flag does in this project, the
group ``--helpfull`` lists it under, the scripts whose ``--help`` lists it,
and, for a model flag, the models that read it.

``flags`` defines every flag with its line from here (absl adds the
default); the README's flag table is rendered from it (``markdown``), and a
test checks that the two agree. Names and defaults stay the original's
(SPEC section 2); only the words are this project's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class Group:
    """A purpose that ``--helpfull`` and the README's table group flags by."""

    key: str
    title: str


GROUPS = (
    Group("data", "data: the records read (files, features, batches)"),
    Group("model", "model: the model and its layers (kept in train_dir/model_flags.json)"),
    Group("training", "training: train.py's run (eval.py and inference.py accept these "
                      "too, as WILLOW's README passes them there)"),
    Group("eval", "eval: which checkpoint is scored, and how"),
    Group("inference", "inference: the submission CSV and model archives"),
    Group("segments", "segments: the segment-level (2019) challenge"),
    Group("additions", "this project's additions (flags the original code did not have)"),
)
# absl's --helpfull lists the flags by the module that defined them, sorted by
# name: each group is defined as a module of its own, numbered in order.
GROUP_MODULES = {group.key: f"YouTube-8M flags {index}/{len(GROUPS)}, {group.title}"
                 for index, group in enumerate(GROUPS, 1)}

TRAIN, EVAL, INFERENCE = "train.py", "eval.py", "inference.py"
SEGMENT_MAP, AVERAGING, CONVERT = ("segment_eval_inference.py", "file_averaging.py",
                                   "portable.convert")
SCRIPTS = (TRAIN, EVAL, INFERENCE, SEGMENT_MAP, AVERAGING, CONVERT)
READERS = (TRAIN, EVAL, INFERENCE)  # the scripts that read records with a model
MODEL_SCRIPTS = (TRAIN, EVAL, INFERENCE, CONVERT)  # the scripts that build a model

# Who reads a model flag (a model flag without readers is a mistake; see NO_MODEL).
EVERY_MODEL = ("every model",)
FRAME_LEVEL = ("every frame-level model",)
NO_MODEL = ("no model",)
LF_NETVLAD, LF_NETFV = "NetVLADModelLF", "NetFVModelLF"
DBOF_LF = ("GatedDbofModelLF", "SoftDbofModelLF", "DbofModelLF")
SAMPLED = (LF_NETVLAD, LF_NETFV, *DBOF_LF, "DbofModel")  # --frame_sampling's models
DBOF_ALL = (*DBOF_LF, "DbofModel")
MOE_HEAD = ("MoeModel", "the MoeModel head of frame-level models")
LOGISTIC_HEAD = ("LogisticModel", "the LogisticModel head of frame-level models")
NEXTVLAD = ("NeXtVLADModel", "MixNeXtVladModel")  # the NeXtVLAD fork's models
HEADED = (*SAMPLED, "LstmModel", "GruModel", "FrameStatisticsModel",
          *NEXTVLAD)  # frame level + a head
RANDOM_SEQUENCE = ("LstmModel and GruModel with --lstm_random_sequence or "
                   "--gru_random_sequence",)

# The models --model accepts (a test checks them against the registry).
MODEL_NAMES = ("LogisticModel", "MoeModel", "NetVLADModelLF", "NetFVModelLF",
               "GatedDbofModelLF", "SoftDbofModelLF", "DbofModelLF", "DbofModel",
               "FrameLevelLogisticModel", "LstmModel", "GruModel", "FrameStatisticsModel",
               "NeXtVLADModel", "MixNeXtVladModel")


@dataclasses.dataclass(frozen=True)
class FlagHelp:
    """One flag: its group, what it does, the scripts whose ``--help`` lists
    it, and (model flags) the models that read it."""

    group: str
    text: str
    scripts: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    def line(self) -> str:
        """The help line absl shows (it adds the default)."""
        if self.models in ((), NO_MODEL, EVERY_MODEL):  # said by NO_MODEL's text, or needless
            return self.text
        return f"{self.text} Read by: {', '.join(self.models)}."


def _model(text: str, models: tuple[str, ...], group: str = "model") -> FlagHelp:
    return FlagHelp(group, text, MODEL_SCRIPTS, models)


RELU = ("relu6 after the hidden layer (False: no activation, and a bias instead of the "
        "hidden layer's batch norm).")


def _unused(what: str) -> FlagHelp:
    return _model(f"WILLOW's {what}: read by no model (accepted so that WILLOW's command "
                  "lines parse).", NO_MODEL)


HELP: dict[str, FlagHelp] = {
    # ---- data
    "train_data_pattern": FlagHelp(
        "data", "Glob of the training TFRecord files (tf.io.gfile: gs:// works); required.",
        (TRAIN,)),
    "eval_data_pattern": FlagHelp(
        "data", "Glob of the TFRecord files to evaluate; segment_eval_inference.py: the "
                "segment-rated validation records (or none, with an existing --label_cache).",
        (EVAL, SEGMENT_MAP)),
    "input_data_pattern": FlagHelp(
        "data", "Glob of the TFRecord files to predict; required.", (INFERENCE,)),
    "feature_names": _model(
        "Comma-separated features read from each record, concatenated in this order "
        "(video level: mean_rgb,mean_audio; frame level: rgb,audio).", EVERY_MODEL, "data"),
    "feature_sizes": _model(
        "Comma-separated sizes, one per --feature_names entry (rgb 1024, audio 128); the LF "
        "models pool the first feature (video stream) apart from the rest (audio stream).",
        EVERY_MODEL, "data"),
    "frame_features": _model(
        "Read frame-level SequenceExamples (a row per second) instead of video-level "
        "Examples: True for frame-level models, False for video-level ones.", EVERY_MODEL,
        "data"),
    "batch_size": FlagHelp("data", "Videos per batch.", READERS),
    "num_readers": FlagHelp("data", "Files read in parallel.", READERS),
    # ---- model
    "model": _model(f"The model, by the original's class name: {', '.join(MODEL_NAMES)}.",
                    EVERY_MODEL),
    "video_level_classifier_model": _model(
        "The classifier head on a frame-level model's pooled vector: MoeModel or "
        "LogisticModel (MixNeXtVladModel: LogisticModel, its default there; the NeXtVLAD "
        "models take the fork's heads: see --l2_penalty).", HEADED),
    "iterations": _model(
        "Frames sampled per video (see --frame_sampling).", (*SAMPLED, *RANDOM_SEQUENCE)),
    "sample_random_frames": _model(
        "Unless --frame_sampling says otherwise: True samples --iterations random frames "
        "per video (with replacement), False a run of consecutive frames from a random start.",
        SAMPLED),
    "netvlad_cluster_size": _model(
        "Clusters of the rgb stream's NetVLAD; the audio stream gets half as many.",
        (LF_NETVLAD,)),
    "netvlad_hidden_size": _model("Units of the hidden layer after the NetVLAD pooling.",
                                  (LF_NETVLAD,)),
    "netvlad_relu": _model(RELU, (LF_NETVLAD,)),
    "netvlad_add_batch_norm": _model(
        "Batch norm on the input frames, the cluster assignments, the hidden layer and the "
        "gating (False: biases instead; train short runs without it).", (LF_NETVLAD, LF_NETFV)),
    "lightvlad": _model("NetRVLAD: NetVLAD without the cluster centers (wins over --vlagd).",
                        (LF_NETVLAD,)),
    "vlagd": _model("NetVLAGD: NetVLAD with a gated aggregation instead of the residuals.",
                    (LF_NETVLAD,)),
    "gating": _model("Context Gating after the hidden layer.", (LF_NETVLAD, LF_NETFV)),
    "gating_remove_diag": _model(
        "Context Gating without its weight matrix's diagonal (no unit gates itself); "
        "NetVLADModelLF's gating and the MoE's --moe_prob_gating.", (LF_NETVLAD, *MOE_HEAD)),
    "netvlad_dimred": _unused("NetVLAD output reduction, which it never applied"),
    "gatednetvlad_dimred": _unused("gated NetVLAD output reduction, which it never applied"),
    "hidden_size": _unused("hidden size of a statistics model it did not publish"),
    "netvlad_hidden_size_video": _unused("rgb hidden size of a model it did not publish"),
    "netvlad_hidden_size_audio": _unused("audio hidden size of a model it did not publish"),
    "fv_cluster_size": _model(
        "Clusters of the rgb stream's NetFV; the audio stream gets half as many.", (LF_NETFV,)),
    "fv_hidden_size": _model("Units of the hidden layer after the NetFV pooling.", (LF_NETFV,)),
    "fv_relu": _model(RELU, (LF_NETFV,)),
    "fv_couple_weights": _model(
        "Cluster centers tied to the assignment weights (times --fv_coupling_factor) "
        "instead of a variable of their own.", (LF_NETFV,)),
    "fv_coupling_factor": _model("Factor of the tied centers of --fv_couple_weights.",
                                 (LF_NETFV,)),
    "dbof_cluster_size": _model(
        "Clusters of the DBoF layer (the LF models' audio stream gets an eighth).", DBOF_ALL),
    "dbof_hidden_size": _model("Units of the hidden layer after the DBoF pooling.", DBOF_ALL),
    "dbof_add_batch_norm": _model(
        "Batch norm on the input frames, the cluster layer and the hidden layer (False: "
        "biases instead; train short runs without it).", DBOF_ALL),
    "dbof_relu": _model(RELU, DBOF_LF),
    "dbof_activation": _model(
        "DbofModel's activation of the cluster and hidden layers: relu6 (relu means relu6) "
        "or sigmoid. DbofModelLF applies none, as the original (glu doubles its clusters).",
        ("DbofModel", "DbofModelLF")),
    "dbof_pooling_method": _model("How DbofModel pools the frames' cluster activations: "
                                  "max or average.", ("DbofModel",)),
    "dbof_var_features": _unused("variance features of the DBoF clusters, never implemented"),
    "softdbof_maxpool": _model(
        "Soft-DBoF also max-pools the assignments over the frames, after the sum "
        "(GatedDbofModelLF: its audio stream).", ("SoftDbofModelLF", "GatedDbofModelLF")),
    "fc_dimred": _model("Hidden layer after the pooling (False: the pooled vector goes "
                        "straight to the classifier).", ("GatedDbofModelLF", "SoftDbofModelLF")),
    "lstm_cells": _model("Units of each LSTM layer.", ("LstmModel",)),
    "lstm_layers": _model("Stacked LSTM layers.", ("LstmModel",)),
    "lstm_random_sequence": _model(
        "Read --iterations frames drawn at random instead of the frames in order.",
        ("LstmModel",)),
    "lstm_backward": _model("Read each video's frames last to first.", ("LstmModel",)),
    "lstm_cells_video": _unused("rgb LSTM size of a model it did not publish"),
    "lstm_cells_audio": _unused("audio LSTM size of a model it did not publish"),
    "gru_cells": _model("Units of each GRU layer.", ("GruModel",)),
    "gru_layers": _model("Stacked GRU layers.", ("GruModel",)),
    "gru_random_sequence": _model(
        "Read --iterations frames drawn at random instead of the frames in order.",
        ("GruModel",)),
    "gru_backward": _model("Read each video's frames last to first.", ("GruModel",)),
    "gru_cells_video": _unused("rgb GRU size of a model it did not publish"),
    "gru_cells_audio": _unused("audio GRU size of a model it did not publish"),
    "moe_num_mixtures": _model(
        "Experts per class of the mixture of experts (plus one that always predicts 0); "
        "NeXtVLADModel's MoeModel head: 4 unless given, the NeXtVLAD fork's default.",
        MOE_HEAD),
    "moe_l2": _model("L2 penalty on the mixture of experts' gate and expert weights (the "
                     "NeXtVLAD models' MoeModel head takes --l2_penalty instead, as the "
                     "fork's).", MOE_HEAD),
    # the NeXtVLAD fork's (linrongc/youtube-8m nextvlad.py)
    "nextvlad_cluster_size": _model(
        "Clusters of the rgb stream's NeXtVLAD; the audio stream gets half as many.",
        NEXTVLAD),
    "nextvlad_hidden_size": _model("Units of the hidden layer after the NeXtVLAD pooling.",
                                   NEXTVLAD),
    "groups": _model("Groups each expanded rgb frame is split into, each assigned to the "
                     "clusters on its own; the audio stream gets half as many.", NEXTVLAD),
    "expansion": _model("Factor by which NeXtVLAD widens each frame (a dense layer) before "
                        "splitting it into groups.", NEXTVLAD),
    "gating_reduction": _model(
        "Bottleneck factor of the SE gating after the hidden layer (hidden size / "
        "gating_reduction units).", NEXTVLAD),
    "drop_rate": _model("Dropout rate of the pooled vector in training (0: no dropout).",
                        NEXTVLAD),
    "mix_number": _model("NeXtVLAD branches the mixture mixes.", ("MixNeXtVladModel",)),
    "cl_temperature": _model(
        "Temperature of the softened class distributions the distillation compares.",
        ("MixNeXtVladModel",)),
    "cl_lambda": _model(
        "Weight of the distillation term (the KL divergence of each branch from the "
        "mixture), which --regularization_penalty weights again with the L2 terms.",
        ("MixNeXtVladModel",)),
    "moe_low_rank_gating": _model("Rank of a factored gate matrix (-1: full rank).",
                                  MOE_HEAD),
    "moe_prob_gating": _model("Context Gating of the output probabilities.", MOE_HEAD),
    "moe_prob_gating_input": _model(
        "What --moe_prob_gating computes its gates from: prob (the probabilities) or input "
        "(the classifier's input; any value but prob means input, as in the original).",
        MOE_HEAD),
    # ---- training
    "train_dir": FlagHelp(
        "training", "The run's directory: train.py writes its checkpoints, model_flags.json, "
                    "TensorBoard events and exports (export/step_N) there; eval.py (which "
                    "adds its events), inference.py and portable.convert read the model "
                    "from it.",
        (TRAIN, EVAL, INFERENCE, CONVERT)),
    "start_new_model": FlagHelp(
        "training", "Delete train_dir's contents and train a new model instead of continuing "
                    "the one there.", (TRAIN,)),
    "label_loss": FlagHelp(
        "training", "The loss: CrossEntropyLoss, HingeLoss or SoftmaxLoss (eval.py's "
                    "Avg_Loss: the run's own loss unless given).", (TRAIN, EVAL)),
    "alpha": FlagHelp("training", "CrossEntropyLoss's weight of the positive labels (1 - alpha: "
                                  "of the negatives).", (TRAIN, EVAL)),
    "regularization_penalty": FlagHelp(
        "training", "Weight of the models' L2 penalties in the loss that is minimized.",
        (TRAIN,)),
    "base_learning_rate": FlagHelp(
        "training", "Learning rate at step 0 (WILLOW's default; the Google starter's was "
                    "0.01).", (TRAIN,)),
    "learning_rate_decay": FlagHelp(
        "training", "Factor applied to the learning rate after each "
                    "--learning_rate_decay_examples examples (a staircase).", (TRAIN,)),
    "learning_rate_decay_examples": FlagHelp(
        "training", "Training examples per learning rate decay.", (TRAIN,)),
    "num_epochs": FlagHelp(
        "training", "Passes over the training data, counted across restarts (0 or less: no "
                    "limit).", (TRAIN,)),
    "max_steps": FlagHelp(
        "training", "Stop at this global step (unset: at the end of --num_epochs).", (TRAIN,)),
    "export_model_steps": FlagHelp(
        "training", "Global steps between a checkpoint plus SavedModel export "
                    "(train_dir/export/step_N); the last step is exported too.", (TRAIN,)),
    "optimizer": FlagHelp(
        "training", "TF1 optimizer class, with TF1's defaults and slots: AdamOptimizer, "
                    "AdadeltaOptimizer, AdagradOptimizer, FtrlOptimizer, "
                    "GradientDescentOptimizer, MomentumOptimizer (momentum 0.9), "
                    "ProximalAdagradOptimizer, ProximalGradientDescentOptimizer, "
                    "RMSPropOptimizer.", (TRAIN,)),
    "clip_gradient_norm": FlagHelp(
        "training", "Clip each gradient tensor on its own to this L2 norm (0: no clipping).",
        (TRAIN,)),
    "num_gpu": FlagHelp(
        "training", "The NeXtVLAD fork's towers: each step reads --batch_size x --num_gpu "
                    "examples (--batch_size is per tower; split over the replicas there are), "
                    "and the learning rate decays by global steps x --batch_size x --num_gpu "
                    "examples.", (TRAIN,)),
    "log_device_placement": FlagHelp(
        "training", "Accepted for the original command lines; no effect (TensorFlow 2 "
                    "places the operations).", (TRAIN,)),
    # ---- eval
    "run_once": FlagHelp(
        "eval", "Evaluate one checkpoint (the latest, or --check_point) and exit; False: "
                "wait for each new checkpoint and evaluate it (inference.py ignores it).",
        (EVAL,)),
    "check_point": FlagHelp(
        "eval", "Step N of the checkpoint to use, model.ckpt-N (-1: the latest).",
        (EVAL, INFERENCE, CONVERT)),
    "top_k": FlagHelp(
        "eval", "Best classes kept per video (segment): the predictions GAP and MAP score "
                "(eval.py), the label and score pairs written (inference.py, "
                "file_averaging.py).", (EVAL, INFERENCE, AVERAGING)),
    # ---- inference
    "output_file": FlagHelp(
        "inference", "Where to write the submission CSV (inference.py; with --segment_labels "
                     "the Class,Segments CSV) or the portable weights .npz (portable.convert); "
                     "required.", (INFERENCE, CONVERT)),
    "output_model_tgz": FlagHelp(
        "inference", "Also write the model (checkpoint and model_flags.json) to this .tgz.",
        (INFERENCE,)),
    "input_model_tgz": FlagHelp(
        "inference", "Predict with the model of this .tgz (written by --output_model_tgz), "
                     "unpacked into --untar_model_dir; --train_dir must not be given.",
        (INFERENCE,)),
    "untar_model_dir": FlagHelp("inference", "Where --input_model_tgz is unpacked.",
                                (INFERENCE,)),
    # ---- segments
    "segment_labels": _model(
        "Segment-level (2019) records: train and evaluate on their rated 5-frame segments; "
        "inference.py scores every 5-frame segment and writes the Class,Segments CSV.",
        FRAME_LEVEL, "segments"),
    "segment_label_ids_file": FlagHelp(
        "segments", "With --segment_labels: the whitelisted class ids, one per line (local or "
                    "gs:// path; unset: the 2019 challenge's 1000 classes, shipped with the "
                    "package).", (INFERENCE,)),
    "segment_max_pred": FlagHelp(
        "segments", "With --segment_labels: segments written per class.", (INFERENCE,)),
    "submission_file": FlagHelp(
        "segments", "The segment submission (Class,Segments CSV) to score, as inference.py "
                    "writes it.", (SEGMENT_MAP,)),
    "label_cache": FlagHelp(
        "segments", "A cache of the rated segments: read instead of the records if it exists, "
                    "written after reading them otherwise (unset: no cache).", (SEGMENT_MAP,)),
    "top_n": FlagHelp(
        "segments", "Segments of each class's line that mAP@N scores (0: all of them).",
        (SEGMENT_MAP,)),
    # ---- this project's additions
    "num_classes": _model(
        "Classes the model predicts: 4716 for the 2017 data, 3862 for 2018 and later. "
        "Unset: the train_dir's model sets it (model_flags.json, else the checkpoint's "
        "shapes); a new run reads it off the training records' id key (video_id: 4716, "
        "id: 3862), and keeps the default for records with neither.",
        EVERY_MODEL, "additions"),
    "max_frames": _model(
        "Frames kept per video: longer videos are cut, shorter ones zero-padded.",
        FRAME_LEVEL, "additions"),
    "frame_sampling": _model(
        "How frames are sampled: random, sequence (consecutive frames from a random start) "
        "or uniform (evenly spaced, deterministic); unset: random if --sample_random_frames, "
        "else sequence.", (*SAMPLED, *RANDOM_SEQUENCE), "additions"),
    "stats_top_k": _model(
        "k of the top-k values per dimension in FrameStatisticsModel's [mean; std; top-k].",
        ("FrameStatisticsModel",), "additions"),
    "lstm_variant": _model(
        "LstmModel's graph for a new run: willow (every layer's final state) or starter (the "
        "Google starter's: the last layer's final h); a checkpoint's names choose when "
        "continuing, evaluating or predicting.", ("LstmModel",), "additions"),
    "l2_penalty": _model(
        "L2 penalty on the logistic classifier's weights (the original hard-coded 1e-8); "
        "the NeXtVLAD models' heads, as the fork's: on the LogisticModel's weights and "
        "biases, on the MoeModel's weights.", (*LOGISTIC_HEAD, *NEXTVLAD), "additions"),
    "input_scaling": _model(
        "How the dequantized features are scaled before the model: l2 (the starter's L2 "
        "normalization of each frame or video), eigen (the NeXtVLAD fork's: the 1024 rgb "
        "values minus 4/512, times sqrt(PCA eigenvalue) + 1e-4; the rest unchanged) or auto "
        "(eigen for NeXtVLADModel and MixNeXtVladModel, l2 for the others); in training, "
        "eval, inference and exports alike.", EVERY_MODEL, "additions"),
    "max_step": FlagHelp("additions", "Alias of --max_steps (WILLOW's README spells it so).",
                         (TRAIN,)),
    "save_checkpoint_secs": FlagHelp(
        "additions", "Seconds between checkpoints besides those of --export_model_steps.",
        (TRAIN,)),
    "keep_checkpoints": FlagHelp(
        "additions", "Newest checkpoints kept of those this project wrote for the train_dir's "
                     "model (0: all); the original code's are never deleted.", (TRAIN,)),
    "seed": FlagHelp(
        "additions", "Random seed of the weights, the shuffling and the frame sampling "
                     "(unset: drawn once per run and kept for its restarts).", (TRAIN,)),
    "shuffle": FlagHelp(
        "additions", "Shuffle files and examples; False reads them in order (the same batches "
                     "every epoch).", (TRAIN,)),
    "xla": FlagHelp("additions", "Compile the training step with XLA (numerics may differ "
                                 "slightly).", (TRAIN,)),
    "precision": FlagHelp(
        "additions", "Compute precision of training: float32, or mixed bfloat16 or float16 "
                     "(float32 weights, loss and exports; float16 with dynamic loss scaling).",
        (TRAIN,)),
    "skip_bad_records": FlagHelp(
        "additions", "Skip and count corrupt or malformed records instead of failing.",
        READERS),
    "drop_out_of_range_labels": FlagHelp(
        "additions", "Drop and count label ids >= --num_classes instead of failing.", READERS),
    "poll_secs": FlagHelp(
        "additions", "Seconds between eval.py's looks for a new checkpoint (without "
                     "--run_once).", (EVAL,)),
    "vocabulary_file": FlagHelp(
        "additions", "vocabulary.csv (2018 and later) or label_names.csv (2017): class names "
                     "for eval.py's per-class report and best/worst classes, and for "
                     "inference.py's log of the first videos' top predictions.",
        (EVAL, INFERENCE)),
    "print_top_videos": FlagHelp(
        "additions", "Videos logged with class names when --vocabulary_file is given.",
        (INFERENCE,)),
    "inputs": FlagHelp(
        "additions", "Submission CSVs to average (positional arguments work too; none: "
                     "WILLOW's seven inference outputs).", (AVERAGING,)),
    "weights": FlagHelp("additions", "One weight per input (none: equal weights).",
                        (AVERAGING,)),
    "output": FlagHelp("additions", "Where to write the averaged submission CSV.",
                       (AVERAGING,)),
}


def help_line(name: str) -> str:
    """The help absl shows for --name."""
    return HELP[name].line()


def group_module(name: str) -> str:
    """The module name --name is defined under: its group's."""
    return GROUP_MODULES[HELP[name].group]


def script_flags(script: str) -> list[str]:
    """The flags ``script``'s --help lists: those it reads."""
    return [name for name, entry in HELP.items() if script in entry.scripts]


# ---------------------------------------------------------------- README table

def markdown(defaults: Mapping[str, Mapping[str, object]]) -> str:
    """The README's flag tables, one per group: flag, default, the scripts
    that read it, the models that read it (groups with model flags), what it
    does. ``defaults``: script -> flag -> default, of every script; a
    default that differs between the scripts reading the flag is given per
    script."""
    parts = []
    for group in GROUPS:
        entries = {name: entry for name, entry in HELP.items() if entry.group == group.key}
        with_models = any(entry.models for entry in entries.values())
        header = ["flag", "default", "scripts", *(["read by"] if with_models else []),
                  "what it does"]
        parts += [f"**{group.title[0].upper()}{group.title[1:]}**", "",
                  _row(header), _row(["---"] * len(header))]
        for name, entry in entries.items():
            models = [", ".join(entry.models) or "-"] if with_models else []
            parts.append(_row([f"`--{name}`", _default_cell(name, defaults),
                               ", ".join(entry.scripts), *models, entry.text]))
        parts.append("")
    return "\n".join(parts)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _default_cell(name: str, defaults: Mapping[str, Mapping[str, object]]) -> str:
    by_value: dict[str, list[str]] = {}
    for script, values in defaults.items():
        if script in HELP[name].scripts and name in values:
            by_value.setdefault(_default_text(values[name]), []).append(script)
    if len(by_value) == 1:
        return next(iter(by_value))
    return ", ".join(f"{text} ({', '.join(scripts)})" for text, scripts in by_value.items())


def _default_text(value: object) -> str:
    if value is None:
        return "none"
    if value in ("", [], ()):
        return '`""`'
    return f"`{value}`"
