//! An inverted residual's 1x1 expansion and the depthwise convolution that reads it, run
//! together a strip of output rows at a time (MobileNet's and EfficientNet's blocks).
//!
//! Run one after the other, the expansion writes its whole value (96 x 112 x 112 floats,
//! 4.8 MB, in MobileNetV2 at 224x224) and the depthwise layer reads it back: more than the
//! L2 holds, so both go to L3 or memory; in a model, whose values from the last pass are
//! long evicted, the expansion's stores first read their cache lines from memory (on a
//! Zen 4, that layer alone took 0.83 ms with cold caches against 0.56 warm). Here each
//! thread takes a run of output rows and, strip by strip, expands just the input rows the
//! strip reads into a part of the expanded value's region of its own (the same part for
//! every strip, so it stays in L2), then runs the depthwise rows on it. Consecutive strips
//! share `kernel - stride` input rows (a 3x3 stride-1 layer's two), which move to the
//! part's front instead of being expanded again; only the seam between two threads' runs
//! is expanded twice. The expanded value is never written whole (its region stays
//! reserved in the arena).
//!
//! Small expansions (under [`STRIP_FLOATS`] a sample) run as two whole layers: there the
//! split over threads by rows would expand more seams than it saves. `RESNETC_STRIPS=1`
//! runs every pair in strips, `=0` none (as tests and benchmarks do to compare).

use super::pool::{self, SharedMut};
use super::{depthwise, direct, ConvSpec, Epilogue, Isa, PackedConv};

/// Expanded values of at least this many floats a sample run in strips (1 MiB).
pub const STRIP_FLOATS: usize = 1 << 18;

/// Bytes of expanded rows a strip holds at most (about a fifth of a Zen 4's L2, so that
/// the strip, the input rows and the depthwise output rows stay there together), and at
/// least as many as one output row reads.
const STRIP_BYTES: usize = 192 << 10;

/// What `RESNETC_STRIPS` forces (read once): `Some(true)` strips for every pair,
/// `Some(false)` none; `None` (unset or another value) the size rule.
pub fn strips_forced() -> Option<bool> {
    static FORCED: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| match std::env::var("RESNETC_STRIPS").as_deref() {
        Ok("1") => Some(true),
        Ok("0") => Some(false),
        _ => None,
    })
}

/// Whether the pair whose expansion is `expand` runs in strips.
pub fn in_strips(expand: &ConvSpec) -> bool {
    let [_, h, w] = expand.input;
    strips_forced().unwrap_or(expand.out_channels * h * w >= STRIP_FLOATS)
}

/// Whether `expand` then `dw` can run here: a 1x1 stride-1 convolution without groups,
/// padding or dilation, whose output is the depthwise convolution's input.
pub fn eligible(expand: &ConvSpec, dw: &ConvSpec) -> bool {
    let p = expand.params;
    let [_, h, w] = expand.input;
    expand.kernel == 1
        && (p.stride, p.padding, p.dilation, p.groups) == (1, 0, 1, 1)
        && expand.algo == super::ConvAlgo::Direct
        && depthwise::eligible(dw)
        && dw.input == [expand.out_channels, h, w]
}

/// `y = dw(expand(x))`, each convolution with its bias and activation (the specs'), on NHWC
/// values of a batch of `n`; `we` and `wd` from [`super::pack`]; `mid` holds the expanded
/// value's floats (`n` x its length: in strips, the threads' strips), `scratch` at least
/// [`direct::scratch_len`] of the expansion. Returns whether it ran in strips
/// ([`in_strips`], and `mid` large enough for a strip a thread).
///
/// # Panics
/// If the pair is not [`eligible`], the buffers do not match the specs, or the CPU does
/// not support `isa`.
#[allow(clippy::too_many_arguments)]
pub fn expand_depthwise(
    isa: Isa,
    x: &[f32],
    n: usize,
    expand: (&ConvSpec, &PackedConv, Option<&[f32]>),
    dw: (&ConvSpec, &PackedConv, Option<&[f32]>),
    mid: &mut [f32],
    scratch: &mut [f32],
    y: &mut [f32],
) -> bool {
    let strips = in_strips(expand.0).then_some(STRIP_BYTES);
    run(isa, pool::global().threads(), x, n, expand, dw, mid, scratch, y, strips)
}

