//! A cache-blocked GEMM, `C[m x n] = A[m x k] * B[k x n]` (+ bias, residual, activation),
//! with A packed once (at load) and B packed per KC x NC block into a per-task buffer.

use super::microkernel::{tile, TileOps};
use super::pool::SharedMut as Out;
use crate::kernels::Activation;

/// Rows of A a micro-kernel covers.
pub const MR: usize = 6;
/// Columns of B a micro-kernel covers.
pub const NR: usize = 16;
/// Depth of a K block: an A panel (6 x 256) stays in L1.
pub const KC: usize = 256;
/// Width of an N block: a packed B block (256 x 512) stays in L2.
pub const NC: usize = 512;

/// Floats of B-packing buffer one task needs.
pub fn pack_buffer_len() -> usize {
    KC * NC
}

/// Packs rows `[0, m)` of A (row-major, `k` columns) into panels of MR rows, k-major inside
/// a panel (`panel[p * MR + r] = A[i * MR + r][p]`), zero-padding the last panel.
pub(crate) fn pack_a(a: &[f32], m: usize, k: usize) -> Vec<f32> {
    let panels = m.div_ceil(MR);
    let mut out = vec![0f32; panels * k * MR];
    for i in 0..panels {
        for r in 0..MR {
            let row = i * MR + r;
            if row >= m {
                continue;
            }
            for p in 0..k {
                out[(i * k + p) * MR + r] = a[row * k + p];
            }
        }
    }
    out
}

/// Where B comes from: a dense row-major matrix, or the im2col of an image, gathered while
/// packing so that the unfolded matrix is never written out.
#[derive(Clone, Copy)]
pub(crate) enum BSource<'a> {
    /// `k` rows of `n` floats.
    Dense(&'a [f32]),
    /// One group of one sample: [C, H, W], unfolded by a `kernel` window with `params`
    /// into rows (c, ky, kx) and columns (oy, ox) of an `ow`-wide output.
    Im2col { x: &'a [f32], h: usize, w: usize, kernel: usize, params: crate::kernels::Conv2dParams, ow: usize },
}

/// Packs `B[k0..k0+kc][n0..n0+nc]` (`n` columns) into panels of NR columns: panel `j`
/// holds `kc` rows of NR floats for columns `n0 + j*NR ..`, zero beyond `nc`.
fn pack_b(b: BSource<'_>, n: usize, k0: usize, kc: usize, n0: usize, nc: usize, out: &mut [f32]) {
    let padded = nc.div_ceil(NR) * NR;
    match b {
        BSource::Dense(b) => {
            // Panel by panel: contiguous writes, one 16-float row of B at a time.
            let full = nc / NR;
            for j in 0..full {
                let dst = &mut out[j * kc * NR..(j + 1) * kc * NR];
                for (p, d) in dst.chunks_exact_mut(NR).enumerate() {
                    let at = (k0 + p) * n + n0 + j * NR;
                    copy16(d, &b[at..at + NR]);
                }
            }
            if full * NR < nc {
                for p in 0..kc {
                    let at = (k0 + p) * n + n0 + full * NR;
                    put(out, kc, p, full * NR, Run::Slice(&b[at..at + nc - full * NR]));
                    put(out, kc, p, nc, Run::Zeros(padded - nc));
                }
            }
        }
        BSource::Im2col { x, h, w, kernel, params, ow } => {
            let (s, pad) = (params.stride as isize, params.padding as isize);
            let kk = kernel * kernel;
            let (first_row, last_row) = (n0 / ow, (n0 + nc - 1) / ow);
            for p in 0..kc {
                let row = k0 + p;
                let (ci, ky, kx) = (row / kk, row % kk / kernel, row % kernel);
                let (dy, dx) = ((ky * params.dilation) as isize, (kx * params.dilation) as isize);
                let plane = &x[ci * h * w..(ci + 1) * h * w];
                // Each output row in the block reads one input row (or padding).
                for oy in first_row..=last_row {
                    let c0 = (oy * ow).max(n0);
                    let c1 = ((oy + 1) * ow).min(n0 + nc);
                    let (rel, len, ox0) = (c0 - n0, c1 - c0, c0 - oy * ow);
                    let iy = oy as isize * s + dy - pad;
                    if iy < 0 || iy >= h as isize {
                        put(out, kc, p, rel, Run::Zeros(len));
                        continue;
                    }
                    let line = &plane[iy as usize * w..(iy as usize + 1) * w];
                    let ix0 = ox0 as isize * s + dx - pad;
                    if s == 1 {
                        let lo = (-ix0).clamp(0, len as isize) as usize;
                        let hi = (w as isize - ix0).clamp(lo as isize, len as isize) as usize;
                        put(out, kc, p, rel, Run::Zeros(lo));
                        put(out, kc, p, rel + lo, Run::Slice(&line[(ix0 + lo as isize) as usize..(ix0 + hi as isize) as usize]));
                        put(out, kc, p, rel + hi, Run::Zeros(len - hi));
                    } else {
                        put(out, kc, p, rel, Run::Strided { line, start: ix0, step: s, len });
                    }
                }
                put(out, kc, p, nc, Run::Zeros(padded - nc));
            }
        }
    }
}

/// Copies exactly NR floats (a fixed size, so no call to memcpy).
#[inline(always)]
fn copy16(dst: &mut [f32], src: &[f32]) {
    let d: &mut [f32; NR] = dst.try_into().expect("invariant: a packed row holds NR floats");
    let s: &[f32; NR] = src.try_into().expect("invariant: a source run of NR floats");
    *d = *s;
}

/// Values for consecutive columns of one packed row.
enum Run<'a> {
    Zeros(usize),
    Slice(&'a [f32]),
    /// `line[start + i * step]` for `i < len`, zero outside the line.
    Strided {
        line: &'a [f32],
        start: isize,
        step: isize,
        len: usize,
    },
}

/// Writes `run` into row `p` of the packed block from column `col` on, crossing panels.
fn put(out: &mut [f32], kc: usize, p: usize, col: usize, run: Run<'_>) {
    let len = match run {
        Run::Zeros(l) | Run::Strided { len: l, .. } => l,
        Run::Slice(s) => s.len(),
    };
    let mut done = 0;
    while done < len {
        let c = col + done;
        let (panel, lane) = (c / NR, c % NR);
        let take = (NR - lane).min(len - done);
        let at = panel * kc * NR + p * NR + lane;
        let dst = &mut out[at..at + take];
        match run {
            Run::Zeros(_) => dst.fill(0.0),
            Run::Slice(s) if take == NR => copy16(dst, &s[done..done + NR]),
            Run::Slice(s) => dst.copy_from_slice(&s[done..done + take]),
            Run::Strided { line, start, step, .. } => {
                for (i, v) in dst.iter_mut().enumerate() {
                    let ix = start + (done + i) as isize * step;
                    *v = if ix >= 0 && (ix as usize) < line.len() { line[ix as usize] } else { 0.0 };
                }
            }
        }
        done += take;
    }
}

/// The epilogue of a GEMM.
#[derive(Clone, Copy)]
pub(crate) struct Epi<'a> {
    pub bias: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
    pub act: Option<Activation>,
}

