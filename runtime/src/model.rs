//! What a generated model is made of: its error type, weight loading by table, and the
//! [`Workspace`] that holds every intermediate value so that `forward_into` allocates
//! nothing once the workspace has been sized for a batch.

use ndarray::{ArrayView2, ArrayView4};

use crate::weights::{LoadOptions, WeightError, WeightFile, Weights};

/// Why a generated model could not load or run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error("input has shape {found:?}, expected [N, {}, {}, {}] (any batch N >= 1)", .expected[0], .expected[1], .expected[2])]
    InputShape { expected: [usize; 3], found: [usize; 4] },
    #[error("this CPU cannot run the {0} kernels")]
    UnsupportedIsa(crate::fast::Isa),
    #[error("a batch of {batch} needs {bytes} bytes of working memory, which could not be allocated; use a smaller batch")]
    OutOfMemory { batch: usize, bytes: u128 },
}

impl Profile {
    /// Charges the time since the last step to it and starts timing `next`.
    fn lap(&mut self, next: Option<usize>) {
        let now = std::time::Instant::now();
        if let Some((id, t)) = self.current.take() {
            if let (Some(s), Some(n)) = (self.seconds.get_mut(id), self.laps.get_mut(id)) {
                *s += (now - t).as_secs_f64();
                *n += 1;
            }
        }
        self.current = next.map(|n| (n, now));
    }
}

/// Loads the tensors of `table` (key, shape) from `file`, validated, in table order.
pub fn load_table(file: &WeightFile, table: &[(&str, &[usize])], opts: &LoadOptions) -> Result<Vec<Vec<f32>>, WeightError> {
    let expected = owned(table);
    let mut w = file.load(&expected, opts)?;
    Ok(expected.iter().map(|(k, _)| w.take(k)).collect())
}

/// One batch norm folded into a convolution at load; tensors are indices into the
/// model's weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fold {
    /// The convolution's weight [O, C / groups, K, K] and bias [O].
    pub weight: usize,
    pub bias: Option<usize>,
    /// gamma, beta, running mean, running variance.
    pub bn: [usize; 4],
    pub eps: f32,
    pub out_channels: usize,
    /// Where the batch norm is: after the convolution (per output channel), or before it
    /// (per input channel, with the convolution's groups).
    pub side: FoldSide,
}

/// Which side of its convolution a folded batch norm is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldSide {
    After,
    Before { groups: usize },
}

/// Applies batch-norm folds in order, appending each folded weight and bias to `w`.
pub fn fold_all(w: &mut Vec<Vec<f32>>, folds: &[Fold]) {
    for f in folds {
        let (b, bn) = (f.bias.map(|b| w[b].as_slice()), f.bn.map(|i| w[i].as_slice()));
        let (fw, fb) = match f.side {
            FoldSide::After => crate::kernels::fold_batch_norm(&w[f.weight], b, bn, f.eps),
            FoldSide::Before { groups } => crate::kernels::fold_batch_norm_input(&w[f.weight], b, f.out_channels, bn, f.eps, groups),
        };
        w.push(fw);
        w.push(fb);
    }
}

/// Sets the number of threads each layer is split over. Call it once, before the first
/// forward pass; the default is the number of available cores.
pub fn set_threads(threads: usize) -> Result<(), String> {
    crate::fast::pool::set_threads(threads)
}

/// Seeded random weights for `table`, in table order (see [`Weights::random`]).
pub fn random_table(table: &[(&str, &[usize])], seed: u64) -> Vec<Vec<f32>> {
    let expected = owned(table);
    let mut w = Weights::random(&expected, seed);
    expected.iter().map(|(k, _)| w.take(k)).collect()
}

fn owned(table: &[(&str, &[usize])]) -> Vec<(String, Vec<usize>)> {
    table.iter().map(|(k, s)| (k.to_string(), s.to_vec())).collect()
}

/// Grows `v` to at least `len` zeros, reporting allocation failure instead of aborting.
fn grow(v: &mut Vec<f32>, len: usize) -> Result<(), std::collections::TryReserveError> {
    if v.len() < len {
        v.try_reserve_exact(len - v.len())?;
        v.resize(len, 0.0);
    }
    Ok(())
}

