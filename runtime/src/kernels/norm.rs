//! Inference batch normalisation with running statistics (`torch.nn.BatchNorm2d.eval()`).

use ndarray::{Array4, ArrayView4};

/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, per channel.
pub fn batch_norm(x: ArrayView4<f32>, weight: &[f32], bias: &[f32], mean: &[f32], var: &[f32], eps: f32) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let x = x.as_standard_layout();
    let mut y = Array4::<f32>::zeros((n, c, h, w));
    let ys = y.as_slice_mut().expect("invariant: a new array is contiguous");
    batch_norm_into(x.as_slice().expect("invariant: standard layout"), [n, c, h, w], weight, bias, mean, var, eps, ys);
    y
}

/// Layer normalisation over the channels at every pixel (`nn.LayerNorm(C)` on channels-
/// last data, torchvision's `LayerNorm2d`): `(x - mean) / sqrt(var + eps) * weight + bias`,
/// the mean and the biased variance taken over C.
pub fn layer_norm(x: ArrayView4<f32>, weight: &[f32], bias: &[f32], eps: f32) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let mut y = Array4::<f32>::zeros((n, c, h, w));
    for b in 0..n {
        for i in 0..h {
            for j in 0..w {
                // Sums in f64: the reference stays exact however many channels there are.
                let mean = (0..c).map(|k| f64::from(x[[b, k, i, j]])).sum::<f64>() / c as f64;
                let var = (0..c).map(|k| (f64::from(x[[b, k, i, j]]) - mean).powi(2)).sum::<f64>() / c as f64;
                let inv = 1.0 / (var + f64::from(eps)).sqrt();
                for k in 0..c {
                    y[[b, k, i, j]] = ((f64::from(x[[b, k, i, j]]) - mean) * inv) as f32 * weight[k] + bias[k];
                }
            }
        }
    }
    y
}

/// [`batch_norm`] on slices of [N, C, H, W] (`dims`).
#[allow(clippy::too_many_arguments)]
fn batch_norm_into(x: &[f32], dims: [usize; 4], weight: &[f32], bias: &[f32], mean: &[f32], var: &[f32], eps: f32, y: &mut [f32]) {
    let [n, c, h, w] = dims;
    let plane = h * w;
    for b in 0..n {
        for ch in 0..c {
            let scale = weight[ch] / (var[ch] + eps).sqrt();
            let shift = bias[ch] - mean[ch] * scale;
            let at = (b * c + ch) * plane;
            for (yv, xv) in y[at..at + plane].iter_mut().zip(&x[at..at + plane]) {
                *yv = xv * scale + shift;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_each_channel() {
        let x = Array4::from_shape_vec((1, 2, 1, 2), vec![1.0, 3.0, -2.0, 4.0]).unwrap();
        let y = batch_norm(x.view(), &[2.0, 1.0], &[0.5, 0.0], &[2.0, 1.0], &[4.0, 0.25], 0.0);
        let want = [(1.0 - 2.0) / 2.0 * 2.0 + 0.5, (3.0 - 2.0) / 2.0 * 2.0 + 0.5, (-2.0 - 1.0) / 0.5, (4.0 - 1.0) / 0.5];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
