//! Images in, model inputs out: decodes a JPEG or PNG and applies torchvision's evaluation
//! transform on a PIL image (`Resize`, `CenterCrop`, `ToTensor`, `Normalize`), reproduced
//! exactly by `runtime::preprocess` (see there for what "exactly" covers).

use std::path::Path;

use crate::runtime::ndarray::Array3;
use crate::runtime::preprocess::{Pixels, Preprocess};
use crate::Model;

/// Images larger than this many pixels are refused rather than decoded.
pub const MAX_PIXELS: u64 = 1 << 28;

/// The default preprocessing of this model's input (see `Preprocess::for_input`): for a
/// [3, 224, 224] model, `Resize(256)`, `CenterCrop(224)`, ImageNet's mean and std.
pub fn preprocess() -> Preprocess {
    Preprocess::for_input(Model::INPUT_SHAPE).unwrap_or(Preprocess {
        // A model that takes neither 1 nor 3 channels: `apply` reports it for every image.
        resize: 0,
        crop: [Model::INPUT_SHAPE[1], Model::INPUT_SHAPE[2]],
        channels: Model::INPUT_SHAPE[0],
        normalize: None,
    })
}

/// Decodes a JPEG or PNG file (the format is read from its bytes, not its name) into 8-bit
/// grey or RGB pixels, as PIL's `convert("L")` / `convert("RGB")` would see them: grey
/// images stay grey, alpha is dropped, palettes are expanded, 16-bit samples are scaled to 8.
pub fn decode(path: &Path) -> Result<Pixels, String> {
    let mut reader = image::ImageReader::open(path).map_err(|e| e.to_string())?.with_guessed_format().map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(1 << 16);
    limits.max_image_height = Some(1 << 16);
    limits.max_alloc = Some(4 * MAX_PIXELS);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| e.to_string())?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    if (width as u64) * (height as u64) > MAX_PIXELS {
        return Err(format!("{width}x{height} pixels is more than this program decodes ({MAX_PIXELS})"));
    }
    let grey = !img.color().has_color();
    let (channels, data) = if grey { (1, img.to_luma8().into_raw()) } else { (3, img.to_rgb8().into_raw()) };
    Ok(Pixels { width, height, channels, data })
}

/// One preprocessed image: the model's input [C, H, W].
pub type Input = Array3<f32>;

/// One image file as the model's input [C, H, W], preprocessed by `pre`.
pub fn load(path: &Path, pre: &Preprocess) -> Result<Input, String> {
    let pixels = decode(path)?;
    pre.apply(&pixels).map_err(|e| e.to_string())
}
