#!/usr/bin/env bash
# WILLOW's winning recipe (Youtube-8M-WILLOW README): train seven frame-level
# models, write their test predictions, and average them into one submission.
#
#   recipes/willow_ensemble.sh PATH_TO_FEATURES [WORK_DIR]
#
# PATH_TO_FEATURES  folder of the frame-level TFRecords: training reads
#                   "$path_to_features/*a*??.tfrecord" (train* and validate*),
#                   inference "$path_to_features/test*.tfrecord".
# WORK_DIR          where the train_dirs and CSVs go (default: the current
#                   directory, as in the README).
# Environment:
#   PYTHON            interpreter (default: python3)
#   TRAIN_FLAGS       appended to every training line, e.g. "--max_step=2"
#                     (absl keeps the last value of a repeated flag)
#   INFERENCE_FLAGS   appended to every inference line
#   STAGES            any of "train inference average" (default: all three)
#
# The fourteen command lines below are the README's, character for character,
# except the fixes marked "FIX" (the README's lines were not consistent with
# one another). They run in WORK_DIR: the README's "python train.py" resolves
# to this checkout's scripts through the python() function of common.sh.
#
# FIX 1 (Gated Soft-DBoF inference): the README trains into
#   --train_dir=gateddboflf-4096-1024-80-0002-300iter but ran inference from
#   --train_dir=gateddboflf-4096-1024-80-0002-300iter-gatedmoe, a directory
#   that no training line writes. Inference uses the trained directory.
# Kept (same line): it passes --moe_prob_gating=True, a model flag the
#   training line did not set. The original inference restored the saved
#   graph, so the flag was inert; here the train_dir's model_flags.json
#   defines the graph too, and inference.py warns that the flag is ignored.
# FIX 2 (averaging): WILLOW's file_averaging.py read hard-coded names, two of
#   which inference never writes (test-GRU-0002-1200-2.csv and
#   test-gateddboflf-4096-1024-80-0002-300iter.csv). This project's
#   file_averaging.py, run without arguments, averages the seven files the
#   inference lines below do write, into WILLOW_submission.csv (and reads all
#   50 pairs per line; the original read the first 25).
# Not changed: the NetFV inference line lacks --run_once=True (inert in
#   inference.py anyway); inference batch sizes differ between lines (they do
#   not change predictions: inference runs in eval mode).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # python(), absolute_folder
path_to_features="$(absolute_folder "${1:?usage: $0 PATH_TO_FEATURES [WORK_DIR]}")"
WORK_DIR="${2:-.}"
TRAIN_FLAGS="${TRAIN_FLAGS:-}"
INFERENCE_FLAGS="${INFERENCE_FLAGS:-}"
STAGES="${STAGES:-train inference average}"

train_models() {
    # Gated NetVLAD (256 clusters)
    python train.py --train_data_pattern="$path_to_features/*a*??.tfrecord" --model=NetVLADModelLF --train_dir=gatednetvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=80 --base_learning_rate=0.0002 --netvlad_cluster_size=256 --netvlad_hidden_size=1024 --moe_l2=1e-6 --iterations=300 --learning_rate_decay=0.8 --netvlad_relu=False --gating=True --moe_prob_gating=True --max_step=700000 ${TRAIN_FLAGS}
    # Gated NetFV (128 clusters)
    python train.py --train_data_pattern="$path_to_features/*a*??.tfrecord" --model=NetFVModelLF --train_dir=gatednetfvLF-128k-1024-80-0002-300iter-norelu-basic-gatedmoe --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=80 --base_learning_rate=0.0002 --fv_cluster_size=128 --fv_hidden_size=1024 --moe_l2=1e-6 --iterations=300 --learning_rate_decay=0.8 --fv_relu=False --gating=True --moe_prob_gating=True --fv_couple_weights=False --max_step=600000 ${TRAIN_FLAGS}
    # Gated Soft-DBoF (4096 clusters)
    python train.py --train_data_pattern="$path_to_features/*a*??.tfrecord" --model=GatedDbofModelLF --train_dir=gateddboflf-4096-1024-80-0002-300iter --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=80 --base_learning_rate=0.0002 --dbof_cluster_size=4096 --dbof_hidden_size=1024 --moe_l2=1e-6 --iterations=300 --dbof_relu=False --max_step=1000000 ${TRAIN_FLAGS}
    # Soft-DBoF (8000 clusters)
    python train.py --train_data_pattern="$path_to_features/*a*??.tfrecord" --model=SoftDbofModelLF --train_dir=softdboflf-8000-1024-80-0002-300iter --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=80 --base_learning_rate=0.0002 --dbof_cluster_size=8000 --dbof_hidden_size=1024 --iterations=300 --dbof_relu=False --max_step=800000 ${TRAIN_FLAGS}
    # Gated NetRVLAD (256 clusters)
    python train.py --train_data_pattern="$path_to_features/*a*??.tfrecord" --model=NetVLADModelLF --train_dir=gatedlightvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=80 --base_learning_rate=0.0002 --netvlad_cluster_size=256 --netvlad_hidden_size=1024 --moe_l2=1e-6 --iterations=300 --learning_rate_decay=0.8 --netvlad_relu=False --gating=True --moe_prob_gating=True --lightvlad=True --max_step=600000 ${TRAIN_FLAGS}
    # GRU (2 layers)
    python train.py --train_data_pattern="$path_to_features/*a*??.tfrecord" --model=GruModel --train_dir=GRU-0002-1200 --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=128 --base_learning_rate=0.0002 --gru_cells=1200 --learning_rate_decay=0.9 --moe_l2=1e-6 --max_step=300000 ${TRAIN_FLAGS}
    # LSTM (2 layers)
    python train.py --train_data_pattern="$path_to_features/*a*??.tfrecord" --model=LstmModel --train_dir=lstm-0002-val-150-random --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=128 --base_learning_rate=0.0002 --iterations=150 --lstm_random_sequence=True --max_step=400000 ${TRAIN_FLAGS}
}