/// One arena holding every value of a model's graph at the offsets of the compiler's memory
/// plan, reused from one forward pass to the next.
#[derive(Debug, Default)]
pub struct Workspace {
    arena: Vec<f32>,
    offsets: Vec<usize>,
    lens: Vec<usize>,
    scratch: Vec<f32>,
    /// The output in NCHW order, when it is a feature map (values are NHWC inside).
    out: Vec<f32>,
    n: usize,
    /// Per-node seconds, accumulated while profiling is on.
    profile: Option<Profile>,
    /// The kernel path every step runs on.
    isa: crate::fast::Isa,
    /// Convolutions run since the last `begin`: direct, Winograd F(2x2), F(4x4).
    convs: [usize; 3],
    /// Expansion + depthwise pairs run since the last `begin`: in strips, and in all.
    pairs: [usize; 2],
    /// Test mode: dead values' regions filled with NaN (see [`Workspace::enable_poison`]).
    poison: Option<Poison>,
    /// How batches run (see [`BatchOrder`]), and how the current one does.
    order: BatchOrder,
    sample_major: bool,
    /// Sample-major: the sample whose pass runs, and the whole input in NHWC, from which
    /// each pass takes its sample.
    sample: usize,
    staged: Vec<f32>,
    /// Sample-major passes ended since `begin` (the output is complete at N).
    ended: usize,
}

/// How a batch of N > 1 runs through the steps.
///
/// - `Batched`: every step over the whole batch (value `i` of all samples contiguous at
///   `N * offset[i]`): late layers with few pixels a sample read their weights once for N.
/// - `SampleMajor`: the steps once a sample, as for a batch of 1 (the batch-1 arena reused):
///   the working set stays that of batch 1, in cache; the late layers read their weights N
///   times.
/// - `Auto` (the default): sample-major where a sample's largest value is 1 MiB or more
///   (ResNets at 224x224: batched, the 64 x 112 x 112 activations of 8 samples spill
///   every cache level, and a sample took 3-10% longer at batch 8 than at batch 1), batched
///   otherwise (small images, whose batches need the batch for their threads' work).
///   `RESNETC_BATCH_ORDER=batched|sample` overrides it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum BatchOrder {
    #[default]
    Auto,
    Batched,
    SampleMajor,
}

/// Values of at least this many floats a sample make [`BatchOrder::Auto`] sample-major.
const SAMPLE_MAJOR_FLOATS: usize = 1 << 18;

/// Which step last read each value, learnt from one pass's reads; later passes fill a
/// value's region with NaN once that step is over.
#[derive(Debug, Default)]
struct Poison {
    /// Per value, the last step that read it (learnt on the first pass).
    last_read: Vec<Option<usize>>,
    learnt: bool,
    /// Steps taken in this pass.
    step: usize,
}

/// Time spent per node: the time between one step's start and the next one's is charged to
/// the first (its kernel ran in between); a pass's last step is closed by `end_pass` (or
/// `output`), so it is charged for its own kernel and nothing after.
#[derive(Debug, Default)]
struct Profile {
    seconds: Vec<f64>,
    /// How many times each node was charged (once a pass).
    laps: Vec<usize>,
    current: Option<(usize, std::time::Instant)>,
}

impl Workspace {
    /// A workspace whose steps run on [`Isa::selected`](crate::fast::Isa::selected).
    pub fn new() -> Workspace {
        Workspace::default()
    }

    /// A workspace whose steps run on `isa`, if this CPU supports it.
    pub fn with_isa(isa: crate::fast::Isa) -> Result<Workspace, ModelError> {
        if !isa.supported() {
            return Err(ModelError::UnsupportedIsa(isa));
        }
        Ok(Workspace { isa, ..Workspace::default() })
    }

    /// The kernel path this workspace's steps run on.
    pub fn isa(&self) -> crate::fast::Isa {
        self.isa
    }

    /// Chooses how batches of N > 1 run (see [`BatchOrder`]); outputs are the same either
    /// way.
    pub fn set_batch_order(&mut self, order: BatchOrder) {
        self.order = order;
    }

    /// Whether the current batch runs sample-major.
    pub fn is_sample_major(&self) -> bool {
        self.sample_major
    }

    /// How many times the generated code runs its steps for this batch: N when it runs
    /// sample-major, else once. Call [`Workspace::pass`] before each.
    pub fn passes(&self) -> usize {
        if self.sample_major {
            self.n
        } else {
            1
        }
    }

