//! A probe of this machine's peak FP32 FMA throughput: independent FMA chains in registers,
//! so that results can be stated as a fraction of the physical limit.

use std::time::Instant;

/// GFLOP/s of one thread running `iters` rounds of 12 independent 8-wide FMAs (AVX2+FMA),
/// or of the portable loop where that is not available.
pub fn single_thread_gflops(iters: usize) -> f64 {
    let start = Instant::now();
    let sink = run(iters);
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    (iters * 12 * 8 * 2) as f64 / secs / 1e9
}

/// GFLOP/s of `threads` threads running the probe at once (best of 3 runs).
pub fn peak_gflops(threads: usize, iters: usize) -> f64 {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads.max(1) {
                    s.spawn(|| std::hint::black_box(run(iters)));
                }
            });
            (threads.max(1) * iters * 12 * 8 * 2) as f64 / start.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

fn run(iters: usize) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::selected() >= super::Isa::Avx2 {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { run_avx2(iters) };
    }
    let mut acc = [[1.0f32; 8]; 12];
    let (a, b) = (std::hint::black_box(0.999_999f32), std::hint::black_box(1e-7f32));
    for _ in 0..iters {
        for lane in acc.iter_mut() {
            for v in lane.iter_mut() {
                *v = v.mul_add(a, b);
            }
        }
    }
    acc.iter().flatten().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
    let b = _mm256_set1_ps(std::hint::black_box(1e-7));
    let mut r = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        r[0] = _mm256_fmadd_ps(r[0], a, b);
        r[1] = _mm256_fmadd_ps(r[1], a, b);
        r[2] = _mm256_fmadd_ps(r[2], a, b);
        r[3] = _mm256_fmadd_ps(r[3], a, b);
        r[4] = _mm256_fmadd_ps(r[4], a, b);
        r[5] = _mm256_fmadd_ps(r[5], a, b);
        r[6] = _mm256_fmadd_ps(r[6], a, b);
        r[7] = _mm256_fmadd_ps(r[7], a, b);
        r[8] = _mm256_fmadd_ps(r[8], a, b);
        r[9] = _mm256_fmadd_ps(r[9], a, b);
        r[10] = _mm256_fmadd_ps(r[10], a, b);
        r[11] = _mm256_fmadd_ps(r[11], a, b);
    }
    let mut out = [0f32; 8];
    let mut s = r[0];
    for v in &r[1..] {
        s = _mm256_add_ps(s, *v);
    }
    // SAFETY: `out` holds 8 floats, what one 256-bit store writes.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
    out.iter().sum()
}
