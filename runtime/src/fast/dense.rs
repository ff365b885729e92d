//! Fully connected layers (the classifiers: 512, 1280 or 2048 features -> 1000 classes)
//! on PyTorch's weight layout [out, in]: each output a dot product of two contiguous rows,
//! four registers of partial sums at a time ([`Vector`]), the outputs split over the
//! pool's threads. The reference ([`crate::kernels::linear_into`]) sums in order, one
//! float at a time: its add chain ran at a tenth of the speed (mobilenet_v2's 1280 x 1000
//! classifier took 10% of the model's time with AVX2 on a Zen 4).

use super::pool::{self, SharedMut};
use super::simd::Vector;
use super::Isa;

/// Multiply-adds below which a layer runs on the calling thread alone.
const SERIAL_MACS: usize = 1 << 16;

/// `y` [N, out] = `x` [N, in] times `weight`^T [out, in], plus `bias`.
#[allow(clippy::too_many_arguments)]
pub fn linear(isa: Isa, x: &[f32], n: usize, fin: usize, weight: &[f32], fout: usize, bias: Option<&[f32]>, y: &mut [f32]) {
    assert!(x.len() >= n * fin && weight.len() >= fout * fin && y.len() >= n * fout, "invariant: buffers match the layer");
    if let Some(b) = bias {
        assert!(b.len() >= fout, "invariant: a bias an output");
    }
    let threads = if n * fin * fout < SERIAL_MACS { 1 } else { pool::global().threads().min(fout).max(1) };
    let out = SharedMut::new(y.as_mut_ptr());
    let job = |t: usize| {
        let per = fout.div_ceil(threads);
        let (o0, o1) = ((t * per).min(fout), ((t + 1) * per).min(fout));
        if o0 < o1 {
            // SAFETY: the buffers match (asserted above); task t alone writes outputs
            // o0..o1 (of every sample) of `y`, which holds n * fout floats and outlives the
            // job (the pool returns when every task has finished).
            unsafe { dots_on(isa, x, n, fin, weight, fout, bias, o0..o1, out) };
        }
    };
    pool::run_first(threads, &job);
}

multiversion!(
    /// Outputs `range` of every sample, on `isa`.
    ///
    /// # Safety
    /// As [`dots`]'s, but for the ISA, which this checks.
    unsafe fn dots_on(
        x: &[f32],
        n: usize,
        fin: usize,
        weight: &[f32],
        fout: usize,
        bias: Option<&[f32]>,
        range: std::ops::Range<usize>,
        y: SharedMut,
    ) => dots::<simd>
);

/// Outputs `range` of every sample, a weight row at a time (in L1 for the N samples).
///
/// # Safety
/// The CPU supports `V`'s ISA; the buffers match (asserted by [`linear`]); no other task
/// writes outputs `range` of `y`, which holds N x `fout` floats and outlives the call.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dots<V: Vector>(
    x: &[f32],
    n: usize,
    fin: usize,
    weight: &[f32],
    fout: usize,
    bias: Option<&[f32]>,
    range: std::ops::Range<usize>,
    y: SharedMut,
) {
    let l = V::LANES;
    let (wide, whole) = (fin - fin % (4 * l), fin - fin % l);
    for o in range {
        let wr = &weight[o * fin..(o + 1) * fin];
        for b in 0..n {
            let xr = &x[b * fin..(b + 1) * fin];
            let mut acc = [V::splat(0.0); 4];
            // In bounds: `i + 4 * l <= wide <= fin`, `i + l <= whole <= fin` below.
            let mut i = 0;
            while i < wide {
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = V::load(xr.as_ptr().add(i + j * l)).mul_add(V::load(wr.as_ptr().add(i + j * l)), *a);
                }
                i += 4 * l;
            }
            while i < whole {
                acc[0] = V::load(xr.as_ptr().add(i)).mul_add(V::load(wr.as_ptr().add(i)), acc[0]);
                i += l;
            }
            let sum = acc[0].add(acc[1]).add(acc[2].add(acc[3]));
            let mut lanes = [0.0f32; 16];
            sum.store(lanes.as_mut_ptr());
            let mut dot: f32 = lanes[..l].iter().sum();
            for (a, w) in xr[whole..].iter().zip(&wr[whole..]) {
                dot += a * w;
            }
            let v = dot + bias.map_or(0.0, |bias| bias[o]);
            // The one write: output (b, o), inside `y` and this task's alone.
            *y.get().add(b * fout + o) = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::linear_into;

    /// Sizes around the registers (and below one), with and without bias, one and three
    /// samples, on every ISA here, against the reference's ordered sums.
    #[test]
    fn linear_matches_the_reference_on_every_isa() {
        for (n, fin, fout) in [(1, 1280, 1000), (3, 77, 13), (2, 5, 3), (1, 64, 10), (4, 512, 33), (1, 2048, 7)] {
            let x: Vec<f32> = (0..n * fin).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
            let w: Vec<f32> = (0..fout * fin).map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0).collect();
            let bias: Vec<f32> = (0..fout).map(|i| i as f32 / 7.0 - 0.5).collect();
            for bias in [None, Some(&bias[..])] {
                let mut want = vec![0.0; n * fout];
                linear_into(&x, n, fin, &w, fout, bias, &mut want);
                for isa in Isa::available() {
                    let mut got = vec![f32::NAN; n * fout];
                    linear(isa, &x, n, fin, &w, fout, bias, &mut got);
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - e).abs() <= 1e-5 * (fin as f32).sqrt() * e.abs().max(1.0),
                            "{n}x{fin}->{fout} ({isa}) [{i}]: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }
}
