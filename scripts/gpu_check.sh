#!/usr/bin/env bash
# GPU self-check. Run from a clone on a CUDA machine, after `pip install -r requirements.txt -e .`:
#
#     scripts/gpu_check.sh
#
# One line per check, PASS / FAIL / SKIP, then `gpu_check: N passed, M failed, K skipped`;
# the exit status is non-zero when a check failed. Checks, each under a timeout:
#   cuda        torch sees a GPU and runs a kernel on it. It gates the others: without a GPU
#               the script stops here, within seconds.
#   tests       the CUDA-marked tests (python -m pytest -m cuda); SKIP when none is marked
#   bench       pir bench --device cuda: the GPU rows of its report
#   train_bf16  one epoch of the paper-size model on the built-in generated data, bf16 autocast
#   train_fp32  the same epoch in fp32 (the released code's precision)
# Nothing in the working tree is written. The bench and the training runs use a temporary copy
# of the project (its own params.yaml, data/, reports/ and mlflow.db), deleted at the end unless
# a check failed. About 5-8 minutes on an H100/H200-class machine, most of it the bench's CPU rows.
#
# Environment: PYTHON (default python), GPU_CHECK_TIMEOUT (seconds per check, default 600),
# GPU_CHECK_BATCH (train.global_batch_size of the epoch, default 128), GPU_CHECK_KEEP=1 (keep
# the temporary folder).
set -u

cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
PYTHON=${PYTHON:-python}
TIMEOUT=${GPU_CHECK_TIMEOUT:-600}
BATCH=${GPU_CHECK_BATCH:-128}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pir-gpu-check.XXXXXX") || exit 2
LOGS=$WORK/logs
PROJECT=$WORK/project
mkdir -p "$LOGS" "$PROJECT"

passed=0
failed=0
skipped=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
skip() { echo "SKIP $*"; skipped=$((skipped + 1)); }

finish() {
    echo "gpu_check: $passed passed, $failed failed, $skipped skipped"
    if [ "$failed" -gt 0 ] || [ "${GPU_CHECK_KEEP:-0}" = 1 ]; then
        echo "gpu_check: logs and the project copy are in $WORK"
    else
        rm -rf "$WORK"
    fi
    [ "$failed" -eq 0 ]
    exit $?
}
# Ctrl-C: stop the running check too (timeout puts it in a process group of its own, so the
# terminal's SIGINT would not reach it), then report what ran.
CHILD=""
trap '[ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null; echo "FAIL interrupted"; failed=$((failed + 1)); finish' INT TERM

# run NAME CMD... : CMD under the timeout, output in $LOGS/NAME.log; sets RC, and WHY for a FAIL line
run() {
    local name=$1
    shift
    timeout "$TIMEOUT" "$@" >"$LOGS/$name.log" 2>&1 &
    CHILD=$!
    wait "$CHILD"
    RC=$?
    CHILD=""
    if [ "$RC" -eq 124 ]; then
        WHY="timed out after ${TIMEOUT}s"
    else
        WHY="exit $RC: $(grep -v '^[[:space:]]*$' "$LOGS/$name.log" | tail -n 1 | cut -c1-300)"
    fi
    WHY="$WHY (log: $LOGS/$name.log)"
    return "$RC"
}

# in_project NAME SCRIPT [ARGS...] : a script of the project copy, run there with its own library
# first on the path and outside any DVC experiment (so everything it writes stays in the copy)
in_project() {
    local name=$1
    shift
    run "$name" env -u DVC_ROOT -u DVC_EXP_NAME -u DVC_EXP_BASELINE_REV -u DVC_STAGE PYTHONUNBUFFERED=1 \
        PYTHONPATH="$PROJECT/src${PYTHONPATH:+:$PYTHONPATH}" \
        bash -c 'cd "$1" && shift && exec "$@"' _ "$PROJECT" "$PYTHON" "$@"
}

# copy_project: the files a clone would have (tracked and untracked-but-not-ignored), as the e2e tests do
copy_project() {
    if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$REPO" && git ls-files -z -co --exclude-standard \
            | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
            | tar --null -T - -cf -) | tar -C "$PROJECT" -xf -
    else
        tar -C "$REPO" --exclude=./.git --exclude=./data --exclude=./mlartifacts --exclude='./mlflow.db*' \
            --exclude=./.dvc/cache --exclude=./.dvc/tmp -cf - . | tar -C "$PROJECT" -xf -
    fi
}

# set_params KEY=VALUE... : edit the copy's params.yaml (values parsed as YAML, as dvc exp run -S does)
set_params() {
    "$PYTHON" - "$PROJECT/params.yaml" "$@" <<'EOF'
import sys, yaml
path, overrides = sys.argv[1], sys.argv[2:]
params = yaml.safe_load(open(path)) or {}
for item in overrides:
    key, _, raw = item.partition("=")
    value = yaml.safe_load(raw) if raw else ""
    *sections, leaf = key.split(".")
    node = params
    for section in sections:
        if not isinstance(node.get(section), dict):
            node[section] = {}
        node = node[section]
    node[leaf] = value
open(path, "w").write(yaml.safe_dump(params, sort_keys=False))
EOF
}

# ------------------------------------------------------------------ cuda (gates the rest)
if run cuda "$PYTHON" -c '
import torch
assert torch.cuda.is_available(), "torch.cuda.is_available() is False (torch %s, built for CUDA %s)" % (
    torch.__version__, torch.version.cuda)
