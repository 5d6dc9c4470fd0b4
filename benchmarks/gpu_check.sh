#!/usr/bin/env bash
# The GPU check, one call on the lent H200 (docs/benchmark.md#the-gpu-check), in about BUDGET seconds:
#   install  the carried wheels (.whl: Optuna, mlflow-skinny and what the image lacks) and CIFAR-10
#            (.data/cifar10.tar.gz: the images these runs read), checked before any work
#   tests    the Triton kernels compiled for real against the float64 reference (-k triton)
#   chains   benchmarks/kernel_speed.py: the paper's chains at 32x32
#   graphs   benchmarks/kernel_speed.py --graphs at GRAPH_SIZE (32)
#   search   a few trials of the nasbench201 space at the benchmark's resolution, end to end
#   bench    nas-cntk benchmark nb201 on K development cells, stopped in time. TRAIN=auto (the default)
#            takes the most images of SIZES whose K cells fit in the time left at the search's pairs/s.
#            The score cache goes to $OUT/state.tar.gz; a later call given it as .resume/state.tar.gz,
#            with the TRAIN and VAL this one used, goes on where it stopped (STEPS=bench: that step alone)
# then packs the results into $OUT (the log, the scores' CSV, the cache, as many kernels as fit) and
# prints a summary last. SCALE=tiny rehearses every step on a CPU in a few minutes
# (tools/device/rehearse.sh). Every setting below can be given in the environment.
set -uo pipefail  # not -e: a step that fails is reported, and the steps after it still run
cd "$(dirname "$0")/.."

OUT=${OUT:?OUT: the folder whose files come back}
SCALE=${SCALE:-full}
PY=${PY:-python3}
WHEELS=${WHEELS:-.whl}
DATA=${DATA:-.data/cifar10.tar.gz}
RESUME=${RESUME:-.resume/state.tar.gz}
STEPS=${STEPS:-tests chains graphs search bench}
WORK=${WORK:-$(mktemp -d)}
FIRST=${FIRST:-2000}           # training images the speed runs read (twice the side of their largest block)
SEARCH_TRAIN=${SEARCH_TRAIN:-200} SEARCH_VAL=${SEARCH_VAL:-100}
TRAIN=${TRAIN:-auto} VAL=${VAL:-}  # the benchmark's images: auto, or both given
CELLS=${CELLS:-1}              # cells per stage of the benchmark's networks
KERNEL_MB=${KERNEL_MB:-45}     # kernels that come back, whole .npz files, in tar parts of 15 MiB
RESERVE=40                     # seconds kept for packing and the summary
# By scale: the device, the budget in seconds, K cells at resolution RES, SIZES (TRAIN,VAL that auto takes
# from, largest first), the pairs the speed runs time, and CELL_SECONDS (a benchmark cell's time besides its
# kernel: NASWOT and synflow on the CPU, MLflow)
if [ "$SCALE" = tiny ]; then
  DEVICE=${DEVICE:-cpu} BUDGET=${BUDGET:-420} K=${K:-4} RES=${RES:-8} SIZES=${SIZES:-200,100 100,50}
  SEARCH_TRIALS=${SEARCH_TRIALS:-2} GAP_PAIRS=${GAP_PAIRS:-4} FLATTEN_PAIRS=${FLATTEN_PAIRS:-400}
  GRAPH_SIZE=${GRAPH_SIZE:-8} GRAPH_SCALE=${GRAPH_SCALE:-0.01} REPEATS=${REPEATS:-1}
  CELL_SECONDS=${CELL_SECONDS:-4}
  export TRITON_INTERPRET=1
else
  DEVICE=${DEVICE:-cuda} BUDGET=${BUDGET:-480} K=${K:-100} RES=${RES:-32}
  SIZES=${SIZES:-1000,500 500,250 200,100 100,50}
  SEARCH_TRIALS=${SEARCH_TRIALS:-3} GAP_PAIRS=${GAP_PAIRS:-10000} FLATTEN_PAIRS=${FLATTEN_PAIRS:-1000000}
  GRAPH_SIZE=${GRAPH_SIZE:-32} GRAPH_SCALE=${GRAPH_SCALE:-100} REPEATS=${REPEATS:-2}
  CELL_SECONDS=${CELL_SECONDS:-1}
