"""The Ray Data example on a local cluster: 2 actors, every result equal to scoring in one
process, ids preserved."""

import importlib
import sys

import numpy as np
import pytest
import ray
from PIL import Image
from safetensors.numpy import load_file

from conftest import FIXTURES, ROOT, weights_path

sys.path.insert(0, str(ROOT / "examples" / "ray_batch"))
import score  # noqa: E402  (the example under test)


@pytest.fixture(scope="module")
def cluster():
    # The actors import the example by name, as the driver does.
    example = str(ROOT / "examples" / "ray_batch")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": example}})
    yield
    ray.shutdown()


def digits(n):
    """The first n images of the digits dataset, as the model's input [N, 1, 8, 8]."""
    return np.ascontiguousarray(load_file(str(FIXTURES / "digits" / "dataset.safetensors"))["images"][:n], dtype=np.float32)


def test_npy_dataset_on_two_actors_equals_one_process(cluster, tmp_path):
    x = digits(64)
    path = str(tmp_path / "digits.npy")
    np.save(path, x)
    ds = score.score(score.npy_dataset(path, block_rows=16), "digits_resnet8", weights_path("digits_resnet8"), actors=2,
                     batch_size=8, npy=path, top=3)
    rows = ds.take_all()
    m = importlib.import_module("digits_resnet8").Model(weights_path("digits_resnet8"))
    expected = m(x)
    assert sorted(int(r["id"]) for r in rows) == list(range(64))
    for r in rows:
        i = int(r["id"])
        np.testing.assert_array_equal(r["logits"], expected[i])
        assert list(r["top_class"]) == list(np.argsort(-expected[i], kind="stable")[:3])
    print(f"\n64 rows in 4 blocks scored by {len({int(r['worker']) for r in rows})} of the 2 actors")


def test_image_folder_on_two_actors_equals_one_process(cluster, tmp_path):
    x = digits(64)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(64):
        Image.fromarray(np.round(x[i, 0] * 255).astype(np.uint8), "L").save(folder / f"{i:03}.png")
    (folder / "zz_corrupt.png").write_bytes(b"not a png")
    rows = score.score(score.image_dataset(str(folder), block_rows=16), "digits_resnet8", weights_path("digits_resnet8"),
                       actors=2, batch_size=16, resize=8).take_all()
    mod = importlib.import_module("digits_resnet8")
    m = mod.Model(weights_path("digits_resnet8"))
    assert sorted(r["id"] for r in rows) == [f"{i:03}.png" for i in range(64)] + ["zz_corrupt.png"]
    for r in rows:
        if r["id"] == "zz_corrupt.png":
            assert not r["ok"] and "zz_corrupt.png" in r["error"]
            continue
        assert r["ok"]
        expected = m(mod.load_image(str(folder / r["id"]), resize=8)[None])[0]
        np.testing.assert_array_equal(r["logits"], expected)
