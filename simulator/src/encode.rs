//! Writing RawPosition JSON straight into a reused buffer: no `fmt` machinery, no allocation.
//! Coordinates are fixed-point with 7 decimals (about 1 cm), as GPS receivers report them.

/// Appends a decimal integer.
#[inline]
pub(crate) fn push_int(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    push_uint(buf, v.unsigned_abs());
}

#[inline]
pub(crate) fn push_uint(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

const POW10: [f64; 8] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7];

/// Appends a finite number with exactly `decimals` (at most 7) decimals.
#[inline]
pub(crate) fn push_fixed(buf: &mut Vec<u8>, v: f64, decimals: usize) {
    let decimals = decimals.min(7);
    let scale = POW10[decimals];
    let n = (v * scale).round();
    if !n.is_finite() || n.abs() >= 9.0e18 {
        // Unreachable for coordinates and speeds; keep the output valid JSON anyway.
        buf.push(b'0');
        return;
    }
    let n = n as i64;
    if n < 0 {
        buf.push(b'-');
    }
    let a = n.unsigned_abs();
    let s = scale as u64;
    push_uint(buf, a / s);
    if decimals > 0 {
        buf.push(b'.');
        let frac = a % s;
        let mut tmp = [b'0'; 7];
        let mut f = frac;
        for k in (0..decimals).rev() {
            tmp[k] = b'0' + (f % 10) as u8;
            f /= 10;
        }
        buf.extend_from_slice(&tmp[..decimals]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(v: f64, d: usize) -> String {
        let mut b = Vec::new();
        push_fixed(&mut b, v, d);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn numbers_format_like_json() {
        assert_eq!(fixed(-16.9234567, 7), "-16.9234567");
        assert_eq!(fixed(145.0000001, 7), "145.0000001");
        assert_eq!(fixed(-0.04, 1), "0.0");
        assert_eq!(fixed(0.05, 1), "0.1");
        assert_eq!(fixed(12.0, 0), "12");
        assert_eq!(fixed(3.25, 2), "3.25");
        let mut b = Vec::new();
        push_int(&mut b, -1_700_000_000_123);
        push_int(&mut b, 0);
        assert_eq!(b, b"-17000000001230");
        for v in [-16.9, 145.77, 0.0, -0.0000001, 89.9999999] {
            let s = fixed(v, 7);
            let back: f64 = serde_json::from_str(&s).unwrap();
            assert!((back - v).abs() < 1e-7, "{v} -> {s}");
        }
    }
}