fi
[ "$TRAIN" = auto ] || [ -n "$VAL" ] || { echo "gpu_check: TRAIN=$TRAIN needs VAL too" >&2; exit 2; }
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=5 PYTHONPATH="$WORK/site:$PWD" NAS_CNTK_DATA_DIR="$WORK/data"
nas=("$PY" -m nas_cntk.cli)
search_label="t$SEARCH_TRAIN-v$SEARCH_VAL-r$RES-s0" label="t$TRAIN-v$VAL-r$RES-s0"  # score caches' data labels
start=$(date +%s)
declare -A status seconds

left() { echo $((BUDGET - RESERVE - $(date +%s) + start)); }

# run_step NAME LIMIT COMMAND...: at most LIMIT seconds and what the budget leaves (a shell function of
# this script: unbounded), its output in WORK/NAME.log
run_step() {
  local name=$1 limit=$2 t0
  shift 2
  (($(left) < limit)) && limit=$(left)
  if ((limit < 10)); then status[$name]="no time left"; return; fi
  echo "== $name (at most $limit s): $*"
  t0=$(date +%s)
  if declare -F "$1" >/dev/null; then "$@"; else timeout -s INT -k 30 "$limit" "$@"; fi 2>&1 |
    tee "$WORK/$name.log"
  local rc=${PIPESTATUS[0]}
  seconds[$name]=$(($(date +%s) - t0))
  case $rc in 0) status[$name]=ok ;; 124) status[$name]="timed out" ;; *) status[$name]="failed ($rc)" ;; esac
}

install() {
  "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
    "$WHEELS"/*.whl || return
  mkdir -p "$WORK/data" "$WORK/trials" && tar xzf "$DATA" -C "$WORK/data" || return
  if [ -f "$RESUME" ]; then tar xzf "$RESUME" -C "$WORK/trials" && echo "resuming from $RESUME"; fi
  "$PY" -c "import optuna, mlflow, torch, triton, nas_cntk.search, nas_cntk.scoring, nas_cntk.trained.benchmark
print(', '.join(f'{m.__name__} {m.__version__}' for m in (optuna, mlflow, torch, triton)))
print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" || return
  local size subsets=(--subset "$SEARCH_TRAIN,$SEARCH_VAL")
  for size in $SIZES "$TRAIN,$VAL"; do [ "$size" = auto, ] || subsets+=(--subset "$size"); done
  "$PY" tools/device/carry_cifar.py check "${subsets[@]}" --first "$FIRST"
}

# scores CACHE LABEL: how many cells a score cache holds at a data label, their mean kernel seconds and pairs/s
scores() {
  "$PY" - "$1" "$2" <<'EOF'
import json, sys
from pathlib import Path
scores = [json.loads(p.read_text()) for p in Path(sys.argv[1]).glob(f"v*/{sys.argv[2]}/*.json")]
seconds = sum(s["seconds"] for s in scores)
print(len(scores), seconds / max(len(scores), 1), sum(s["pairs"] for s in scores) / seconds if seconds else 0)
EOF
}

# TRAIN=auto: the most images of SIZES (largest first) whose K cells fit in 80% of the time left, at the
# pairs/s of the search's trials (same resolution) and CELL_SECONDS a cell besides; else the smallest
choose_sizes() {
  local rate=0 size t v
  read -r _ _ rate < <(scores "$WORK/search/cache" "$search_label")
  for size in $SIZES; do
    t=${size%,*} v=${size#*,}
    awk "BEGIN { exit !($rate > 0 && $K * (($t + $v) * ($t + $v + 1) / 2 / $rate + $CELL_SECONDS) \
                        <= 0.8 * $(left)) }" && break
  done
  TRAIN=$t VAL=$v
  echo "bench at $t + $v images (TRAIN=auto: the search's ${rate%.*} pairs/s, $(left) s left, K=$K)"
}

# The score cache, for a later call to resume from; the kernels of cells scored (and cached) in this
# call, oldest first, as many whole files as fit in KERNEL_MB.
pack() {
  [ -d "$WORK/trials/cache" ] && tar czf "$OUT/state.tar.gz" -C "$WORK/trials" cache
  local files=() total=0 size npz
  for npz in $(ls -tr "$WORK/kernels" 2>/dev/null); do
    compgen -G "$WORK/trials/cache/v*/$label/${npz%.npz}.json" >/dev/null || continue  # cut off while written
    size=$(stat -c %s "$WORK/kernels/$npz")
    ((total + size > KERNEL_MB * 1048576)) && break
    files+=("$npz") total=$((total + size))
  done
  ((${#files[@]})) && tar cf - -C "$WORK/kernels" "${files[@]}" | split -d -a 1 -b 15M - "$OUT/kernels.tar."
  echo "${#files[@]} of $(ls "$WORK/kernels" 2>/dev/null | wc -l) cells' kernels in $OUT/kernels.tar.*" \
    "($((total / 1048576)) MiB)"
}

# The speed tables and the benchmark's report (its one-edge tables are in the log), then a line a step
summary() {
  local name result n mean rate files
  files=$(pack)
  for name in chains graphs; do
    [ -f "$WORK/$name.log" ] && echo && grep -E "^(device|readout|network|flatten|gap|nb201|default)" "$WORK/$name.log"
  done
  [ -f "$WORK/bench.log" ] && echo && sed -n '/^NAS-Bench-201, CIFAR-10:/,/^one-edge pairs/p' "$WORK/bench.log"
  echo
  echo "== gpu_check summary: SCALE=$SCALE, --device $DEVICE," \
    "commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}, $(($(date +%s) - start)) s of a $BUDGET s budget"
  grep -h -E "^(optuna |device:|resuming)" "$WORK/install.log"
  printf '%-8s %-13s %7s  %s\n' step status seconds result
  for name in install tests chains graphs search bench; do
    case ${seconds[$name]:+$name} in
      '') result="" ;;
      install) result=$(tail -1 "$WORK/install.log") ;;
      tests) result=$(grep -E "passed|failed|error" "$WORK/tests.log" 2>/dev/null | tail -1) ;;
      search) read -r n mean rate < <(scores "$WORK/search/cache" "$search_label")
              result=$(printf "%d trials at $search_label, %.1f s and %.0f pairs/s a trial" "$n" "$mean" "$rate") ;;
      bench) read -r n mean rate < <(scores "$WORK/trials/cache" "$label")
             result=$(printf "%d of $K cells at $label, %.1f s and %.0f pairs/s a cell" "$n" "$mean" "$rate") ;;
      *) result="table above" ;;
    esac
    printf '%-8s %-13s %7s  %s\n' "$name" "${status[$name]:-not run}" "${seconds[$name]:--}" "$result"
  done
  echo "files: $files"
}

