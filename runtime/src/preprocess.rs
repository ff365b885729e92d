//! Image preprocessing equal to what PyTorch users run on a PIL image:
//! `Resize(R)`, `CenterCrop(H, W)`, `ToTensor()`, `Normalize(mean, std)` (torchvision), where
//! `Resize` on a PIL image is Pillow's `Image.resize(size, BILINEAR)`.
//!
//! The resize reproduces Pillow's 8-bit resampler exactly (`libImaging/Resample.c`): a
//! triangle filter widened by the scale factor (antialiasing when shrinking), coefficients
//! normalised and rounded to 22-bit fixed point, a horizontal pass then a vertical pass,
//! each rounded and clamped to 8 bits. The output size and the crop offset follow
//! torchvision's rules (the long side truncated, the offset rounded half to even, as
//! Python's `round`). Decoding is not here: callers pass decoded 8-bit pixels.

use std::borrow::Cow;

use ndarray::Array3;

/// ImageNet's per-channel mean (torchvision's reference scripts), RGB.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation, RGB.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Decoded 8-bit pixels, row-major, `channels` interleaved (1 = grey, 3 = RGB).
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Pixels {
    /// Grey pixels from RGB ones, as Pillow's `convert("L")` (ITU-R 601-2 luma, 16-bit
    /// fixed point, rounded). Grey pixels are returned unchanged.
    pub fn to_grey(&self) -> Pixels {
        if self.channels == 1 {
            return self.clone();
        }
        let data = self
            .data
            .chunks_exact(self.channels)
            .map(|p| ((u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000) >> 16) as u8)
            .collect();
        Pixels { width: self.width, height: self.height, channels: 1, data }
    }

    /// RGB pixels from grey ones, as Pillow's `convert("RGB")`. RGB is returned unchanged.
    pub fn to_rgb(&self) -> Pixels {
        if self.channels == 3 {
            return self.clone();
        }
        let data = self.data.iter().flat_map(|&v| [v, v, v]).collect();
        Pixels { width: self.width, height: self.height, channels: 3, data }
    }
}

/// The preprocessing of one model input.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// The shorter side is resized to this (torchvision `Resize(int)`).
    pub resize: usize,
    /// The centre crop, [height, width]: the model's input size.
    pub crop: [usize; 2],
    /// 1 (grey) or 3 (RGB) channels.
    pub channels: usize,
    /// Per-channel mean and standard deviation, or none to keep [0, 1].
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

/// Why an image cannot be preprocessed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessError {
    #[error("the model takes {0} input channels; images give 1 (grey) or 3 (RGB)")]
    Channels(usize),
    #[error("the image is empty ({0}x{1} pixels)")]
    Empty(usize, usize),
    #[error("a resize to {0} is smaller than the crop {1}x{2}; the crop would need padding")]
    TooSmall(usize, usize, usize),
    #[error("the image is too large to resize ({0}x{1} pixels to a shorter side of {2})")]
    TooLarge(usize, usize, usize),
    #[error("pixel data has {found} bytes; a {width}x{height} image of {channels} channels has {expected}")]
    Length { width: usize, height: usize, channels: usize, expected: usize, found: usize },
}

impl Preprocess {
    /// The default transform for a model input [C, H, W]. ImageNet-sized inputs (a side of
    /// 112 or more) get torchvision's ImageNet evaluation transform: the shorter side
    /// resized to `max(H, W) * 256 / 224` (256 for a 224 model), then a centre crop of
    /// [H, W]. Small inputs (CIFAR's 32, the digits' 8) are usually fed at their native
    /// size: the shorter side is resized to `max(H, W)` (nothing changes for an image of
    /// that size), then the same crop. RGB models get ImageNet's mean and std; grey models
    /// keep [0, 1].
    pub fn for_input([c, h, w]: [usize; 3]) -> Result<Preprocess, PreprocessError> {
        if c != 1 && c != 3 {
            return Err(PreprocessError::Channels(c));
        }
        let side = h.max(w);
        let resize = if side >= 112 { side.saturating_mul(256) / 224 } else { side };
        let normalize = (c == 3).then_some((IMAGENET_MEAN, IMAGENET_STD));
        Ok(Preprocess { resize, crop: [h, w], channels: c, normalize })
    }

    /// Whether the transform itself is usable (the resize covers the crop), before any image.
    pub fn check(&self) -> Result<(), PreprocessError> {
        if self.channels != 1 && self.channels != 3 {
            return Err(PreprocessError::Channels(self.channels));
        }
        let [ch, cw] = self.crop;
        if self.resize < ch.max(cw) {
            return Err(PreprocessError::TooSmall(self.resize, ch, cw));
        }
        Ok(())
    }

