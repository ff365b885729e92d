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
}

/// Loads the tensors of `table` (key, shape) from `file`, validated, in table order.
pub fn load_table(file: &WeightFile, table: &[(&str, &[usize])], opts: &LoadOptions) -> Result<Vec<Vec<f32>>, WeightError> {
    let expected = owned(table);
    let mut w = file.load(&expected, opts)?;
    Ok(expected.iter().map(|(k, _)| w.take(k)).collect())
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

/// Buffers for every value of a model's graph, reused from one forward pass to the next.
#[derive(Debug, Default)]
pub struct Workspace {
    bufs: Vec<Vec<f32>>,
    lens: Vec<usize>,
    scratch: Vec<f32>,
    n: usize,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace::default()
    }

    /// Checks `input` against `shape`, sizes the buffers for its batch (value `i` holds
    /// `N * lens[i]` floats; buffers only ever grow) and copies the input into value 0.
    /// Returns the batch size N.
    pub fn begin(&mut self, input: ArrayView4<f32>, shape: [usize; 3], lens: &[usize], scratch: usize) -> Result<usize, ModelError> {
        let (n, c, h, w) = input.dim();
        if [c, h, w] != shape || n == 0 {
            return Err(ModelError::InputShape { expected: shape, found: [n, c, h, w] });
        }
        if self.bufs.len() != lens.len() || self.lens != lens {
            self.bufs = vec![Vec::new(); lens.len()];
            self.lens = lens.to_vec();
        }
        for (b, &len) in self.bufs.iter_mut().zip(lens) {
            if b.len() < n * len {
                b.resize(n * len, 0.0);
            }
        }
        if self.scratch.len() < scratch {
            self.scratch.resize(scratch, 0.0);
        }
        self.n = n;
        match input.as_slice() {
            Some(s) => self.bufs[0][..s.len()].copy_from_slice(s),
            None => self.bufs[0].iter_mut().zip(input.iter()).for_each(|(d, s)| *d = *s),
        }
        Ok(n)
    }

    /// The buffers of one step: the inputs (read), the output (written) and the scratch.
    /// Every input must come before the output (the graph is in topological order).
    pub fn step<const K: usize>(&mut self, inputs: [usize; K], out: usize) -> ([&[f32]; K], &mut [f32], &mut [f32]) {
        debug_assert!(inputs.iter().all(|&i| i < out), "invariant: operands come before their user");
        let n = self.n;
        let (lo, hi) = self.bufs.split_at_mut(out);
        let lens = &self.lens;
        let ins = inputs.map(|i| &lo[i][..n * lens[i]]);
        (ins, &mut hi[0][..n * lens[out]], &mut self.scratch)
    }

    /// The batch size of the current pass.
    pub fn batch(&self) -> usize {
        self.n
    }

    /// Floats per sample of value `id`.
    pub fn len(&self, id: usize) -> usize {
        self.lens[id]
    }

    /// Value `id` as [N, features].
    pub fn output(&self, id: usize) -> ArrayView2<'_, f32> {
        let len = self.lens[id];
        ArrayView2::from_shape((self.n, len), &self.bufs[id][..self.n * len]).expect("invariant: the buffer holds N values")
    }

    /// Bytes held by the buffers.
    pub fn bytes(&self) -> usize {
        (self.bufs.iter().map(Vec::capacity).sum::<usize>() + self.scratch.capacity()) * 4
    }
}
