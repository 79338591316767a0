#!/usr/bin/env bash
# NeXtVLAD, single model, with the flags of its author's local training script
# (linrongc/youtube-8m, scripts/train_nextvlad_local.sh): NeXtVLADModel with
# 128 clusters, 8 groups, expansion 2, hidden 2048, gating reduction 8,
# dropout 0.5, the fork's LogisticModel head; train, evaluate once, predict
# the test records and pack the model.
#
#   recipes/nextvlad_local.sh TRAIN_PATH EVAL_PATH TEST_PATH [WORK_DIR]
#
# TRAIN_PATH   folder of the training records: train*.tfrecord
# EVAL_PATH    folder of the validate*.tfrecord records eval.py scores
# TEST_PATH    folder of the test*.tfrecord records inference.py predicts
# WORK_DIR     where the train_dir and results/ (the submission CSV and the
#              model's .tgz) go (default: the current directory)
# Environment:
#   PYTHON            interpreter (default: python3)
#   TRAIN_FLAGS       appended to the train.py line, e.g. "--max_step=2"
#                     (absl keeps the last value of a repeated flag)
#   EVAL_FLAGS        appended to the eval.py line (with TRAIN_FLAGS that
#                     change the model, give it the same: eval.py evaluates
#                     the train_dir's model and warns about flags that differ)
#   INFERENCE_FLAGS   appended to the inference.py line
#   STAGES            any of "train eval inference" (default: all three)
#
# Where this differs from the author's script, and why:
# * The data folders and the work dir are arguments (the author's script
#   hard-coded folders of his machines); the patterns are quoted, so the
#   shell never expands them.
# * --num_epochs=5 is given: the author's line left it to the fork's default,
#   5, and this project's default is WILLOW's 15.
# * --max_step=700000 takes effect here. The fork's train.py ignored flags it
#   did not define, so the author's runs stopped on --num_epochs alone; here
#   --max_step is an alias of --max_steps and training stops at step 700000
#   or at the end of the epochs, whichever comes first (on the 2018 training
#   data, about 3.9 million videos, 5 epochs end first, near step 120000).
# * --num_gpu=2 is kept: --batch_size=80 is per tower, so each step reads
#   160 examples on whatever devices there are (the fork ran min(num_gpu,
#   GPUs found) towers), and the learning rate decays every
#   --learning_rate_decay_examples of those examples, as on the author's 2 GPUs.
# * Not changed: eval.py and inference.py take the model from the train_dir,
#   as the fork's did (their lines name no --model), and its input scaling
#   is the fork's eigenvalue scaling (--input_scaling=auto).
# The command lines themselves are in recipes/nextvlad_stages.sh, which
# mix_nextvlad_final.sh shares.
set -euo pipefail

usage="usage: $0 TRAIN_PATH EVAL_PATH TEST_PATH [WORK_DIR]"
source "$(dirname "${BASH_SOURCE[0]}")/nextvlad_stages.sh"
train_path="$(absolute_folder "${1:?${usage}}")"

model=NeXtVLADModel
model_flags=(--groups=8 --nextvlad_cluster_size=128 --nextvlad_hidden_size=2048
             --expansion=2 --gating_reduction=8 --drop_rate=0.5)
train_dir=nextvlad_8g_5l2_5drop_128k_2048_2x80_logistic
train_pattern="${train_path}/train*.tfrecord"
decay_examples=2000000
num_epochs=5

run_stages "$@"
