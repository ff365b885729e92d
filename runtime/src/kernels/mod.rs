//! Plain kernels, one per IR op, with PyTorch's semantics, on NCHW ndarrays: the reference
//! interpreter calls them. They favour clarity over speed (im2col + a cache-friendly loop
//! GEMM). The few that generated code calls too (elementwise steps, linear, softmax) also
//! have a slice form (`*_into`: a caller-owned output, no allocation).

mod act;
mod conv;
mod dense;
mod norm;
mod pool;
mod window;

pub use act::{activation, activation_into, Activation};
pub use conv::{conv2d, conv2d_fused, fold_batch_norm, fold_batch_norm_input, Conv2dParams, Epilogue};
pub use dense::{add, add_into, flatten, linear, linear_into, pad_channels, scale_channels, scale_channels_by, softmax, softmax_into};
pub use norm::{batch_norm, layer_norm};
pub use pool::{avg_pool2d, global_avg_pool, max_pool2d, PoolParams};
pub use window::window_out;

/// `C[m x n] += A[m x k] * B[k x n]`, row-major slices.
pub(crate) fn gemm_acc(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    debug_assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    for i in 0..m {
        let c_row = &mut c[i * n..(i + 1) * n];
        for p in 0..k {
            let aip = a[i * k + p];
            if aip == 0.0 {
                continue;
            }
            let b_row = &b[p * n..(p + 1) * n];
            for (cv, bv) in c_row.iter_mut().zip(b_row) {
                *cv += aip * bv;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ndarray::Array4;

    /// A deterministic pseudo-random sequence in [-1, 1).
    pub fn seq(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    pub fn assert_close(a: &Array4<f32>, b: &Array4<f32>) {
        assert_eq!(a.dim(), b.dim());
        for (x, y) in a.iter().zip(b.iter()) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn gemm_matches_the_definition() {
        let (m, k, n) = (5, 7, 3);
        let a = seq(m * k, 1);
        let b = seq(k * n, 2);
        let mut c = vec![0.0; m * n];
        super::gemm_acc(m, k, n, &a, &b, &mut c);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-5);
            }
        }
    }
}