    /// Starts pass `p` of [`Workspace::passes`]: sample-major, the steps then see sample `p`
    /// alone, as a batch of one.
    pub fn pass(&mut self, p: usize) {
        if self.sample_major {
            self.sample = p;
            if let Some(poison) = &mut self.poison {
                poison.step = 0;
            }
            let len = self.lens[0];
            let (a, b) = self.region(0);
            self.arena[a..b].copy_from_slice(&self.staged[p * len..(p + 1) * len]);
        }
    }

    /// Ends a pass: sample-major, keeps the pass's sample of value `id` (of `shape` [C, H,
    /// W]), in NCHW order, for [`Workspace::output`].
    pub fn end_pass(&mut self, id: usize, shape: [usize; 3]) {
        // The pass's last step ends here (the next forward call's `begin` drops an open
        // timing: before, the last layer, a classifier, was charged on the final call only).
        // The sample-major copy below is not timed.
        if let Some(p) = &mut self.profile {
            p.lap(None);
        }
        if self.sample_major {
            let len = self.lens[id];
            self.out.resize(self.n * len, 0.0);
            let (a, b) = self.region(id);
            let p = self.sample;
            self.ended += 1;
            crate::fast::nhwc::to_nchw(&self.arena[a..b], [1, shape[0], shape[1], shape[2]], &mut self.out[p * len..(p + 1) * len]);
        }
    }

    /// The order `order` resolves to for `n` samples whose largest value is `largest`
    /// floats a sample.
    fn resolve(order: BatchOrder, n: usize, largest: usize) -> bool {
        static FORCED: std::sync::OnceLock<Option<BatchOrder>> = std::sync::OnceLock::new();
        let forced = *FORCED.get_or_init(|| match std::env::var("RESNETC_BATCH_ORDER").as_deref() {
            Ok("batched") => Some(BatchOrder::Batched),
            Ok("sample") => Some(BatchOrder::SampleMajor),
            _ => None,
        });
        let order = match (order, forced) {
            (BatchOrder::Auto, Some(f)) => f,
            (o, _) => o,
        };
        n > 1
            && match order {
                BatchOrder::Auto => largest >= SAMPLE_MAJOR_FLOATS,
                BatchOrder::Batched => false,
                BatchOrder::SampleMajor => true,
            }
    }

    /// How many convolutions the last forward pass ran directly, through Winograd F(2x2)
    /// and through F(4x4): what actually ran, for reports and tests.
    pub fn conv_algorithms(&self) -> [usize; 3] {
        self.convs
    }

    /// How many expansion + depthwise pairs the last forward pass ran in strips, and how
    /// many it ran (see `fast::strips`).
    pub fn strip_pairs(&self) -> [usize; 2] {
        self.pairs
    }

    /// Counts an expansion + depthwise pair that ran, in strips or not.
    pub(crate) fn count_pair(&mut self, strips: bool) {
        if self.sample == 0 {
            self.pairs[0] += usize::from(strips);
            self.pairs[1] += 1;
        }
    }

    /// Counts a convolution that ran (a step's bookkeeping).
    pub(crate) fn count(&mut self, algo: crate::fast::ConvAlgo) {
        let i = match algo {
            crate::fast::ConvAlgo::Direct => 0,
            crate::fast::ConvAlgo::Winograd(2) => 1,
            crate::fast::ConvAlgo::Winograd(_) => 2,
        };
        // Sample-major, the steps run once a sample: count the first sample's.
        if self.sample == 0 {
            self.convs[i] += 1;
        }
    }

