//! Shapes and the shape rules every stage shares: the sliding-window output size (one
//! formula, the runtime's, with checked arithmetic), the stride that maps one spatial size
//! onto another, and what a shortcut must become to match its block's main path.

use super::{Pool, ShortcutKind};

pub use resnetc_runtime::kernels::window_out;

/// A static per-sample shape: channels, height, width. Flat vectors are `[F, 1, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn new(c: usize, h: usize, w: usize) -> Shape {
        Shape { c, h, w }
    }

    /// Elements per sample. Lowering only builds shapes whose length fits (`checked_len`).
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Elements per sample, `None` when the product overflows.
    pub fn checked_len(&self) -> Option<usize> {
        self.c.checked_mul(self.h)?.checked_mul(self.w)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}, {}]", self.c, self.h, self.w)
    }
}

/// The smallest stride with which a 1x1 window maps `from` onto `to` spatially.
pub fn matching_stride(from: Shape, to: Shape) -> Option<usize> {
    if from.h == 0 || from.w == 0 || to.h == 0 || to.w == 0 {
        return None;
    }
    // A 1-tap window's output is non-increasing in the stride: the first small enough.
    let out = |size, s| window_out(size, 1, s, 0, 1, false);
    (1..=from.h.max(from.w)).find(|&s| out(from.h, s) == Some(to.h) && out(from.w, s) == Some(to.w))
}

/// The ops a named shortcut becomes for a given pair of shapes (the `shortcut` pass builds
/// them; lowering asks first, so that a mismatch is the user's error at the shortcut).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expansion {
    /// The input itself.
    Identity,
    /// Option A: every `stride`-th pixel, channels zero-padded.
    PadChannels { before: usize, after: usize, stride: usize },
    /// A 1x1 conv with this stride (+ bn).
    Projection { stride: usize, bn: bool },
    /// ResNet-D: an average pool where `pool` is set (to the shape given), a 1x1 conv
    /// (+ bn).
    AvgDown { pool: Option<(Pool, Shape)>, bn: bool },
}

impl ShortcutKind {
    /// What this shortcut becomes from `from` to `to`; `None` when it cannot match them.
    pub fn expansion(self, from: Shape, to: Shape) -> Option<Expansion> {
        let always = matches!(self, ShortcutKind::Projection { always: true, .. } | ShortcutKind::AvgDown { always: true, .. });
        if from == to && !always {
            return Some(Expansion::Identity);
        }
        let stride = matching_stride(from, to)?;
        match self {
            ShortcutKind::Identity => None,
            ShortcutKind::Pad => {
                let diff = to.c.checked_sub(from.c)?;
                Some(Expansion::PadChannels { before: diff / 2, after: diff - diff / 2, stride })
            }
            ShortcutKind::Projection { bn, .. } => Some(Expansion::Projection { stride, bn }),
            ShortcutKind::AvgDown { bn, .. } => {
                let pool = if stride > 1 {
                    let pool = Pool { kernel: stride, stride, padding: 0, ceil_mode: true, count_include_pad: false };
                    let h = window_out(from.h, stride, stride, 0, 1, true)?;
                    let w = window_out(from.w, stride, stride, 0, 1, true)?;
                    Some((pool, Shape::new(from.c, h, w)))
                } else {
                    None
                };
                let (h, w) = pool.map_or((from.h, from.w), |(_, s)| (s.h, s.w));
                (h == to.h && w == to.w).then_some(Expansion::AvgDown { pool, bn })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_inferred_from_shapes() {
        assert_eq!(matching_stride(Shape::new(64, 56, 56), Shape::new(128, 28, 28)), Some(2));
        assert_eq!(matching_stride(Shape::new(64, 7, 7), Shape::new(128, 4, 4)), Some(2));
        assert_eq!(matching_stride(Shape::new(64, 8, 8), Shape::new(64, 8, 8)), Some(1));
        assert_eq!(matching_stride(Shape::new(64, 8, 8), Shape::new(64, 9, 9)), None);
    }

    #[test]
    fn shortcuts_expand_only_where_shapes_allow() {
        let (a, b) = (Shape::new(8, 8, 8), Shape::new(16, 4, 4));
        assert_eq!(ShortcutKind::Identity.expansion(a, a), Some(Expansion::Identity));
        assert_eq!(ShortcutKind::Identity.expansion(a, b), None);
        assert_eq!(ShortcutKind::Pad.expansion(a, b), Some(Expansion::PadChannels { before: 4, after: 4, stride: 2 }));
        assert_eq!(ShortcutKind::Pad.expansion(b, Shape::new(8, 4, 4)), None);
        let p = ShortcutKind::Projection { bn: true, always: true };
        assert_eq!(p.expansion(a, a), Some(Expansion::Projection { stride: 1, bn: true }));
        assert!(matches!(
            ShortcutKind::AvgDown { bn: true, always: false }.expansion(a, b),
            Some(Expansion::AvgDown { pool: Some(_), .. })
        ));
    }
}
