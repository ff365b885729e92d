//! Comparing an output with a reference: the one comparison every parity test uses, with
//! the fixtures' parity target. It fails on any NaN or infinity (on either side), on
//! different shapes (no silent truncation), and reports rows whose best class differs.

use ndarray::ArrayViewD;

/// The parity target of `../shared/fixtures`: max |ours - ref| <= 1e-4 * max(1, max |ref|).
pub const TOLERANCE: f32 = 1e-4;

/// How far an output is from a reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// max |ours - reference|.
    pub max_error: f32,
    /// max(1, max |reference|): errors are measured against it.
    pub scale: f32,
    /// Rows (along the first axis) whose argmax differs.
    pub argmax_differs: usize,
}

impl Comparison {
    /// Whether `max_error <= tolerance * scale`.
    pub fn within(&self, tolerance: f32) -> bool {
        self.max_error <= tolerance * self.scale
    }
}

/// Compares `ours` with `reference`: an error when the shapes differ or a value is not
/// finite.
pub fn compare(ours: ArrayViewD<f32>, reference: ArrayViewD<f32>) -> Result<Comparison, String> {
    if ours.shape() != reference.shape() {
        return Err(format!("shape {:?}, expected {:?}", ours.shape(), reference.shape()));
    }
    let non_finite = |a: &ArrayViewD<f32>| a.iter().enumerate().find(|(_, v)| !v.is_finite()).map(|(i, v)| (i, *v));
    if let Some((i, v)) = non_finite(&ours) {
        return Err(format!("ours has {v} at flat index {i}"));
    }
    if let Some((i, v)) = non_finite(&reference) {
        return Err(format!("the reference has {v} at flat index {i}"));
    }
    let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
    let max_error = ours.iter().zip(reference.iter()).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let rows = ours.shape().first().copied().unwrap_or(1).max(1);
    let argmax = |a: &ArrayViewD<f32>| -> Vec<usize> {
        let flat: Vec<f32> = a.iter().copied().collect();
        let per = flat.len() / rows;
        (0..rows)
            .map(|r| {
                let row = &flat[r * per..(r + 1) * per];
                row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
            })
            .collect()
    };
    let argmax_differs = if ours.is_empty() { 0 } else { argmax(&ours).iter().zip(argmax(&reference)).filter(|(a, b)| *a != b).count() };
    Ok(Comparison { max_error, scale, argmax_differs })
}

/// Panics unless `ours` is within the parity target of `reference` with the same argmax in
/// every row; prints and returns the comparison.
pub fn assert_parity(what: &str, ours: ArrayViewD<f32>, reference: ArrayViewD<f32>) -> Comparison {
    let c = assert_close(what, ours, reference, TOLERANCE);
    assert_eq!(c.argmax_differs, 0, "{what}: the best class differs in {} rows", c.argmax_differs);
    c
}

/// Panics unless `ours` is within `tolerance` (relative to the reference's scale) of
/// `reference`; prints and returns the comparison.
pub fn assert_close(what: &str, ours: ArrayViewD<f32>, reference: ArrayViewD<f32>, tolerance: f32) -> Comparison {
    let c = compare(ours, reference).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(c.within(tolerance), "{what}: max abs error {:e} > {:e}", c.max_error, tolerance * c.scale);
    eprintln!("{what}: max abs error {:.3e} (tolerance {:.3e})", c.max_error, tolerance * c.scale);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr2, ArrayD};

    fn d(a: ndarray::Array2<f32>) -> ArrayD<f32> {
        a.into_dyn()
    }

    #[test]
    fn nan_shape_and_argmax_cannot_pass_unseen() {
        let r = d(arr2(&[[1.0, 2.0], [3.0, 0.0]]));
        assert!(compare(d(arr2(&[[f32::NAN, 2.0], [3.0, 0.0]])).view(), r.view()).is_err());
        assert!(compare(d(arr2(&[[1.0, 2.0]])).view(), r.view()).is_err());
        assert!(compare(r.view(), d(arr2(&[[1.0, f32::INFINITY], [3.0, 0.0]])).view()).is_err());
        let c = compare(d(arr2(&[[1.0, 2.0], [3.0, 3.5]])).view(), r.view()).unwrap();
        assert_eq!((c.max_error, c.scale, c.argmax_differs), (3.5, 3.0, 1));
        assert!(!c.within(TOLERANCE));
        let same = compare(r.view(), r.view()).unwrap();
        assert!(same.within(0.0) && same.argmax_differs == 0);
    }
}
