#!/usr/bin/env bash
# The NeXtVLAD author's final 2018 submission (linrongc/youtube-8m,
# scripts/train_mix_nextvlad_final_submission.sh): MixNeXtVladModel, three
# NeXtVLADs (112 clusters, 8 groups, expansion 2, hidden 2048, gating
# reduction 16, dropout 0.5) distilled online into their mixture
# (temperature 3, lambda 9), trained 15 epochs on the train and validate
# records; then evaluated once, its test predictions and model packed.
#
#   recipes/mix_nextvlad_final.sh FRAME_PATH EVAL_PATH TEST_PATH [WORK_DIR]
#
# FRAME_PATH   folder whose train and validate subfolders hold the training
#              records: "$FRAME_PATH/[tv][ar]*/[tv]*.tfrecord"
# EVAL_PATH    folder of the validate*.tfrecord records eval.py scores (the
#              author's was a held-out set)
# TEST_PATH    folder of the test*.tfrecord records inference.py predicts
# WORK_DIR     where the train_dir and results/ go (default: the current
#              directory)
# Environment: PYTHON, TRAIN_FLAGS, EVAL_FLAGS, INFERENCE_FLAGS and STAGES,
#   as for recipes/nextvlad_local.sh.
#
# Where this differs from the author's script, and why:
# * The data folders and the work dir are arguments (the author's script
#   hard-coded folders of his machines); the patterns are quoted, so the
#   shell never expands them.
# * --max_step=700000 takes effect here. The fork's train.py ignored flags it
#   did not define, so the author's run stopped on --num_epochs=15 alone;
#   here --max_step is an alias of --max_steps and training stops at step
#   700000 or after the 15 epochs, whichever comes first (on the 2018 train
#   and validate data, about 5 million videos at 160 a step, the epochs end
#   first, near step 470000).
# * --num_gpu=2 is kept: --batch_size=80 is per tower, so each step reads
#   160 examples on whatever devices there are, and the learning rate decays
#   every --learning_rate_decay_examples of those, as on the author's 2 GPUs.
# * Not changed: eval.py and inference.py take the model from the train_dir
#   (their lines name no --model), with the fork's eigenvalue input scaling.
# The command lines are in recipes/nextvlad_stages.sh (shared with
# nextvlad_local.sh, whose author's script differs only in the values set here).
set -euo pipefail

usage="usage: $0 FRAME_PATH EVAL_PATH TEST_PATH [WORK_DIR]"
source "$(dirname "${BASH_SOURCE[0]}")/nextvlad_stages.sh"
frame_path="$(absolute_folder "${1:?${usage}}")"

model=MixNeXtVladModel
model_flags=(--groups=8 --nextvlad_cluster_size=112 --nextvlad_hidden_size=2048
             --expansion=2 --gating_reduction=16 --drop_rate=0.5
             --mix_number=3 --cl_temperature=3 --cl_lambda=9)
train_dir=mix3_nextvlad_3T_8g_5l2_5drop_112k_2048_2x80_logistic
train_pattern="${frame_path}/[tv][ar]*/[tv]*.tfrecord"
decay_examples=2500000
num_epochs=15

run_stages "$@"
