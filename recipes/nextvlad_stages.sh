# The stages the two NeXtVLAD recipes share (sourced by nextvlad_local.sh and
# mix_nextvlad_final.sh): train, evaluate once on the validate records, and
# write the test predictions and the model's .tgz, as the NeXtVLAD author's
# scripts do. The sourcing recipe sets, then calls run_stages with its
# arguments (TRAINING_DATA EVAL_PATH TEST_PATH [WORK_DIR]):
#   usage             its usage line
#   model             --model
#   model_flags       array: the model's flags, given to train.py and eval.py
#   train_dir         the train_dir's name (under WORK_DIR)
#   train_pattern     --train_data_pattern
#   decay_examples    --learning_rate_decay_examples
#   num_epochs        --num_epochs

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # python(), absolute_folder
TRAIN_FLAGS="${TRAIN_FLAGS:-}"
EVAL_FLAGS="${EVAL_FLAGS:-}"
INFERENCE_FLAGS="${INFERENCE_FLAGS:-}"
STAGES="${STAGES:-train eval inference}"
RESULTS=results  # the author's folder for the CSV and the .tgz, under WORK_DIR

train_model() {
    # Batch 80 per tower on 2 towers: 160 examples a step.
    python train.py --model="${model}" "${model_flags[@]}" \
        --video_level_classifier_model=LogisticModel --l2_penalty=1e-5 \
        --label_loss=CrossEntropyLoss --frame_features=True --feature_names="rgb,audio" \
        --feature_sizes="1024,128" --train_data_pattern="${train_pattern}" \
        --train_dir="${train_dir}" --start_new_model=False --num_readers=8 \
        --batch_size=80 --num_gpu=2 --base_learning_rate=0.0002 --learning_rate_decay=0.8 \
        --learning_rate_decay_examples "${decay_examples}" --num_epochs="${num_epochs}" \
        --max_step=700000 ${TRAIN_FLAGS}
}

evaluate_model() {
    # No --model: eval.py takes the model from the train_dir.
    python eval.py "${model_flags[@]}" --video_level_classifier_model=LogisticModel \
        --l2_penalty=1e-5 --label_loss=CrossEntropyLoss --batch_size=80 \
        --eval_data_pattern="${eval_path}/validate*.tfrecord" --train_dir "${train_dir}" \
        --run_once=True ${EVAL_FLAGS}
}

predict_test() {
    mkdir -p "${RESULTS}"
    python inference.py --train_dir "${train_dir}" \
        --input_data_pattern="${test_path}/test*.tfrecord" --batch_size=80 --num_readers=8 \
        --output_file "${RESULTS}/${train_dir}.csv" \
        --output_model_tgz "${RESULTS}/${train_dir}.tgz" ${INFERENCE_FLAGS}
}

run_stages() {  # TRAINING_DATA EVAL_PATH TEST_PATH [WORK_DIR]
    eval_path="$(absolute_folder "${2:?${usage}}")"
    test_path="$(absolute_folder "${3:?${usage}}")"
    mkdir -p "${4:-.}"
    cd "${4:-.}"
    local stage
    for stage in ${STAGES}; do
        case "${stage}" in
            train) train_model ;;
            eval) evaluate_model ;;
            inference) predict_test ;;
            *) echo "ERROR: unknown stage ${stage}; valid: train eval inference" >&2; exit 1 ;;
        esac
    done
}