    /// Checks `input` against `shape`, sizes the arena for its batch (value `i` lives at
    /// `N * offsets[i]`, `N * lens[i]` floats; the arena only ever grows), and copies the
    /// input into value 0, in NHWC. Returns the batch size N.
    pub fn begin(
        &mut self,
        input: ArrayView4<f32>,
        shape: [usize; 3],
        offsets: &[usize],
        lens: &[usize],
        arena: usize,
        scratch: usize,
    ) -> Result<usize, ModelError> {
        let (n, c, h, w) = input.dim();
        if [c, h, w] != shape || n == 0 {
            return Err(ModelError::InputShape { expected: shape, found: [n, c, h, w] });
        }
        debug_assert_eq!(offsets.len(), lens.len());
        if self.offsets != offsets || self.lens != lens {
            self.offsets = offsets.to_vec();
            self.lens = lens.to_vec();
        }
        // The compiler sizes the scratch for one sample; Winograd's grows with the batch.
        // Sample-major passes need the batch-1 arena and scratch, and the staged input.
        self.sample_major = Workspace::resolve(self.order, n, lens.iter().copied().max().unwrap_or(0));
        let m = if self.sample_major { 1 } else { n };
        let oom = || ModelError::OutOfMemory { batch: n, bytes: (m as u128) * (arena as u128 + scratch as u128) * 4 };
        let (arena_len, scratch_len) = (m.checked_mul(arena).ok_or_else(oom)?, m.checked_mul(scratch).ok_or_else(oom)?);
        grow(&mut self.arena, arena_len).map_err(|_| oom())?;
        grow(&mut self.scratch, scratch_len).map_err(|_| oom())?;
        self.n = n;
        self.sample = 0;
        self.ended = 0;
        self.convs = [0; 3];
        self.pairs = [0; 2];
        if let Some(p) = &mut self.poison {
            p.step = 0;
        }
        if let Some(p) = &mut self.profile {
            if p.seconds.len() != lens.len() {
                p.seconds = vec![0.0; lens.len()];
                p.laps = vec![0; lens.len()];
            }
            p.current = None;
        }
        // Sample-major, the input is staged whole; each pass copies its sample in.
        let dst = if self.sample_major {
            let len = n.checked_mul(lens[0]).ok_or_else(oom)?;
            grow(&mut self.staged, len).map_err(|_| oom())?;
            &mut self.staged[..len]
        } else {
            let (start, end) = self.region(0);
            &mut self.arena[start..end]
        };
        match input.as_slice() {
            Some(s) => crate::fast::nhwc::to_nhwc(s, [n, c, h, w], dst),
            None => {
                let nhwc = input.permuted_axes([0, 2, 3, 1]);
                dst.iter_mut().zip(nhwc.iter()).for_each(|(d, s)| *d = *s);
            }
        }
        Ok(n)
    }

    /// Where value `id` lives for the current batch (sample-major: for one sample).
    fn region(&self, id: usize) -> (usize, usize) {
        let m = self.batch();
        (m * self.offsets[id], m * (self.offsets[id] + self.lens[id]))
    }

    /// The buffers of one step: the inputs (read), the output (written) and the scratch.
    /// The plan guarantees that the output's region is disjoint from the inputs'.
    pub fn step<const K: usize>(&mut self, inputs: [usize; K], out: usize) -> ([&[f32]; K], &mut [f32], &mut [f32]) {
        self.begin_step(inputs, out);
        let (o0, o1) = self.region(out);
        let regions = inputs.map(|i| self.region(i));
        let (left, rest) = self.arena.split_at_mut(o0);
        let (y, right) = rest.split_at_mut(o1 - o0);
        let (left, right): (&[f32], &[f32]) = (left, right);
        let ins = regions.map(|(a, b)| {
            if b <= o0 {
                &left[a..b]
            } else {
                assert!(a >= o1, "invariant: the memory plan keeps a step's input and output apart");
                &right[a - o1..b - o1]
            }
        });
        (ins, y, &mut self.scratch)
    }

    /// [`Workspace::step`] of a step that also writes value `mid`, which it computes on the
    /// way (an expansion + depthwise pair writes the expansion's value, or strips of it):
    /// the inputs, `mid`'s region, the output's and the scratch. The plan keeps `mid` alive
    /// from its node to this step, apart from the inputs and the output.
    #[allow(clippy::type_complexity)]
    pub fn step_mid<const K: usize>(
        &mut self,
        inputs: [usize; K],
        mid: usize,
        out: usize,
    ) -> ([&[f32]; K], &mut [f32], &mut [f32], &mut [f32]) {
        self.begin_step(inputs, out);
        let (m, o) = (self.region(mid), self.region(out));
        assert!(m.1 <= o.0 || o.1 <= m.0, "invariant: the memory plan keeps a step's values apart");
        let (lo, hi) = if m.0 < o.0 { (m, o) } else { (o, m) };
        let regions = inputs.map(|i| self.region(i));
        // The arena cut around the two written regions: below, between, above.
        let (below, rest) = self.arena.split_at_mut(lo.0);
        let (lo_buf, rest) = rest.split_at_mut(lo.1 - lo.0);
        let (between, rest) = rest.split_at_mut(hi.0 - lo.1);
        let (hi_buf, above) = rest.split_at_mut(hi.1 - hi.0);
        let (below, between, above): (&[f32], &[f32], &[f32]) = (below, between, above);
        let ins = regions.map(|(a, b)| {
            if b <= lo.0 {
                &below[a..b]
            } else if a >= lo.1 && b <= hi.0 {
                &between[a - lo.1..b - lo.1]
            } else {
                assert!(a >= hi.1, "invariant: the memory plan keeps a step's inputs and outputs apart");
                &above[a - hi.1..b - hi.1]
            }
        });
        let (mid, y) = if m.0 < o.0 { (lo_buf, hi_buf) } else { (hi_buf, lo_buf) };
        (ins, mid, y, &mut self.scratch)
    }