/// `C = A * B` with the epilogue; `a` is packed by [`pack_a`]; `pack` holds at least
/// `threads * pack_buffer_len()` floats for the global pool's threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(m: usize, k: usize, n: usize, a: &[f32], b: BSource<'_>, c: &mut [f32], epi: Epi<'_>, pack: &mut [f32]) {
    debug_assert!(a.len() >= m.div_ceil(MR) * k * MR && c.len() >= m * n);
    let pool = super::pool::global();
    let threads = pool.threads();
    let work = m * n * k;
    let tasks = if work < 200_000 { 1 } else { threads.min(pack.len() / pack_buffer_len()).max(1) };
    let m_panels = m.div_ceil(MR);
    // Split columns when there are enough of them, else rows (panels of A).
    let split_n = n >= tasks * NR * 4 || m_panels < tasks;
    let out = Out::new(c.as_mut_ptr());
    let run = |t: usize, buf: &mut [f32]| {
        let (m_range, n_range) = if split_n {
            let per = n.div_ceil(tasks).div_ceil(NR) * NR;
            ((0, m_panels), (t * per, ((t + 1) * per).min(n)))
        } else {
            let per = m_panels.div_ceil(tasks);
            ((t * per, ((t + 1) * per).min(m_panels)), (0, n))
        };
        if m_range.0 >= m_range.1 || n_range.0 >= n_range.1 {
            return;
        }
        block(m, k, n, a, b, out, epi, buf, m_range, n_range);
    };
    if tasks == 1 {
        run(0, &mut pack[..pack_buffer_len()]);
    } else {
        let bufs = Out::new(pack.as_mut_ptr());
        pool.run(&|t| {
            if t < tasks {
                // SAFETY: task t alone uses the t-th buffer of `pack`, which holds `tasks` of them.
                let buf = unsafe { std::slice::from_raw_parts_mut(bufs.get().add(t * pack_buffer_len()), pack_buffer_len()) };
                run(t, buf);
            }
        });
    }
}

