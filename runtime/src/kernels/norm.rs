//! Inference batch normalisation with running statistics (`torch.nn.BatchNorm2d.eval()`).

use ndarray::{Array4, ArrayView4, Axis};

/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, per channel.
pub fn batch_norm(x: ArrayView4<f32>, weight: &[f32], bias: &[f32], mean: &[f32], var: &[f32], eps: f32) -> Array4<f32> {
    let mut y = x.to_owned();
    for mut sample in y.axis_iter_mut(Axis(0)) {
        for (c, mut plane) in sample.axis_iter_mut(Axis(0)).enumerate() {
            let scale = weight[c] / (var[c] + eps).sqrt();
            let shift = bias[c] - mean[c] * scale;
            plane.mapv_inplace(|v| v * scale + shift);
        }
    }
    y
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
