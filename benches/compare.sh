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
#   benches/compare.sh            # the full set (about 15 minutes on 2 cores)
#   RUNS=10 benches/compare.sh    # fewer timed passes a point
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

ours1() { # model size batch threads -> median ms
  local exe; exe=$(build "$1" "$2")
  field median_ms "$("$exe" --random-input 0 --batch "$3" --threads "$4" --bench "$runs" | grep median_ms)"
}
ort1() { # model size batch threads -> median ms
  field median_ms "$(python3 "$peer" --model "$1" --batch "$3" --size "$2" --threads "$4" --runs "$runs" | tail -1)"
}
# pair MODEL SIZE BATCH THREADS -> "ours_ms ort_ms", interleaved twice, the better of each
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
echo "| model | batch | threads | ours ms | ORT ms | ours / ORT | ours effective GFLOP/s | % of peak |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for model in resnet18 resnet50; do
  g=$(gmacs "$model" 224)
  for batch in 1 8; do
    for threads in 1 2; do
      read -r a b <<<"$(pair "$model" 224 "$batch" "$threads")"
      peak=$([ "$threads" = 1 ] && echo "$p1" || echo "$p2")
      python3 -c "a,b,g,n,p=$a,$b,$g,$batch,$peak; f=2*g*n/(a/1e3); print(f'| $model | $batch | $threads | {a:.1f} | {b:.1f} | {a/b:.2f} | {f:.0f} | {100*f/p:.0f}% |')"
    done
  done
done
echo
echo "Latency against batch (resnet50, 224x224, 2 threads):"
echo
echo "| batch | ours ms | ORT ms | ours / ORT | ours ms a sample |"
echo "| --- | --- | --- | --- | --- |"
for batch in 1 2 4 8 16; do
  read -r a b <<<"$(pair resnet50 224 "$batch" 2)"
  python3 -c "a,b,n=$a,$b,$batch; print(f'| {n} | {a:.1f} | {b:.1f} | {a/b:.2f} | {a/n:.1f} |')"
done
echo
echo "Latency against input size (resnet50, batch 1, 2 threads):"
echo
echo "| size | ours ms | ORT ms | ours / ORT | ours effective GFLOP/s |"
echo "| --- | --- | --- | --- | --- |"
for size in 112 160 224 320 448; do
  read -r a b <<<"$(pair resnet50 "$size" 1 2)"; g=$(gmacs resnet50 "$size")
  python3 -c "a,b,g=$a,$b,$g; print(f'| $size | {a:.1f} | {b:.1f} | {a/b:.2f} | {2*g/(a/1e3):.0f} |')"
done
