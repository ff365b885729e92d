//! Images in, model inputs out: decodes a JPEG or PNG and applies torchvision's evaluation
//! transform on a PIL image (`Resize`, `CenterCrop`, `ToTensor`, `Normalize`), reproduced
//! exactly by `runtime::preprocess` (see there for what "exactly" covers).

use std::path::Path;

use crate::runtime::ndarray::Array3;
use crate::runtime::preprocess::{Pixels, Preprocess};
use crate::Model;

/// Images with more pixels are refused before decoding: Pillow's decompression-bomb
/// threshold (`Image.MAX_IMAGE_PIXELS`).
pub const MAX_PIXELS: u64 = 89_478_485;

/// The default preprocessing of this model's input (see `Preprocess::for_input`): for a
/// [3, 224, 224] model, `Resize(256)`, `CenterCrop(224)`, ImageNet's mean and std.
pub fn preprocess() -> Preprocess {
    Preprocess::for_input(Model::INPUT_SHAPE).unwrap_or(Preprocess {
        // A model that takes neither 1 nor 3 channels: `check` reports it.
        resize: 0,
        crop: [Model::INPUT_SHAPE[1], Model::INPUT_SHAPE[2]],
        channels: Model::INPUT_SHAPE[0],
        normalize: None,
    })
}

/// Decodes a JPEG or PNG file (the format is read from its bytes, not its name) into 8-bit
/// grey or RGB pixels as PIL's `convert("L")` / `convert("RGB")` sees them: grey stays
/// grey, alpha is dropped, palettes are expanded; 16-bit samples as Pillow reads them
/// (grey clipped to 255, colour by the high byte). A JPEG without its end marker (a cut
/// file) is an error, as in Pillow.
pub fn decode(path: &Path) -> Result<Pixels, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let reader = image::ImageReader::new(std::io::Cursor::new(&bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let format = reader.format();
    let (width, height) = reader.into_dimensions().map_err(|e| e.to_string())?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(format!("{width}x{height} pixels is more than this program decodes ({MAX_PIXELS}, as Pillow)"));
    }
    if format == Some(image::ImageFormat::Jpeg) && !bytes.windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err("the JPEG is truncated (it has no end-of-image marker)".into());
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    reader.no_limits();
    let img = reader.decode().map_err(|e| e.to_string())?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let (channels, data) = match img {
        image::DynamicImage::ImageLuma16(b) => (1, b.into_raw().into_iter().map(|v| v.min(255) as u8).collect()),
        image::DynamicImage::ImageLumaA16(b) => (1, b.into_raw().chunks_exact(2).map(|p| p[0].min(255) as u8).collect()),
        image::DynamicImage::ImageRgb16(b) => (3, b.into_raw().into_iter().map(|v| (v >> 8) as u8).collect()),
        image::DynamicImage::ImageRgba16(b) => (3, b.into_raw().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]].map(|v| (v >> 8) as u8)).collect()),
        img if !img.color().has_color() => (1, img.to_luma8().into_raw()),
        img => (3, img.to_rgb8().into_raw()),
    };
    Ok(Pixels { width, height, channels, data })
}

/// One preprocessed image: the model's input [C, H, W].
pub type Input = Array3<f32>;

/// One image file as the model's input [C, H, W], preprocessed by `pre`.
pub fn load(path: &Path, pre: &Preprocess) -> Result<Input, String> {
    let pixels = decode(path)?;
    pre.apply(&pixels).map_err(|e| e.to_string())
}

/// Parses `--mean`/`--std`: one value a channel, comma-separated.
pub fn parse_channels(s: &str, channels: usize) -> Result<[f32; 3], String> {
    let v: Vec<f32> = s.split(',').map(|x| x.trim().parse::<f32>()).collect::<Result<_, _>>().map_err(|_| format!("`{s}`: expected {channels} numbers, comma-separated"))?;
    if v.len() != channels || v.iter().any(|x| !x.is_finite()) {
        return Err(format!("`{s}`: expected {channels} finite numbers (one a channel)"));
    }
    let mut out = [0.0; 3];
    out[..channels].copy_from_slice(&v);
    Ok(out)
}