    /// The tensor [C, H, W] for decoded pixels.
    pub fn apply(&self, pixels: &Pixels) -> Result<Array3<f32>, PreprocessError> {
        let (w, h, ch) = (pixels.width, pixels.height, pixels.channels);
        if ch != 1 && ch != 3 {
            return Err(PreprocessError::Channels(ch));
        }
        let expected = w.checked_mul(h).and_then(|n| n.checked_mul(ch)).unwrap_or(usize::MAX);
        if pixels.data.len() != expected {
            return Err(PreprocessError::Length { width: w, height: h, channels: ch, expected, found: pixels.data.len() });
        }
        if w == 0 || h == 0 {
            return Err(PreprocessError::Empty(w, h));
        }
        self.check()?;
        let [ch_, cw] = self.crop;
        // Converted only when the channels differ (images can be large).
        let px: Cow<Pixels> = match (self.channels, pixels.channels) {
            (a, b) if a == b => Cow::Borrowed(pixels),
            (1, _) => Cow::Owned(pixels.to_grey()),
            _ => Cow::Owned(pixels.to_rgb()),
        };
        let (rw, rh) = resized_size(w, h, self.resize).ok_or(PreprocessError::TooLarge(w, h, self.resize))?;
        let resized = if (rw, rh) == (w, h) { px } else { Cow::Owned(resize_bilinear(&px, rw, rh)) };
        let (top, left) = (center_offset(rh, ch_), center_offset(rw, cw));
        let c = self.channels;
        let mut out = Array3::<f32>::zeros((c, ch_, cw));
        for y in 0..ch_ {
            for x in 0..cw {
                for k in 0..c {
                    // ToTensor: the byte as f32 divided by 255; Normalize: (x - mean) / std,
                    // both in f32, as torchvision computes them.
                    let v = f32::from(resized.data[((top + y) * rw + left + x) * c + k]) / 255.0;
                    out[[k, y, x]] = match &self.normalize {
                        Some((mean, std)) => (v - mean[k]) / std[k],
                        None => v,
                    };
                }
            }
        }
        Ok(out)
    }
}

/// torchvision's `Resize(short)` output size for a `w` x `h` image: the shorter side
/// becomes `short`, the longer `int(short * long / short_side)` (truncated). `None` when
/// the result would be absurdly large (more than 2^28 pixels).
pub fn resized_size(w: usize, h: usize, short: usize) -> Option<(usize, usize)> {
    let (s, l) = if w <= h { (w, h) } else { (h, w) };
    // Python computes `short * long` exactly, then a correctly rounded division.
    let long = ((short as u128 * l as u128) as f64 / s as f64) as usize;
    let (nw, nh) = if w <= h { (short, long) } else { (long, short) };
    nw.checked_mul(nh).filter(|&n| n <= 1 << 28 && n > 0).map(|_| (nw, nh))
}

/// torchvision's centre-crop offset: `int(round((size - crop) / 2.0))`, ties to even.
fn center_offset(size: usize, crop: usize) -> usize {
    ((size - crop) as f64 / 2.0).round_ties_even() as usize
}

/// Pillow's fixed-point precision for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's resampling coefficients for one axis: for each output index, the first input
/// index and the fixed-point weights of the inputs it reads.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    // The triangle (bilinear) filter has support 1, widened when shrinking.
    let support = filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's `(int)` truncates toward zero; the operands here are > -1 when negative.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) * ss).abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|&k| {
                    let k = if total != 0.0 { k / total } else { k };
                    let v = k * f64::from(1u32 << PRECISION_BITS);
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