main() {
  for step in $STEPS; do
    case $step in tests | chains | graphs | search | bench) ;; *) echo "unknown step $step in STEPS"; return 2 ;; esac
  done
  echo "gpu_check: SCALE=$SCALE, steps: install $STEPS; work in $WORK; files to $OUT"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  run_step install 120 install
  for step in $STEPS; do
    case $step in
      tests) run_step tests 150 "$PY" -m pytest -q -p no:cacheprovider -k triton tests/test_triton_kernel.py \
               tests/test_fused.py tests/test_fused_graph.py ;;
      chains) run_step chains 75 "$PY" benchmarks/kernel_speed.py --device "$DEVICE" --repeats "$REPEATS" \
                --pairs-gap "$GAP_PAIRS" --pairs-flatten "$FLATTEN_PAIRS" ;;
      graphs) run_step graphs 90 "$PY" benchmarks/kernel_speed.py --graphs --graph-size "$GRAPH_SIZE" \
                --device "$DEVICE" --repeats "$REPEATS" --graph-scale "$GRAPH_SCALE" ;;
      search) run_step search 90 "${nas[@]}" search --space nasbench201 --trials "$SEARCH_TRIALS" \
                --train-size "$SEARCH_TRAIN" --val-size "$SEARCH_VAL" --resolution "$RES" --device "$DEVICE" \
                --trials-dir "$WORK/search" ;;
      bench) [ "$TRAIN" = auto ] && choose_sizes
             label="t$TRAIN-v$VAL-r$RES-s0"
             run_step bench "$BUDGET" "${nas[@]}" benchmark nb201 --table tests/data/nb201_cifar10_dev.csv \
               --sample "$K" --seed 0 --cells-per-stage "$CELLS" --train-size "$TRAIN" --val-size "$VAL" \
               --resolution "$RES" --device "$DEVICE" --trials-dir "$WORK/trials" \
               --out "$OUT/nb201-n$CELLS-$label-k$K.csv" --save-kernels "$WORK/kernels" ;;
    esac
  done
  summary
}

mkdir -p "$OUT"
main 2>&1 | tee "$OUT/gpu_check.log"
