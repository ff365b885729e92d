#!/usr/bin/env bash
# Times our emitted crates (`infer --bench`) and ONNX Runtime (../shared/peers/ort_resnet.py)
# on the same model, batch, input size and threads, in one run, and prints markdown tables:
# the ratio ours / ORT (below 1 means we are faster), GFLOP/s and the share of this machine's
# measured peak (`resnetc peak`), then latency against batch and against input size.
#
# This machine is shared and its speed drifts by several percent from minute to minute, so
# each point times ours, ORT, ours, ORT (each a median of RUNS passes after a warm-up) and
# keeps each side's better median: both sides get the same chances.
#
# Every kernel path the CPU has is measured (AVX-512 where present, AVX2+FMA, portable at
# batch 1), each row labelled with the kernels infer reports it ran.
#
#   benches/compare.sh               # every path: resnet18, resnet50, cifar_resnet20,
#                                    # mobilenet_v2, efficientnet_b0
#   PATHS=avx2 benches/compare.sh    # one path
#   EXTRA=1 benches/compare.sh       # also latency against batch and input size
#   RUNS=10 benches/compare.sh       # fewer timed passes a point
#   MODELS="resnet18 resnet50" benches/compare.sh   # some models only
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
peer="$root/../shared/peers/ort_resnet.py"
runs="${RUNS:-20}"
work="$root/target/bench-crates"
mkdir -p "$work"
cd "$root"

python3 -c "import onnxruntime, onnx, numpy" 2>/dev/null || pip install -q onnx onnxruntime numpy
cargo build --release -q -p resnetc-compiler
resnetc="$root/target/release/resnetc"

# build MODEL SIZE -> path of its infer binary
build() {
  local model=$1 size=$2 dir="$work/$1-$2"
  # Rebuilt whenever resnetc (and so the vendored runtime) is newer than the binary.
  if [ ! -x "$dir/infer-bin" ] || [ "$resnetc" -nt "$dir/infer-bin" ]; then
    "$resnetc" build "specs/$model.resnet" --out "$dir" --input-shape "3,$size,$size" 2>/dev/null
    cargo build --release -q --bin infer --manifest-path "$dir/Cargo.toml" --target-dir "$work/target"
    cp "$work/target/release/infer" "$dir/infer-bin"
  fi
  echo "$dir/infer-bin"
}

# field NAME LINE -> the value of NAME=... in LINE
field() { sed -E "s/.*$1=([0-9.]+).*/\1/" <<<"$2"; }

# Kernel paths: each row runs with its environment; infer reports what actually ran.
kernel_env() { # path -> env assignments
  case $1 in
    avx512) echo "RESNETC_AVX512=1" ;;
    avx2) echo "RESNETC_AVX512=0" ;;
    portable) echo "RESNETC_PORTABLE=1" ;;
  esac
}
ours1() { # path model size batch threads -> median ms
  local exe; exe=$(build "$2" "$3")
  field median_ms "$(env $(kernel_env "$1") "$exe" --random-input 0 --batch "$4" --threads "$5" --bench "$runs" | grep median_ms)"
}
label() { # path model size -> the kernels infer reports it ran on that path
  local exe; exe=$(build "$2" "$3")
  env $(kernel_env "$1") "$exe" --random-input 0 --threads 1 | sed -nE 's/.*threads?, ([^ ]+) kernels.*/\1/p'
}
ort1() { # path model size batch threads -> median ms
  local onnx="$root/../shared/peers/onnx/$2.onnx"
  if [ -f "$onnx" ]; then
    # cifar_resnet20, mobilenet_v2, efficientnet_b0: the peers' ONNX files.
    field median_ms "$(python3 "$root/../shared/peers/onnx/ort_bench.py" "$onnx" --batch "$4" --size "$3" --threads "$5" --runs "$runs" | tail -1)"
  else
    field median_ms "$(python3 "$peer" --model "$2" --batch "$4" --size "$3" --threads "$5" --runs "$runs" | tail -1)"
  fi
}
# pair PATH MODEL SIZE BATCH THREADS -> "ours_ms ort_ms", interleaved twice, the better of each
pair() {
  local a1 b1 a2 b2
  a1=$(ours1 "$@"); b1=$(ort1 "$@"); a2=$(ours1 "$@"); b2=$(ort1 "$@")
  python3 -c "print(min($a1, $a2), min($b1, $b2))"
}
gmacs() { # model size -> MACs of one sample, in G
  "$resnetc" summary "specs/$1.resnet" --input-shape "3,$2,$2" --format json | python3 -c "import json,sys; print(json.load(sys.stdin)['total_macs']/1e9)"
}

peak_line=$("$resnetc" peak --threads 2)
p1=$(field peak_gflops_1_thread "$peak_line")
p2=$(field peak_gflops_2_threads "$peak_line")
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $peak_line; runs=$runs; $(date -u +%Y-%m-%dT%H:%MZ)"
echo
# Every path this CPU has (PATHS="avx2 portable" to choose); the portable one at batch 1.
if [ -z "${PATHS:-}" ]; then
  PATHS="avx2 portable"
  grep -qw avx512f /proc/cpuinfo && PATHS="avx512 $PATHS"
fi
echo "| kernels | model | input | batch | threads | ours ms | ORT ms | ours / ORT | ours effective GFLOP/s | % of peak |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for path in $PATHS; do
  for spec in resnet18:224:"1 8" resnet50:224:"1 8" cifar_resnet20:32:"1 64" mobilenet_v2:224:"1" efficientnet_b0:224:"1"; do
    IFS=: read -r model size batches <<<"$spec"
    [ -z "${MODELS:-}" ] || [[ " $MODELS " == *" $model "* ]] || continue
    [ "$path" = portable ] && batches=1
    g=$(gmacs "$model" "$size")
    for batch in $batches; do
      for threads in 1 2; do
        read -r a b <<<"$(pair "$path" "$model" "$size" "$batch" "$threads")"
        ran=$(label "$path" "$model" "$size")
        peak=$([ "$threads" = 1 ] && echo "$p1" || echo "$p2")
        python3 -c "a,b,g,n,p=$a,$b,$g,$batch,$peak; f=2*g*n/(a/1e3); print(f'| $ran | $model | ${size}x${size} | $batch | $threads | {a:.2f} | {b:.2f} | {a/b:.2f} | {f:.0f} | {100*f/p:.0f}% |')"
      done
    done
  done
done
[ -n "${EXTRA:-}" ] || exit 0
echo
echo "Latency against batch (resnet50, 224x224, 2 threads, widest kernels):"
echo
echo "| batch | ours ms | ORT ms | ours / ORT | ours ms a sample |"
echo "| --- | --- | --- | --- | --- |"
widest=${PATHS%% *}
for batch in 1 2 4 8 16; do
  read -r a b <<<"$(pair "$widest" resnet50 224 "$batch" 2)"
  python3 -c "a,b,n=$a,$b,$batch; print(f'| {n} | {a:.1f} | {b:.1f} | {a/b:.2f} | {a/n:.1f} |')"
done
echo
echo "Latency against input size (resnet50, batch 1, 2 threads, widest kernels):"
echo
echo "| size | ours ms | ORT ms | ours / ORT | ours effective GFLOP/s |"
echo "| --- | --- | --- | --- | --- |"
for size in 112 160 224 320 448; do
  read -r a b <<<"$(pair "$widest" resnet50 "$size" 1 2)"; g=$(gmacs resnet50 "$size")
  python3 -c "a,b,g=$a,$b,$g; print(f'| $size | {a:.1f} | {b:.1f} | {a/b:.2f} | {2*g/(a/1e3):.0f} |')"
done
