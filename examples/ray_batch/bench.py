"""Prints a table of images/s: `infer --images` (one process) vs the Ray example (actors).
Called by bench.sh, which builds the `infer` binaries."""

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures"
PY = sys.executable

# name, weights, image size, --resize, images
MODELS = [
    ("cifar_resnet20", "cifar_resnet20/weights.safetensors", (32, 32), 32, 2048),
    ("resnet18", "resnet18/weights.safetensors", (500, 375), None, 256),
]


def make_images(folder, size, n):
    rng = np.random.default_rng(0)
    w, h = size
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for i in range(n):
        img = np.roll(base, i, axis=1) // 2 + rng.integers(0, 128, (h, w, 3), dtype=np.uint8)
        Image.fromarray(img, "RGB").save(os.path.join(folder, f"img_{i:05}.png"))


def infer_rate(name, weights, folder, resize, threads):
    cmd = [str(ROOT / "target" / "python" / f"{name}-infer"), "--weights", weights, "--images", folder,
           "--threads", str(threads), "--batch", "16", "--out", os.path.join(folder, "..", "infer.jsonl")]
    if resize:
        cmd += ["--resize", str(resize)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("scored"))
    return float(re.search(r"\(([\d.]+) images/s", line).group(1)), line


def ray_rate(name, weights, folder, resize, actors):
    cmd = [PY, str(ROOT / "examples" / "ray_batch" / "score.py"), "--module", name, "--weights", weights,
           "--images", folder, "--actors", str(actors), "--threads", "1", "--batch-size", "16",
           "--out", os.path.join(folder, "..", "ray.jsonl")]
    if resize:
        cmd += ["--resize", str(resize)]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    wall = time.perf_counter() - start
    line = next(x for x in out.stdout.splitlines() if x.startswith("scored"))
    return float(re.search(r"\(([\d.]+)/s\)", line).group(1)), wall, line


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the image counts")
    a = ap.parse_args()
    print("| model | images | how | images/s |")
    print("| --- | --- | --- | --- |")
    for name, weights, size, resize, n in MODELS:
        n = max(16, int(n * a.scale))
        weights = str(FIXTURES / weights)
        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, "imgs")
            os.mkdir(folder)
            make_images(folder, size, n)
            for threads in (1, 2):
                rate, _ = infer_rate(name, weights, folder, resize, threads)
                print(f"| {name} | {n} PNG {size[0]}x{size[1]} | infer --images, {threads} thread(s), batch 16 | {rate:.1f} |", flush=True)
            for actors in (1, 2):
                rate, wall, _ = ray_rate(name, weights, folder, resize, actors)
                print(f"| {name} | {n} PNG {size[0]}x{size[1]} | Ray Data, {actors} actor(s) x 1 thread, batch 16 "
                      f"(whole script incl. ray.init: {wall:.1f} s) | {rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