/// The tiles of panels `m_range` x columns `n_range`.
#[allow(clippy::too_many_arguments)]
fn block(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: BSource<'_>,
    out: Out,
    epi: Epi<'_>,
    buf: &mut [f32],
    m_range: (usize, usize),
    n_range: (usize, usize),
) {
    let c = out.get();
    let mut n0 = n_range.0;
    while n0 < n_range.1 {
        let nc = NC.min(n_range.1 - n0);
        let mut k0 = 0;
        while k0 < k {
            let kc = KC.min(k - k0);
            pack_b(b, n, k0, kc, n0, nc, buf);
            let ops = TileOps { first: k0 == 0, last: k0 + kc == k, act: epi.act };
            for i in m_range.0..m_range.1 {
                let a_panel = &a[(i * k + k0) * MR..(i * k + k0 + kc) * MR];
                let rows = MR.min(m - i * MR);
                let mut bias = [0f32; MR];
                if let Some(bv) = epi.bias {
                    bias[..rows].copy_from_slice(&bv[i * MR..i * MR + rows]);
                }
                let panels = nc.div_ceil(NR);
                let full_panels = nc / NR;
                let mut j = 0;
                while j < panels {
                    let col = n0 + j * NR;
                    let cols = NR.min(n0 + nc - col);
                    let b_panel = &buf[j * kc * NR..(j + 1) * kc * NR];
                    let at = i * MR * n + col;
                    let res = epi.residual.map_or(std::ptr::null(), |r| r[at..].as_ptr());
                    #[cfg(target_arch = "x86_64")]
                    if rows == MR && j + 1 < full_panels && super::microkernel::avx512_enabled() {
                        let b_next = &buf[(j + 1) * kc * NR..(j + 2) * kc * NR];
                        // SAFETY: two full panels: the 6x32 tile lies inside C (and the residual).
                        unsafe {
                            super::microkernel::tile2_avx512(
                                kc,
                                a_panel.as_ptr(),
                                b_panel.as_ptr(),
                                b_next.as_ptr(),
                                c.add(at),
                                n,
                                &bias,
                                res,
                                ops,
                            )
                        };
                        j += 2;
                        continue;
                    }
                    j += 1;
                    if rows == MR && cols == NR {
                        // SAFETY: the tile lies inside C (and the residual), rows of stride n.
                        unsafe { tile(kc, a_panel.as_ptr(), b_panel.as_ptr(), c.add(at), n, &bias, res, ops) };
                    } else {
                        edge(kc, a_panel, b_panel, c, n, at, rows, cols, &bias, epi.residual.map(|r| &r[at..]), ops);
                    }
                }
            }
            k0 += kc;
        }
        n0 += nc;
    }
}

/// A partial tile at C's bottom or right edge, through a full-size temporary.
#[allow(clippy::too_many_arguments)]
fn edge(
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    at: usize,
    rows: usize,
    cols: usize,
    bias: &[f32; MR],
    residual: Option<&[f32]>,
    ops: TileOps,
) {
    let mut t = [0f32; MR * NR];
    let mut r = [0f32; MR * NR];
    for i in 0..rows {
        for j in 0..cols {
            // SAFETY: (i, j) is inside C.
            t[i * NR + j] = unsafe { *c.add(at + i * ldc + j) };
            if let Some(res) = residual {
                r[i * NR + j] = res[i * ldc + j];
            }
        }
    }
    let rp = if residual.is_some() { r.as_ptr() } else { std::ptr::null() };
    // SAFETY: the temporaries are full tiles of stride NR.
    unsafe { tile(kc, a.as_ptr(), b.as_ptr(), t.as_mut_ptr(), NR, bias, rp, ops) };
    for i in 0..rows {
        for j in 0..cols {
            unsafe { *c.add(at + i * ldc + j) = t[i * NR + j] };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::seq;

    #[test]
    fn matches_the_definition_on_awkward_sizes() {
        for (m, k, n) in [(1, 1, 1), (7, 300, 33), (64, 576, 49), (13, 27, 1030), (6, 16, 16), (300, 5, 17)] {
            let a = seq(m * k, 1);
            let b = seq(k * n, 2);
            let bias = seq(m, 3);
            let res = seq(m * n, 4);
            let mut c = vec![f32::NAN; m * n];
            let pa = pack_a(&a, m, k);
            let mut pack = vec![0f32; 4 * pack_buffer_len()];
            gemm(
                m,
                k,
                n,
                &pa,
                BSource::Dense(&b),
                &mut c,
                Epi { bias: Some(&bias), residual: Some(&res), act: Some(Activation::Relu) },
                &mut pack,
            );
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>() + bias[i] + res[i * n + j];
                    let want = want.max(0.0);
                    assert!(
                        (c[i * n + j] - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "({m},{k},{n}) at ({i},{j}): {} vs {want}",
                        c[i * n + j]
                    );
                }
            }
        }
    }
}
