"""The emitted Python packages: parity with PyTorch's fixtures, errors, threads."""

import importlib
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import MODELS, assert_parity, golden, weights_path


@pytest.mark.parametrize("name", sorted(MODELS))
def test_from_file_matches_pytorch(name):
    mod = importlib.import_module(name)
    m = mod.Model(weights_path(name), threads=2)
    x, y = golden(name)
    assert m.input_shape == x.shape[1:]
    assert m.classes == y.shape[1]
    assert_parity(m(x), y)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_from_state_dict_matches_pytorch(name):
    mod = importlib.import_module(name)
    state = load_file(weights_path(name))  # numpy arrays, num_batches_tracked included
    m = mod.Model.from_state_dict(state)
    x, y = golden(name)
    assert_parity(m(x), y)


def test_any_strides_give_the_same_output():
    mod = importlib.import_module("cifar_resnet20")
    m = mod.Model(weights_path("cifar_resnet20"))
    x, y = golden("cifar_resnet20")
    # Reversed batch (negative stride), channels-last memory, and a strided slice.
    assert_parity(m(x[::-1]), y[::-1])
    assert_parity(m(np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)), y)
    wide = np.zeros((x.shape[0], 3, 32, 64), dtype=np.float32)
    wide[..., ::2] = x
    assert_parity(m(wide[..., ::2]), y)


def test_double_state_dicts_load_as_float_like_load_state_dict():
    mod = importlib.import_module("cifar_resnet20")
    state = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in load_file(weights_path("cifar_resnet20")).items()}
    x, y = golden("cifar_resnet20")
    assert_parity(mod.Model.from_state_dict(state)(x), y)


def test_weight_names_are_the_state_dict_keys():
    mod = importlib.import_module("resnet18")
    m = mod.Model(weights_path("resnet18"))
    keys = {k for k in load_file(weights_path("resnet18")) if not k.endswith("num_batches_tracked")}
    assert set(m.weight_names()) == keys
    assert len(m.weight_names()) == len(keys)


def test_wrong_dtype_and_shape_raise_value_error_saying_what_was_expected():
    mod = importlib.import_module("digits_resnet8")
    m = mod.Model(weights_path("digits_resnet8"))
    x, _ = golden("digits_resnet8")
    with pytest.raises(ValueError, match=r"expected a float32 array \[N, 1, 8, 8\], found dtype float64"):
        m(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"expected a float32 array \[N, 1, 8, 8\], found shape \[360, 1, 8, 4\]"):
        m(x[..., :4])
    with pytest.raises(ValueError, match=r"found shape \[1, 8, 8\]"):
        m(x[0])
    with pytest.raises(ValueError, match=r"expected a float32 array \[N, 1, 8, 8\], found a NoneType"):
        m(None)
    # An empty batch is an empty answer, as in PyTorch.
    assert m(x[:0]).shape == (0, 10)


def test_wrong_weights_raise_value_error_with_the_clis_message():
    mod = importlib.import_module("digits_resnet8")
    # Another model's file: the first tensor's shape, expected and found.
    with pytest.raises(ValueError, match=r"tensor `conv1.weight` has shape \[64, 3, 7, 7\], expected \[16, 1, 3, 3\]"):
        mod.Model(weights_path("resnet18"))
    state = load_file(weights_path("digits_resnet8"))
    # A key missing (saved under another name, as DataParallel does): named, with the closest key.
    state["module.layer1.0.conv1.weight"] = state.pop("layer1.0.conv1.weight")
    with pytest.raises(ValueError, match=r"missing tensor `layer1.0.conv1.weight` .*did you mean `module.layer1.0.conv1.weight`"):
        mod.Model.from_state_dict(state)
    state = load_file(weights_path("digits_resnet8"))
    state["layer1.0.bn1.bias"] = state["layer1.0.bn1.bias"][:3]
    with pytest.raises(ValueError, match=r"tensor `layer1.0.bn1.bias` has shape \[3\], expected \[16\]"):
        mod.Model.from_state_dict(state)
    with pytest.raises(ValueError, match="no-such-file"):
        mod.Model("no-such-file.safetensors")


THREADS_SCRIPT = """
import sys, threading, time
import numpy as np
import cifar_resnet20

m = cifar_resnet20.Model(sys.argv[1], threads=int(sys.argv[2]))
rng = np.random.default_rng(0)
inputs = [rng.standard_normal((8, 3, 32, 32), dtype=np.float32) for _ in range(4)]
m(inputs[0])  # warm-up
start = time.perf_counter()
sequential = [[m(x) for _ in range(10)][-1] for x in inputs]
t_seq = time.perf_counter() - start
results = [None] * 4

def call(i):
    for _ in range(10):
        results[i] = m(inputs[i])

workers = [threading.Thread(target=call, args=(i,)) for i in range(4)]
start = time.perf_counter()
for t in workers:
    t.start()
for t in workers:
    t.join()
t_par = time.perf_counter() - start
for r, s in zip(results, sequential):
    np.testing.assert_array_equal(r, s)
print(f"{t_seq * 1e3:.1f} {t_par * 1e3:.1f}")
"""


@pytest.mark.parametrize("pool_threads", [1, 2])
def test_threads_calling_one_model_match_sequential_calls_and_release_the_gil(pool_threads):
    """4 Python threads x 10 calls on one model give the sequential outputs. With a
    1-thread pool the wall time shows whether the GIL is released (2 cores: about half the
    sequential time if it is, the same if not); reported, not asserted. Own process: the
    pool's size is process-wide."""
    run = subprocess.run([sys.executable, "-c", THREADS_SCRIPT, weights_path("cifar_resnet20"), str(pool_threads)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    t_seq, t_par = map(float, run.stdout.split())
    print(f"\n4 Python threads x 10 calls, batch 8, cifar_resnet20, {pool_threads}-thread pool: "
          f"sequential {t_seq:.1f} ms, 4 threads at once {t_par:.1f} ms ({t_seq / t_par:.2f}x)")


def test_a_dataparallel_state_dict_loads_with_key_prefix_and_without_it_the_error_says_so():
    mod = importlib.import_module("cifar_resnet20")
    state = {f"module.{k}": v for k, v in load_file(weights_path("cifar_resnet20")).items()}
    with pytest.raises(ValueError, match=r"did you mean `module.conv1.weight`\?.*--key-prefix module.="):
        mod.Model.from_state_dict(state)
    m = mod.Model.from_state_dict(state, key_prefix=("module.", ""))
    x, y = golden("cifar_resnet20")
    assert_parity(m(x), y)
