"""Shared helpers: where the fixtures are, and the parity check of the fixtures README."""

import os
import pathlib

import numpy as np
import pytest
from safetensors.numpy import load_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures"

# (import name, weights file, io file) of each emitted package under test.
MODELS = {
    "resnet18": ("resnet18/weights.safetensors", "resnet18/io.safetensors"),
    "cifar_resnet20": ("cifar_resnet20/weights.safetensors", "cifar_resnet20/io.safetensors"),
    "digits_resnet8": ("digits/resnet8_weights.safetensors", "digits/resnet8_io.safetensors"),
}


def weights_path(name):
    return str(FIXTURES / MODELS[name][0])


def golden(name):
    """The fixture's `input` and PyTorch's `output`."""
    io = load_file(str(FIXTURES / MODELS[name][1]))
    return io["input"], io["output"]


def assert_parity(ours, torch_out):
    """max |ours - torch| <= 1e-4 * max(1, max |torch|), same argmax every row, no NaN."""
    assert ours.shape == torch_out.shape, (ours.shape, torch_out.shape)
    assert ours.dtype == np.float32
    assert np.isfinite(ours).all()
    scale = max(1.0, float(np.abs(torch_out).max()))
    err = float(np.abs(ours - torch_out).max())
    assert err <= 1e-4 * scale, f"max |ours - torch| = {err:.3g}, allowed {1e-4 * scale:.3g}"
    assert (ours.argmax(1) == torch_out.argmax(1)).all()
    return err


@pytest.fixture(scope="session")
def digits_infer():
    path = os.environ.get("RESNETC_DIGITS_INFER")
    if not path:
        pytest.fail("RESNETC_DIGITS_INFER is not set: run the suite with python/run-tests.sh")
    return path