/// [`expand_depthwise`] in strips of at most `strip_bytes` of expanded rows (at least one
/// output row's) on up to `threads` of the pool's threads (as many as `mid` holds strips
/// for), or as two whole layers if None or if `mid` cannot hold one output row's strip.
/// Returns whether it ran in strips.
#[allow(clippy::too_many_arguments)]
fn run(
    isa: Isa,
    threads: usize,
    x: &[f32],
    n: usize,
    (expand, we, be): (&ConvSpec, &PackedConv, Option<&[f32]>),
    (dw, wd, bd): (&ConvSpec, &PackedConv, Option<&[f32]>),
    mid: &mut [f32],
    scratch: &mut [f32],
    y: &mut [f32],
    strip_bytes: Option<usize>,
) -> bool {
    assert!(eligible(expand, dw), "invariant: an expansion and the depthwise convolution after it");
    let [cin, h, w] = expand.input;
    let e = expand.out_channels;
    let (oh, ow) = (dw.params.out(h, dw.kernel), dw.params.out(w, dw.kernel));
    let whole = n * e * h * w;
    assert!(x.len() >= n * cin * h * w && mid.len() >= whole && y.len() >= n * oh * ow * e, "invariant: buffers match the specs");
    let expand_epi = Epilogue { bias: be, residual: None, act: expand.act };
    let rows = n * oh;
    let (row_len, in_row) = (ow * e, w * e);
    let (stride, padding, span) = (dw.params.stride, dw.params.padding, (dw.kernel - 1) * dw.params.dilation);
    // Input rows `strip` output rows read (at most the image's). Each thread takes a part
    // of `mid`: zeros for the expansion's (absent) padding taps, then its strip; as many
    // threads as there are parts of one output row's strip (none: two whole layers).
    let reads = |strip: usize| ((strip - 1) * stride + span + 1).min(h);
    let zeros_len = direct::scratch_len(expand);
    let threads = threads.min(pool::global().threads()).min(rows).min(whole / (zeros_len + reads(1) * in_row));
    let Some(strip_bytes) = strip_bytes.filter(|_| threads > 0) else {
        super::conv(isa, x, n, expand, we, expand_epi, scratch, &mut mid[..whole]);
        super::conv(isa, &mid[..whole], n, dw, wd, Epilogue { bias: bd, residual: None, act: dw.act }, scratch, y);
        return false;
    };
    // Output rows a strip: as many as fit `strip_bytes` and a thread's share, at least one.
    let share = (whole / threads - zeros_len) / in_row;
    let mut strip = ((strip_bytes / 4 / in_row).saturating_sub(span + 1) / stride + 1).max(1);
    while strip > 1 && reads(strip) > share {
        strip -= 1;
    }
    let part = zeros_len + reads(strip) * in_row;
    let (out, parts) = (SharedMut::new(y.as_mut_ptr()), SharedMut::new(mid.as_mut_ptr()));
    let job = |t: usize| {
        let per = rows.div_ceil(threads);
        let (r0, r1) = ((t * per).min(rows), ((t + 1) * per).min(rows));
        // SAFETY: task t alone uses floats t * part..(t + 1) * part of `mid`, which lie inside
        // it: part <= zeros_len + share * in_row <= whole / threads (`share` above, and
        // `reads(strip) <= share`), and `mid` outlives the job.
        let own = unsafe { std::slice::from_raw_parts_mut(parts.get().add(t * part), part) };
        let (zeros, buf) = own.split_at_mut(zeros_len);
        // The expanded rows `lo..hi` of sample `b` that `buf` holds.
        let mut held: Option<(usize, usize, usize)> = None;
        let mut r = r0;
        while r < r1 {
            let (b, oa) = (r / oh, r % oh);
            let ob = (oa + strip).min(oh).min(oa + r1 - r);
            // The input rows output rows oa..ob read (clipped to the image).
            let hi = ((ob - 1) * stride + span + 1).saturating_sub(padding).min(h);
            let lo = (oa * stride).saturating_sub(padding).min(hi);
            // Rows already expanded move to the front; the rest are expanded after them.
            let from = match held {
                Some((hb, hlo, hhi)) if hb == b && hlo <= lo && lo < hhi => {
                    let keep = hhi.min(hi);
                    buf.copy_within((lo - hlo) * in_row..(keep - hlo) * in_row, 0);
                    keep
                }
                _ => lo,
            };
            if hi > from {
                let xs = &x[(b * h + from) * w * cin..(b * h + hi) * w * cin];
                let rows_spec = ConvSpec::new([cin, hi - from, w], e, 1);
                let dst = &mut buf[(from - lo) * in_row..(hi - lo) * in_row];
                direct::conv_serial(isa, xs, 1, &rows_spec, we, expand_epi, zeros, dst);
            }
            held = Some((b, lo, hi));
            // SAFETY: task t alone writes output rows r0..r1 (r..r + ob - oa among them),
            // which lie inside `y` (asserted above), and `y` outlives the job (the pool
            // returns once every task has finished).
            let y_rows = unsafe { std::slice::from_raw_parts_mut(out.get().add(r * row_len), (ob - oa) * row_len) };
            depthwise::rows_from(isa, &buf[..(hi - lo) * in_row], b * h + lo, dw, wd.data(), bd, dw.act, r, y_rows);
            r += ob - oa;
        }
    };
    pool::run_first(threads, &job);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::seq;
    use crate::kernels::Activation;

    /// Strips against the two layers run whole, on every ISA, at one and two threads (when
    /// the pool has two): strides 1 and 2, kernels 3, 5 and 7, dilation, padding that
    /// keeps, shrinks and grows the image, batches, channels that leave a tail, strips
    /// of one output row and of several, the activations in registers and after.
    #[test]
    fn strips_match_the_layers_run_whole() {
        // (in channels, expanded, height, width, kernel, stride, padding, dilation, batch, acts)
        let cases = [
            (4, 24, 9, 7, 3, 1, 1, 1, 2, Some(Activation::Relu6), Some(Activation::Relu6)),
            (3, 16, 10, 10, 3, 2, 1, 1, 1, Some(Activation::Silu), Some(Activation::Silu)),
            (5, 40, 11, 6, 5, 1, 2, 1, 2, Some(Activation::Hardswish), None),
            (8, 32, 12, 9, 5, 2, 2, 1, 1, None, Some(Activation::Relu)),
            (6, 20, 8, 8, 7, 1, 3, 1, 1, Some(Activation::Relu), Some(Activation::Hardswish)),
            (2, 48, 7, 5, 3, 1, 0, 1, 2, Some(Activation::Relu6), Some(Activation::Relu6)),
            // Dilation; padding past the kernel's reach (output rows that read no input).
            (4, 16, 11, 9, 3, 1, 2, 2, 2, Some(Activation::Relu6), None),
            (3, 24, 4, 6, 3, 1, 3, 1, 2, None, Some(Activation::Relu6)),
            // Rows wide enough that a strip holds a few output rows only (192 KiB).
            (16, 96, 24, 112, 3, 1, 1, 1, 1, Some(Activation::Relu6), Some(Activation::Relu6)),
            (16, 96, 24, 112, 3, 2, 1, 1, 2, Some(Activation::Silu), Some(Activation::Silu)),
        ];
        for isa in Isa::available() {
            for (cin, e, h, w, k, s, p, d, n, act_e, act_d) in cases {
                let mut expand = ConvSpec::new([cin, h, w], e, 1);
                expand.act = act_e;
                let mut dw = ConvSpec::new([e, h, w], e, k).stride(s).padding(p).dilation(d).groups(e);
                dw.act = act_d;
                let (we, be) = (seq(e * cin, 1), seq(e, 2));
                let (wd, bd) = (seq(e * k * k, 3), seq(e, 4));
                let (pe, pd) = (super::super::pack(&we, &expand), super::super::pack(&wd, &dw));
                let x = seq(n * cin * h * w, 5);
                let (oh, ow) = (dw.params.out(h, k), dw.params.out(w, k));
                assert!(oh > 0 && ow > 0, "case {cin}->{e} {h}x{w} k{k}");
                // The two layers, whole.
                let mut mid = vec![0.0; n * e * h * w];
                let mut zeros = vec![0.0; direct::scratch_len(&expand)];
                super::super::conv(
                    isa,
                    &x,
                    n,
                    &expand,
                    &pe,
                    Epilogue { bias: Some(&be), residual: None, act: act_e },
                    &mut zeros,
                    &mut mid,
                );
                let mut want = vec![0.0; n * oh * ow * e];
                super::super::conv(isa, &mid, n, &dw, &pd, Epilogue { bias: Some(&bd), residual: None, act: act_d }, &mut zeros, &mut want);
                // Strips of one output row, of the default size, and the whole-layer path.
                for (strip_bytes, threads) in [Some(1), Some(STRIP_BYTES), None].into_iter().flat_map(|b| [(b, 1), (b, 2)]) {
                    let mut got = vec![f32::NAN; want.len()];
                    let (mut mid, mut scratch) = (vec![f32::NAN; n * e * h * w], vec![f32::NAN; direct::scratch_len(&expand)]);
                    let ran = run(
                        isa,
                        threads,
                        &x,
                        n,
                        (&expand, &pe, Some(&be)),
                        (&dw, &pd, Some(&bd)),
                        &mut mid,
                        &mut scratch,
                        &mut got,
                        strip_bytes,
                    );
                    // Strips whenever the expanded value holds one output row's strip.
                    let one = direct::scratch_len(&expand) + ((k - 1) * d + 1).min(h) * w * e;
                    assert_eq!(ran, strip_bytes.is_some() && n * e * h * w >= one, "{cin}->{e} {h}x{w} k{k}");
                    // The same kernels sum every output in the same order: equal to the bit.
                    let what =
                        format!("{isa}, {threads} threads, {cin}->{e} {h}x{w}, k{k} s{s} p{p}, batch {n}, strips of {strip_bytes:?} bytes");
                    if let Some(i) = (0..want.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
                        panic!("{what}: output {i} is {} instead of {}", got[i], want[i]);
                    }
                }
            }
        }
    }
}
