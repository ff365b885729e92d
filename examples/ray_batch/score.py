"""Score a folder of images, or a NumPy array of inputs, with a resnetc model on Ray Data.

The model is a Python package emitted by `resnetc build SPEC --out DIR --python` and
installed with `pip install DIR` on every node. Each actor loads the model once and scores
batches; results keep the id of every input (the file name, or the row index).

    python score.py --module resnet18 --weights resnet18.safetensors \\
        --images photos/ --actors 2 --out results.jsonl
    python score.py --module digits_resnet8 --weights w.safetensors \\
        --npy inputs.npy --actors 2 --batch-size 64 --out results.jsonl

On a multi-node cluster, start Ray on the nodes (`ray start --head` on one, `ray start
--address=HEAD:6379` on the others), put the weights and the data on storage every node
sees at the same path, install the package on every node, and pass `--address auto` (or
`ray://HEAD:10001`). Nothing else changes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

import numpy as np
import ray

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class Scorer:
    """The callable class of `map_batches`: one model an actor, loaded once.

    A batch holds `id` and either `path` (image files, decoded and preprocessed here as
    `infer --images` does) or `row` (rows of the `.npy` file, memory-mapped once an actor).
    """

    def __init__(self, module: str, weights: str, threads: int = 1, npy: str | None = None,
                 resize: int | None = None, top: int = 5):
        self.mod = importlib.import_module(module)
        self.model = self.mod.Model(weights, threads=threads)
        self.inputs = np.load(npy, mmap_mode="r") if npy else None
        self.resize = resize
        self.top = top

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.inputs is not None:
            x = np.ascontiguousarray(self.inputs[batch["row"]], dtype=np.float32)
            ok = np.ones(len(x), dtype=bool)
            errors = [""] * len(x)
        else:
            x, ok, errors = load_images(self.mod, batch["path"], self.model.input_shape, self.resize)
        logits = np.zeros((len(x), self.model.classes), dtype=np.float32)
        if ok.any():
            logits[ok] = self.model(x[ok])
        order = np.argsort(-logits, axis=1, kind="stable")[:, : self.top]
        return {
            "id": batch["id"],
            "ok": ok,
            "error": np.array(errors, dtype=object),
            "top_class": order,
            "top_logit": np.take_along_axis(logits, order, axis=1),
            "logits": logits,
            "worker": np.full(len(x), os.getpid()),
        }


def load_images(mod, paths, input_shape, resize=None):
    """Decodes and preprocesses image files; unreadable ones are marked, not fatal."""
    x = np.zeros((len(paths), *input_shape), dtype=np.float32)
    ok = np.zeros(len(paths), dtype=bool)
    errors = [""] * len(paths)
    for i, p in enumerate(paths):
        try:
            x[i] = mod.load_image(str(p), resize=resize)
            ok[i] = True
        except ValueError as e:
            errors[i] = str(e)
    return x, ok, errors


def image_dataset(folder: str, block_rows: int = 64) -> ray.data.Dataset:
    """One row a `.jpg`/`.jpeg`/`.png` file of `folder`: its name as `id`, its path, in
    blocks of `block_rows` (blocks are what actors share out)."""
    # Regular files only: a folder or a pipe with an image's name is passed over.
    names = sorted(n for n in os.listdir(folder)
                   if n.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(folder, n)))
    items = [{"id": n, "path": os.path.join(folder, n)} for n in names]
    return ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // block_rows)))


def npy_dataset(path: str, block_rows: int = 1024) -> ray.data.Dataset:
    """One row an input of a `.npy` file [N, C, H, W]: its index as `id` and `row`, in
    blocks of `block_rows` (blocks are what actors share out)."""
    import pyarrow as pa

    ids = np.arange(np.load(path, mmap_mode="r").shape[0])
    # Built on the driver: no read tasks, which could wait for CPUs the actors hold.
    blocks = [pa.table({"id": ids[i:i + block_rows], "row": ids[i:i + block_rows]}) for i in range(0, len(ids), block_rows)]
    return ray.data.from_arrow(blocks)


def score(ds: ray.data.Dataset, module: str, weights: str, actors: int, batch_size: int,
          threads: int = 1, npy: str | None = None, resize: int | None = None,
          top: int = 5) -> ray.data.Dataset:
    """The scored dataset: `actors` actors, each with one model of `threads` threads."""
    return ds.map_batches(
        Scorer,
        fn_constructor_kwargs=dict(module=module, weights=weights, threads=threads, npy=npy,
                                   resize=resize, top=top),
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=threads,
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--module", required=True, help="the emitted package's import name")
    ap.add_argument("--weights", required=True, help="safetensors state_dict, at the same path on every node")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="a folder of .jpg/.jpeg/.png files")
    src.add_argument("--npy", help="a .npy file of float32 inputs [N, C, H, W]")
    ap.add_argument("--out", required=True, help="results, one JSON object a line")
    ap.add_argument("--actors", type=int, default=2, help="model replicas (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="threads each actor's model uses (default 1)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--resize", type=int, help="shorter side before the centre crop (images)")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--address", help="a Ray cluster to join (`auto`, `ray://HOST:10001`); default: start one here")
    a = ap.parse_args(argv)
    ray.init(address=a.address) if a.address else ray.init(num_cpus=max(a.actors * a.threads, 1))
    blocks = a.batch_size * 4
    ds = image_dataset(a.images, block_rows=blocks) if a.images else npy_dataset(a.npy, block_rows=blocks)
    start = time.perf_counter()
    rows = score(ds, a.module, a.weights, a.actors, a.batch_size, a.threads, a.npy, a.resize, a.top).take_all()
    secs = time.perf_counter() - start
    failed = 0
    with open(a.out + ".tmp", "w") as f:
        for r in rows:
            if not r["ok"]:
                failed += 1
                print(f"skipped {r['id']}: {r['error']}", file=sys.stderr)
                continue
            top = [{"class": int(c), "logit": float(v)} for c, v in zip(r["top_class"], r["top_logit"])]
            f.write(json.dumps({"id": r["id"] if isinstance(r["id"], str) else int(r["id"]), "top": top}) + "\n")
    os.replace(a.out + ".tmp", a.out)
    print(f"scored {len(rows) - failed} inputs in {secs:.2f} s ({(len(rows) - failed) / secs:.1f}/s) "
          f"with {a.actors} actors of {a.threads} thread(s); {failed} failed")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