/// Rounds a fixed-point sum to a byte, as Pillow's `clip8`.
fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Pillow's `Image.resize((out_w, out_h), Image.BILINEAR)` on 8-bit pixels.
pub fn resize_bilinear(px: &Pixels, out_w: usize, out_h: usize) -> Pixels {
    let c = px.channels;
    if px.width == out_w && px.height == out_h {
        return px.clone();
    }
    let round = 1i64 << (PRECISION_BITS - 1);
    // Horizontal pass first (only where the width changes), then vertical, as Pillow does.
    let mut cur = px.clone();
    if out_w != px.width {
        let coef = coefficients(px.width, out_w);
        let mut data = vec![0u8; out_w * px.height * c];
        for y in 0..px.height {
            let row = &cur.data[y * px.width * c..(y + 1) * px.width * c];
            for (x, (xmin, k)) in coef.iter().enumerate() {
                for ch in 0..c {
                    let mut ss = round;
                    for (i, &kv) in k.iter().enumerate() {
                        ss += i64::from(row[(xmin + i) * c + ch]) * i64::from(kv);
                    }
                    data[(y * out_w + x) * c + ch] = clip8(ss);
                }
            }
        }
        cur = Pixels { width: out_w, height: px.height, channels: c, data };
    }
    if out_h != px.height {
        let coef = coefficients(px.height, out_h);
        let w = cur.width;
        let mut data = vec![0u8; w * out_h * c];
        for (y, (ymin, k)) in coef.iter().enumerate() {
            for x in 0..w * c {
                let mut ss = round;
                for (i, &kv) in k.iter().enumerate() {
                    ss += i64::from(cur.data[(ymin + i) * w * c + x]) * i64::from(kv);
                }
                data[y * w * c + x] = clip8(ss);
            }
        }
        cur = Pixels { width: w, height: out_h, channels: c, data };
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_size_truncates_the_long_side_like_torchvision() {
        // int(256 * 500 / 375) = int(341.33) = 341; portrait keeps the orientation.
        assert_eq!(resized_size(500, 375, 256), Some((341, 256)));
        assert_eq!(resized_size(375, 500, 256), Some((256, 341)));
        assert_eq!(resized_size(640, 640, 256), Some((256, 256)));
        assert_eq!(resized_size(1, 1 << 30, 256), None);
    }

    #[test]
    fn crop_offset_rounds_half_to_even_like_python() {
        // round(58.5) = 58 and round(59.5) = 60 in Python; f64::round would give 59 and 60.
        assert_eq!(center_offset(341, 224), 58);
        assert_eq!(center_offset(343, 224), 60);
        assert_eq!(center_offset(256, 224), 16);
    }

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (i, o) in [(500, 341), (375, 256), (7, 3), (3, 7), (256, 256)] {
            for (_, k) in coefficients(i, o) {
                let s: i64 = k.iter().map(|&v| i64::from(v)).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= k.len() as i64, "{i}->{o}: {s}");
            }
        }
    }

    #[test]
    fn a_constant_image_stays_constant() {
        let px = Pixels { width: 37, height: 23, channels: 3, data: vec![200; 37 * 23 * 3] };
        let r = resize_bilinear(&px, 11, 50);
        assert!(r.data.iter().all(|&v| v == 200));
    }

    #[test]
    fn grey_follows_pillows_luma() {
        let px = Pixels { width: 2, height: 1, channels: 3, data: vec![255, 0, 0, 10, 200, 30] };
        // Pillow: convert("L") of (255,0,0) is 76 and of (10,200,30) is 124.
        assert_eq!(px.to_grey().data, vec![76, 124]);
    }

    #[test]
    fn bad_pixels_are_errors_not_panics() {
        let p = Preprocess::for_input([3, 224, 224]).unwrap();
        let short = Pixels { width: 4, height: 4, channels: 3, data: vec![0; 5] };
        assert!(matches!(p.apply(&short), Err(PreprocessError::Length { .. })));
        let empty = Pixels { width: 0, height: 4, channels: 3, data: vec![] };
        assert!(matches!(p.apply(&empty), Err(PreprocessError::Empty(0, 4))));
        assert!(matches!(Preprocess::for_input([4, 8, 8]), Err(PreprocessError::Channels(4))));
        let tiny = Preprocess { resize: 8, ..p };
        let px = Pixels { width: 4, height: 4, channels: 3, data: vec![0; 48] };
        assert!(matches!(tiny.apply(&px), Err(PreprocessError::TooSmall(8, 224, 224))));
    }

    #[test]
    fn small_models_are_fed_at_their_native_size() {
        assert_eq!(Preprocess::for_input([3, 32, 32]).unwrap().resize, 32);
        assert_eq!(Preprocess::for_input([1, 8, 8]).unwrap().resize, 8);
        assert_eq!(Preprocess::for_input([3, 160, 200]).unwrap().resize, 228);
    }

    #[test]
    fn imagenet_transform_of_a_224_model_resizes_to_256() {
        let p = Preprocess::for_input([3, 224, 224]).unwrap();
        assert_eq!(p.resize, 256);
        let px = Pixels { width: 500, height: 375, channels: 3, data: (0..500 * 375 * 3).map(|i| (i % 251) as u8).collect() };
        let t = p.apply(&px).unwrap();
        assert_eq!(t.dim(), (3, 224, 224));
        assert!(t.iter().all(|v| v.is_finite()));
    }
}
