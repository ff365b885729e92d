//! The output size of a sliding window: the one formula convolutions and pools share, with
//! checked arithmetic (the compiler calls it on numbers users wrote).

/// The output size along one axis of a window of `kernel` taps `dilation` apart, moved by
/// `stride` over `size` values padded by `padding` on both sides, as PyTorch computes it
/// (`ceil` for `ceil_mode=True`, where the last window must start inside the input or the
/// left padding). `None` when the window does not fit, a factor is zero, or a number
/// overflows.
pub fn window_out(size: usize, kernel: usize, stride: usize, padding: usize, dilation: usize, ceil: bool) -> Option<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let span = dilation.checked_mul(kernel - 1)?.checked_add(1)?;
    let padded = padding.checked_mul(2)?.checked_add(size)?;
    let room = padded.checked_sub(span)?;
    let mut out = if ceil { room.div_ceil(stride) + 1 } else { room / stride + 1 };
    if ceil && (out - 1).checked_mul(stride).is_none_or(|start| start >= size + padding) {
        out -= 1;
    }
    (out > 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::window_out;

    #[test]
    fn window_sizes_match_pytorch() {
        assert_eq!(window_out(224, 7, 2, 3, 1, false), Some(112));
        assert_eq!(window_out(112, 3, 2, 1, 1, false), Some(56));
        assert_eq!(window_out(7, 2, 2, 0, 1, true), Some(4));
        assert_eq!(window_out(6, 3, 2, 1, 1, true), Some(4));
        assert_eq!(window_out(5, 2, 2, 0, 1, true), Some(3));
        assert_eq!(window_out(2, 3, 1, 0, 1, false), None);
        assert_eq!(window_out(10, 3, 1, 2, 2, false), Some(10));
    }

    #[test]
    fn huge_numbers_are_none_not_a_wrapped_size() {
        assert_eq!(window_out(32, 1, 1, usize::MAX / 2 + 1, 1, false), None);
        assert_eq!(window_out(32, usize::MAX, 1, 0, 2, false), None);
        assert_eq!(window_out(32, 3, 0, 1, 1, false), None);
        assert_eq!(window_out(usize::MAX, 1, 1, 0, 1, true), Some(usize::MAX));
    }
}
