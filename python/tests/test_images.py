"""Image preprocessing against torchvision's evaluation transform on a PIL image, and
`infer --images` on a folder with a corrupt file.

torchvision itself is not installed here (its wheels pull in PyTorch); `torchvision_eval`
below is the code path torchvision 0.29 takes for a PIL image, step by step: `Resize(256)`
computes the size (`_compute_resized_output_size`) and calls Pillow's `Image.resize(size,
BILINEAR)`, `CenterCrop(224)` rounds the offset with Python's `round` and calls
`Image.crop`, `ToTensor` divides the bytes by 255 in float32, `Normalize` subtracts and
divides in float32. The resampling, the part that decides the numbers, is Pillow's own.
"""

import importlib
import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import assert_parity, golden, weights_path

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def torchvision_eval(img, resize=256, crop=224, normalize=True):
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = resize, int(resize * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    if size != (w, h):
        img = img.resize(size, Image.BILINEAR)
    top = int(round((img.size[1] - crop) / 2.0))
    left = int(round((img.size[0] - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    x = np.asarray(img, dtype=np.float32) / np.float32(255)
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    if normalize:
        x = (x - MEAN[:, None, None]) / STD[:, None, None]
    return x


def photo_like(w, h, seed):
    """Edges (a grid, a disc, diagonal stripes), gradients and noise: what resizing changes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 255 * (xx / w)
    g = 255 * ((((xx // 17) + (yy // 13)) % 2) * 0.7 + 0.1)
    b = np.where((xx - w / 3) ** 2 + (yy - h / 2) ** 2 < (min(w, h) / 4) ** 2, 230.0, 20.0)
    b = b + 60 * (((xx + yy) // 9) % 2)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 25, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def resnet18_model():
    return importlib.import_module("resnet18").Model(weights_path("resnet18"), threads=2)


@pytest.mark.parametrize("w,h", [(500, 375), (375, 500), (341, 517), (256, 256), (224, 300)])
def test_png_preprocessing_and_output_match_torchvision(tmp_path, resnet18_model, w, h):
    mod = importlib.import_module("resnet18")
    img = photo_like(w, h, seed=w * 1000 + h)
    path = tmp_path / f"photo_{w}x{h}.png"
    img.save(path)
    ref = torchvision_eval(Image.open(path).convert("RGB"))
    ours = mod.load_image(str(path))
    assert ours.shape == ref.shape == (3, 224, 224)
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(mod.preprocess(np.asarray(img)), ref)
    out_ref = resnet18_model(ref[None])
    out = resnet18_model(ours[None])
    assert_parity(out, out_ref)


def test_grey_and_palette_pngs_follow_pils_convert(tmp_path):
    mod = importlib.import_module("resnet18")
    rgb = photo_like(300, 260, seed=7)
    for mode in ["L", "P", "RGBA", "LA"]:
        path = tmp_path / f"img_{mode}.png"
        rgb.convert(mode).save(path)
        ref = torchvision_eval(Image.open(path).convert("RGB"))
        np.testing.assert_array_equal(mod.load_image(str(path)), ref, err_msg=mode)
    # A grey model reads grey: PIL's convert("L") of an RGB file.
    digits = importlib.import_module("digits_resnet8")
    path = tmp_path / "rgb.png"
    photo_like(40, 30, seed=3).save(path)
    ref = torchvision_eval(Image.open(path).convert("L"), resize=8, crop=8, normalize=False)
    np.testing.assert_array_equal(digits.load_image(str(path), resize=8), ref)
    # Small models default to their own size (Resize(8) here), not an ImageNet-style 9.
    np.testing.assert_array_equal(digits.load_image(str(path)), ref)


def test_mean_and_std_can_be_set_or_turned_off(tmp_path):
    mod = importlib.import_module("cifar_resnet20")
    path = tmp_path / "small.png"
    photo_like(45, 38, seed=5).save(path)
    img = Image.open(path).convert("RGB")
    plain = torchvision_eval(img, resize=32, crop=32, normalize=False)
    np.testing.assert_array_equal(mod.load_image(str(path), mean=[], std=[]), plain)
    mean, std = [0.4914, 0.4822, 0.4465], [0.247, 0.243, 0.261]
    m32, s32 = np.array(mean, np.float32)[:, None, None], np.array(std, np.float32)[:, None, None]
    np.testing.assert_array_equal(mod.load_image(str(path), mean=mean, std=std), (plain - m32) / s32)
    with pytest.raises(ValueError, match=r"mean: expected 3 finite values"):
        mod.load_image(str(path), mean=[0.5])
    with pytest.raises(ValueError, match=r"resize to 10 is smaller than the crop 32x32"):
        mod.load_image(str(path), resize=10)


def test_sixteen_bit_pngs_read_as_pillow_reads_them(tmp_path):
    mod = importlib.import_module("resnet18")
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 400, (300, 260)).astype(np.uint16)  # values above 255 clip in Pillow
    path = tmp_path / "grey16.png"
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode == "I;16"
    ref = torchvision_eval(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(mod.load_image(str(path)), ref)


def test_jpeg_decoding_difference_is_reported(tmp_path, resnet18_model):
    """JPEG decoders may differ by a level here and there (ours is the `image` crate's,
    Pillow's is libjpeg-turbo): measured and printed, bounded loosely."""
    mod = importlib.import_module("resnet18")
    path = tmp_path / "photo.jpg"
    photo_like(500, 375, seed=11).save(path, quality=90)
    ref = torchvision_eval(Image.open(path).convert("RGB"))
    ours = mod.load_image(str(path))
    out_ref, out = resnet18_model(ref[None]), resnet18_model(ours[None])
    px = float(np.abs(ours - ref).max() * STD.max() * 255)
    rel = float(np.abs(out - out_ref).max() / max(1.0, np.abs(out_ref).max()))
    print(f"\nJPEG 500x375: max pixel difference {px:.1f} levels, output difference {rel:.2g} of its scale")
    assert px <= 8 and rel <= 1e-2


def test_infer_images_scores_every_readable_file_and_reports_the_bad_one(tmp_path, digits_infer):
    digits = importlib.import_module("digits_resnet8")
    x, _ = golden("digits_resnet8")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.round(x[i, 0] * 255).astype(np.uint8), "L").save(folder / f"digit_{i:02}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    (folder / "notes.txt").write_text("not an image")
    (folder / "folder.png").mkdir()
    os.mkfifo(folder / "pipe.png")  # would block a reader forever: passed over
    jpeg = tmp_path / "whole.jpg"
    photo_like(64, 48, seed=1).save(jpeg, quality=90)
    (folder / "cut.jpg").write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) * 9 // 10])
    out = tmp_path / "results.jsonl"
    run = subprocess.run(
        [digits_infer, "--weights", weights_path("digits_resnet8"), "--images", str(folder), "--resize", "8",
         "--batch", "5", "--top", "3", "--threads", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert "broken.png" in run.stderr and "2 of 14 images could not be read" in run.stderr
    assert "cut.jpg: the JPEG is truncated" in run.stderr
    assert "pipe.png: not a regular file" in run.stderr and "folder.png: not a regular file" in run.stderr
    assert "scored 12 images" in run.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["file"] for r in rows] == [f"digit_{i:02}.png" for i in range(12)]
    m = digits.Model(weights_path("digits_resnet8"))
    for r in rows:
        logits = m(digits.load_image(str(folder / r["file"]), resize=8)[None])[0]
        assert [t["class"] for t in r["top"]] == list(np.argsort(-logits, kind="stable")[:3])
        np.testing.assert_allclose([t["logit"] for t in r["top"]], np.sort(logits)[::-1][:3], rtol=1e-5, atol=1e-5)
    # A results file that cannot be written is refused before scoring; so is a tensor
    # output named like results.
    for bad, msg in [(tmp_path / "missing" / "r.jsonl", "does not exist"), (folder, "is a folder")]:
        run = subprocess.run([digits_infer, "--images", str(folder), "--out", str(bad)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 1 and msg in run.stderr and "scored" not in run.stdout, run.stderr
    run = subprocess.run([digits_infer, "--image", str(folder / "digit_00.png"), "--out", str(tmp_path / "x.jsonl")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "results of --images" in run.stderr, run.stderr
    # CSV, and a clean folder exits 0.
    for bad in ["broken.png", "cut.jpg", "pipe.png"]:
        (folder / bad).unlink()
    csv = tmp_path / "results.csv"
    run = subprocess.run([digits_infer, "--weights", weights_path("digits_resnet8"), "--images", str(folder),
                          "--resize", "8", "--top", "2", "--out", str(csv)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = csv.read_text().splitlines()
    assert lines[0] == "file,rank,class,label,logit" and len(lines) == 1 + 12 * 2
    assert lines[1].startswith("digit_00.png,1,")
