#!/usr/bin/env bash
# The Python tests: a virtual environment filled from PyPI (python/requirements.txt), the
# Python packages of three stock specs emitted with `resnetc build --python` and installed
# with pip (maturin builds them), the digits crate's `infer` for the --images tests, then
# pytest. Run from anywhere; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=target/pyvenv
py=$venv/bin/python
[ -x "$py" ] || python3 -m venv "$venv"
# maturin (the build backend) runs from the environment: --no-build-isolation below.
export PATH=$root/$venv/bin:$PATH
"$py" -m pip install -q --disable-pip-version-check -r python/requirements.txt
# The debug build: `cargo test` has just made it, and emitting code is quick either way.
cargo build -q -p resnetc-compiler
# One target folder for every emitted crate, so that they share their dependencies' builds.
export CARGO_TARGET_DIR=$root/target/pybuild
for spec in digits_resnet8 cifar_resnet20 resnet18; do
    out=target/python/$spec
    target/debug/resnetc build "specs/$spec.resnet" --out "$out" --python
    "$py" -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall "./$out"
done
cargo build --release -q --manifest-path target/python/digits_resnet8/Cargo.toml --bin infer
export RESNETC_DIGITS_INFER=$CARGO_TARGET_DIR/release/infer
"$py" -m pytest -q -p no:cacheprovider python/tests "$@"