x = torch.randn(512, 512, device="cuda")
assert torch.isfinite((x @ x).sum()).item(), "a matmul on the GPU gave a non-finite result"
print("%s (%d visible), torch %s, CUDA %s, bf16 %s" % (torch.cuda.get_device_name(0), torch.cuda.device_count(),
      torch.__version__, torch.version.cuda, "yes" if torch.cuda.is_bf16_supported() else "NO"))
'; then
    pass "cuda $(tail -n 1 "$LOGS/cuda.log")"
else
    fail "cuda $WHY"
    for name in tests bench train_bf16 train_fp32; do
        skip "$name no usable CUDA device (check cuda failed)"
    done
    finish
fi

# ------------------------------------------------------------------ tests marked cuda
run tests "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider
case $RC in
    0) pass "tests $(grep -E '[0-9]+ (passed|failed|error)' "$LOGS/tests.log" | tail -n 1)" ;;
    5) skip "tests no test carries the 'cuda' marker (pytest -m cuda collected nothing)" ;;
    *) fail "tests $WHY" ;;
esac

# ------------------------------------------------------------------ the project copy
# The built-in data with the paper-size model (Swin-T, BERT-base, ResNet-50; random init, no
# downloads), whatever the user's params.yaml holds. The prior trains for one epoch: its quality
# does not matter here.
setup_error=""
if ! copy_project 2>"$LOGS/copy.log" || [ ! -f "$PROJECT/params.yaml" ]; then
    setup_error="copying the project failed: $(tail -n 1 "$LOGS/copy.log") (log: $LOGS/copy.log)"
elif ! set_params \
        recipe=cpu data.dataset=synthetic data.source= data.tokenizer= data.cache_res=256 \
        model.preset=paper model.vision_pretrained= model.text_pretrained=false \
        scene_prior.pretrained= scene_prior.external= scene_prior.epochs=1 scene_prior.patience=1 \
        train.epochs=1 train.lr=1e-4 train.device=cuda train.max_gpus=1 train.compile=false \
        train.global_batch_size="$BATCH" train.pairs_per_image=0 2>"$LOGS/params.log"; then
    setup_error="writing params.yaml failed: $(tail -n 1 "$LOGS/params.log")"
fi

# ------------------------------------------------------------------ bench GPU rows
# The whole bench: --skip-paper would skip the GPU row too. It runs in the copy (its params.yaml
# gives the seed) and writes to the temp folder, not over the tracked reports/bench.json.
if [ -n "$setup_error" ]; then
    fail "bench $setup_error"
elif in_project bench -m pir_tools.cli bench --device cuda --out "$WORK/bench.json"; then
    if summary=$("$PYTHON" - "$WORK/bench.json" 2>>"$LOGS/bench.log" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
rows = [(f"train_gpu_bf16/{name}", row) for name, row in report["train_gpu_bf16"].items()]
skipped = [f"{name} skipped ({row['skipped']})" for name, row in rows if "skipped" in row]
if skipped or not rows:
    sys.exit("; ".join(skipped) or "no train_gpu_bf16 rows")
parts = [f"{name} {row['samples_per_s']:.1f} samples/s (batch {row['batch_size']}, median step "
         f"{row['median_step_s'] * 1000:.0f} ms, peak {row['peak_memory_mb']:.0f} MiB, "
         f"{row['achieved_gflops'] / 1000:.1f} TFLOP/s; 50 RSITMD epochs ~{row['rsitmd_50_epochs_hours']:.1f} h)"
         for name, row in rows]
gpu_matmul = report["matmul_fp32_gflops"].get("gpu")
if gpu_matmul:
    parts.append(f"fp32 matmul {gpu_matmul / 1000:.1f} TFLOP/s")
print("; ".join(parts))
EOF
    ); then
        pass "bench $summary"
    else
        fail "bench GPU rows of $WORK/bench.json: $(tail -n 1 "$LOGS/bench.log")"
    fi
else
    fail "bench $WHY"
fi

# ------------------------------------------------------------------ one epoch of the paper model
# The stage scripts run directly in the copy (no DVC): fetch and scene_prior once, train twice.
if [ -z "$setup_error" ]; then
    if ! in_project fetch stages/fetch.py; then
        setup_error="stage fetch: $WHY"
    elif ! in_project scene_prior stages/scene_prior.py; then
        setup_error="stage scene_prior: $WHY"
    fi
fi

for precision in bf16 fp32; do
    name=train_$precision
    if [ -n "$setup_error" ]; then
        fail "$name $setup_error"
    elif ! set_params train.precision=$precision 2>"$LOGS/params.log"; then
        fail "$name writing params.yaml failed: $(tail -n 1 "$LOGS/params.log")"
    elif in_project "$name" stages/train.py; then
        # the stage's last line: "train: best epoch 1 (val r_mean 12.34), 456.7 samples/s -> .../data/train"
        line=$(grep -aoE 'train: best epoch.*' "$LOGS/$name.log" | tail -n 1)
        rate=$(printf '%s\n' "$line" | grep -oE '[0-9.]+ samples/s' | tail -n 1)
        val=$(printf '%s\n' "$line" | grep -oE 'val r_mean [0-9.]+' | tail -n 1)
        if [ -n "$rate" ]; then
            pass "$name $rate (paper preset, one epoch of every caption, global batch $BATCH on 1 GPU, loader and" \
                 "first-step warm-up included; $val)"
        else
            fail "$name finished but printed no samples/s (log: $LOGS/$name.log)"
        fi
    else
        fail "$name $WHY"
    fi
done

finish
