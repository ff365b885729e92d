#!/usr/bin/env bash
# Images/s of cifar_resnet20 and resnet18: `infer --images` in one process (1 and 2
# threads) against the Ray Data example with 1 and 2 actors (1 thread each), same images,
# same machine. Run python/run-tests.sh first (it makes the venv and installs the packages).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=$PWD/target/pybuild
for m in cifar_resnet20 resnet18; do
    cargo build --release -q --manifest-path "target/python/$m/Cargo.toml" --bin infer
    cp "$CARGO_TARGET_DIR/release/infer" "target/python/$m-infer"
done
exec target/pyvenv/bin/python examples/ray_batch/bench.py "$@"