    /// A step's bookkeeping: poisoning dead values and learning reads (test mode), the
    /// profile's lap.
    fn begin_step<const K: usize>(&mut self, inputs: [usize; K], out: usize) {
        if let Some(p) = &mut self.poison {
            let step = p.step;
            p.step += 1;
            if p.learnt {
                if step > 0 {
                    self.poison_after(step - 1, usize::MAX);
                }
            } else {
                if p.last_read.len() < self.lens.len() {
                    p.last_read.resize(self.lens.len(), None);
                }
                for i in inputs {
                    p.last_read[i] = Some(step);
                }
            }
        }
        if let Some(p) = &mut self.profile {
            p.lap(Some(out));
        }
    }

    /// The batch size the steps see: 1 in a sample-major pass.
    pub fn batch(&self) -> usize {
        if self.sample_major {
            1
        } else {
            self.n
        }
    }

    /// Floats per sample of value `id`.
    pub fn len(&self, id: usize) -> usize {
        self.lens[id]
    }

    /// Test mode, to check the memory plan by other means than the planner's: the first
    /// pass records which step last reads each value (from the reads the generated code
    /// actually makes); every later pass fills a value's region with NaN as soon as that
    /// step is over. A plan that let two live values share floats, or a kernel that reads
    /// a region it does not own, then turns outputs into NaN, which parity checks catch.
    pub fn enable_poison(&mut self) {
        self.poison = Some(Poison::default());
    }

    /// Fills with NaN the regions of values whose last reader was step `done`.
    fn poison_after(&mut self, done: usize, keep: usize) {
        let Some(p) = &self.poison else { return };
        if !p.learnt {
            return;
        }
        let dead: Vec<usize> = p.last_read.iter().enumerate().filter(|(v, s)| **s == Some(done) && *v != keep).map(|(v, _)| v).collect();
        for v in dead {
            let (a, b) = self.region(v);
            self.arena[a..b].fill(f32::NAN);
        }
    }

    /// Turns per-node timing on (for `infer --profile`); off by default.
    pub fn enable_profile(&mut self) {
        self.profile = Some(Profile::default());
    }

    /// Seconds spent in each node's kernel since profiling was enabled (empty when off).
    pub fn profile(&mut self) -> Vec<f64> {
        match &mut self.profile {
            Some(p) => {
                p.lap(None);
                p.seconds.clone()
            }
            None => vec![],
        }
    }

    /// Value `id`, of shape `shape` ([C, H, W]) a sample, as [N, features] in PyTorch's
    /// (NCHW) order.
    pub fn output(&mut self, id: usize, shape: [usize; 3]) -> ArrayView2<'_, f32> {
        if let Some(p) = &mut self.profile {
            p.lap(None);
        }
        if let Some(p) = &mut self.poison {
            let last = p.step.checked_sub(1);
            if p.learnt {
                if let Some(last) = last {
                    self.poison_after(last, id);
                }
            }
            if let Some(p) = &mut self.poison {
                p.learnt = true;
                p.step = 0;
            }
        }
        let (n, len) = (self.n, self.lens[id]);
        if self.sample_major {
            // Every pass's sample, kept by `end_pass` (generated code runs them all).
            assert_eq!(self.ended, n, "invariant: every sample-major pass ran (passes / pass / end_pass) before output");
            return ArrayView2::from_shape((n, len), &self.out[..n * len]).expect("invariant: end_pass kept N samples");
        }
        let (a, b) = self.region(id);
        let values = if shape[1] * shape[2] == 1 {
            &self.arena[a..b]
        } else {
            self.out.resize(n * len, 0.0);
            crate::fast::nhwc::to_nchw(&self.arena[a..b], [n, shape[0], shape[1], shape[2]], &mut self.out);
            &self.out
        };
        ArrayView2::from_shape((n, len), values).expect("invariant: the region holds N values")
    }

    /// Bytes held by the arena and the scratch.
    pub fn bytes(&self) -> usize {
        (self.arena.capacity() + self.scratch.capacity() + self.out.capacity() + self.staged.capacity()) * 4
    }
}

