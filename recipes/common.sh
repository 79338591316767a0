# What every recipe shares (sourced): this checkout's scripts behind the
# recipes' "python train.py ..." lines, and absolute data folders.
#   PYTHON   interpreter (default: python3)

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

python() {  # "python train.py ARGS" -> "$PYTHON $REPO_DIR/train.py ARGS"
    local script="$1"
    shift
    echo "+ python ${script} $*" >&2
    "${PYTHON}" "${REPO_DIR}/${script}" "$@"
}

absolute_folder() {  # a local folder made absolute (recipes cd to their work dir)
    if [[ -d "$1" ]]; then (cd "$1" && pwd); else echo "$1"; fi
}