run_inference() {
    python inference.py --output_file=test-lstm-0002-val-150-random.csv --input_data_pattern="$path_to_features/test*.tfrecord" --model=LstmModel --train_dir=lstm-0002-val-150-random --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=1024 --base_learning_rate=0.0002 --iterations=150 --lstm_random_sequence=True --run_once=True --top_k=50 ${INFERENCE_FLAGS}

    python inference.py --output_file=test-gatedlightvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe.csv --input_data_pattern="$path_to_features/test*.tfrecord" --model=NetVLADModelLF --train_dir=gatedlightvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=1024 --base_learning_rate=0.0002 --netvlad_cluster_size=256 --netvlad_hidden_size=1024 --moe_l2=1e-6 --iterations=300 --learning_rate_decay=0.8 --netvlad_relu=False --gating=True --moe_prob_gating=True --lightvlad=True --run_once=True  --top_k=50 ${INFERENCE_FLAGS}

    # FIX 1: --train_dir=gateddboflf-4096-1024-80-0002-300iter (README: ...-300iter-gatedmoe).
    python inference.py --output_file=test-gateddboflf-4096-1024-80-0002-300iter-gatedmoe.csv --input_data_pattern="$path_to_features/test*.tfrecord" --model=GatedDbofModelLF --train_dir=gateddboflf-4096-1024-80-0002-300iter --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=512 --base_learning_rate=0.0002 --dbof_cluster_size=4096 --dbof_hidden_size=1024 --moe_l2=1e-6 --iterations=300 --dbof_relu=False --moe_prob_gating=True --run_once=True --top_k=50 ${INFERENCE_FLAGS}

    python inference.py --output_file=test-gatednetfvLF-128k-1024-80-0002-300iter-norelu-basic-gatedmoe.csv --input_data_pattern="$path_to_features/test*.tfrecord" --model=NetFVModelLF --train_dir=gatednetfvLF-128k-1024-80-0002-300iter-norelu-basic-gatedmoe --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=1024 --base_learning_rate=0.0002 --fv_cluster_size=128 --fv_hidden_size=1024 --moe_l2=1e-6 --iterations=300 --learning_rate_decay=0.8 --fv_relu=False --gating=True --moe_prob_gating=True --fv_couple_weights=False --top_k=50 ${INFERENCE_FLAGS}

    python inference.py --output_file=test-GRU-0002-1200.csv --input_data_pattern="$path_to_features/test*.tfrecord" --model=GruModel --train_dir=GRU-0002-1200 --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=1024 --base_learning_rate=0.0002 --gru_cells=1200 --learning_rate_decay=0.9 --moe_l2=1e-6 --run_once=True --top_k=50 ${INFERENCE_FLAGS}

    python inference.py --output_file=test-gatednetvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe.csv --input_data_pattern="$path_to_features/test*.tfrecord" --model=NetVLADModelLF --train_dir=gatednetvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=1024 --base_learning_rate=0.0002 --netvlad_cluster_size=256 --netvlad_hidden_size=1024 --moe_l2=1e-6 --iterations=300 --learning_rate_decay=0.8 --netvlad_relu=False --gating=True --moe_prob_gating=True --run_once=True  --top_k=50 ${INFERENCE_FLAGS}

    python inference.py --output_file=test-softdboflf-8000-1024-80-0002-300iter.csv --input_data_pattern="$path_to_features/test*.tfrecord"  --model=SoftDbofModelLF --train_dir=softdboflf-8000-1024-80-0002-300iter --frame_features=True --feature_names="rgb,audio" --feature_sizes="1024,128" --batch_size=256 --base_learning_rate=0.0002 --dbof_cluster_size=8000 --dbof_hidden_size=1024 --iterations=300 --dbof_relu=False --run_once=True --top_k=50 ${INFERENCE_FLAGS}
}

average() {
    # FIX 2: without arguments, averages the seven CSVs written above.
    python file_averaging.py
}

mkdir -p "${WORK_DIR}"
cd "${WORK_DIR}"
for stage in ${STAGES}; do
    case "${stage}" in
        train) train_models ;;
        inference) run_inference ;;
        average) average ;;
        *) echo "ERROR: unknown stage ${stage}; valid: train inference average" >&2; exit 1 ;;
    esac
done