#[cfg(test)]
mod tests {
    use super::{BatchOrder, Workspace};
    use crate::kernels::Activation;
    use ndarray::Array4;

    /// A batch run sample-major (each sample in its own arena) gives what the batched
    /// order gives, with the input's and output's sample order kept; strided inputs too.
    #[test]
    fn sample_major_batches_equal_batched_ones() {
        let x = Array4::from_shape_fn((3, 2, 2, 3), |(b, c, i, j)| (b * 100 + c * 10 + i * 3 + j) as f32 - 50.0);
        let strided = x.slice(ndarray::s![.., .., .., ..;2]).to_owned();
        let mut results = vec![];
        for order in [BatchOrder::Batched, BatchOrder::SampleMajor] {
            let mut ws = Workspace::new();
            ws.set_batch_order(order);
            for input in [x.view(), x.view().reversed_axes().reversed_axes(), strided.view()] {
                let [c, h, w] = [input.dim().1, input.dim().2, input.dim().3];
                let len = c * h * w;
                ws.begin(input, [c, h, w], &[0, len, 2 * len], &[len, len, len], 3 * len, 0).unwrap();
                assert_eq!(ws.is_sample_major(), order == BatchOrder::SampleMajor);
                assert_eq!(ws.passes(), if order == BatchOrder::SampleMajor { 3 } else { 1 });
                for p in 0..ws.passes() {
                    ws.pass(p);
                    ws.act(0, 1, Activation::Relu);
                    ws.add(1, 0, 2);
                    ws.end_pass(2, [c, h, w]);
                }
                let out = ws.output(2, [c, h, w]).to_owned();
                let want = input.mapv(|v| v.max(0.0) + v).into_shape_with_order((3, len)).unwrap();
                assert_eq!(out, want, "{order:?}");
                results.push(out);
            }
        }
        assert_eq!(results[..3], results[3..]);
    }

    /// The profile charges every step once a pass, the last one included, in both orders.
    #[test]
    fn profile_charges_every_step_once_a_pass() {
        let x = Array4::from_shape_fn((2, 1, 2, 2), |(b, _, i, j)| (b + i + j) as f32);
        for order in [BatchOrder::Batched, BatchOrder::SampleMajor] {
            let mut ws = Workspace::new();
            ws.set_batch_order(order);
            ws.enable_profile();
            for _ in 0..3 {
                ws.begin(x.view(), [1, 2, 2], &[0, 4, 8], &[4, 4, 4], 12, 0).unwrap();
                for p in 0..ws.passes() {
                    ws.pass(p);
                    ws.act(0, 1, Activation::Relu);
                    ws.add(1, 0, 2);
                    ws.end_pass(2, [1, 2, 2]);
                }
                ws.output(2, [1, 2, 2]);
            }
            let passes = 3 * ws.passes();
            assert_eq!(ws.profile.as_ref().unwrap().laps, vec![0, passes, passes], "{order:?}");
            assert_eq!(ws.profile().len(), 3);
        }
    }

    /// After one pass that learns the reads, dead values are NaN and live ones intact.
    #[test]
    fn poisoning_fills_dead_values_only() {
        let mut ws = Workspace::new();
        ws.enable_poison();
        let x = Array4::from_elem((1, 1, 1, 2), 1.0f32);
        for pass in 0..3 {
            ws.begin(x.view(), [1, 1, 2], &[0, 2, 4], &[2, 2, 2], 6, 0).unwrap();
            ws.act(0, 1, Activation::Relu); // step 0 reads value 0
            ws.add(1, 1, 2); // step 1 reads value 1
            let out = ws.output(2, [1, 1, 2]).to_owned();
            assert_eq!(out.as_slice().unwrap(), &[2.0, 2.0], "pass {pass}");
            let dead = ws.arena[0..4].iter().all(|v| v.is_nan());
            assert_eq!(dead, pass > 0, "pass {pass}: {:?}", &ws.arena[..6]);
        }
    }
}
