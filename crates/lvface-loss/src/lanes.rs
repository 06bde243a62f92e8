//! Slice arithmetic written so that the compiler vectorises it: reductions over independent
//! lanes (a sequential f32 sum cannot be reordered, so it runs one add per latency), and an
//! `exp` without a libm call or branches.

/// Independent partial sums per reduction; 16 covers two AVX-512 or four SSE registers.
const LANES: usize = 16;

/// `Σ a_i·b_i`, summed in [`LANES`] interleaved partial sums.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (a_lanes, a_rest) = a.split_at(a.len() - a.len() % LANES);
    for (x, y) in a_lanes.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    let rest: f32 = a_rest
        .iter()
        .zip(&b[a_lanes.len()..])
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + rest
}

/// The largest entry (`f32::MIN` for an empty slice).
pub(crate) fn max(a: &[f32]) -> f32 {
    let mut acc = [f32::MIN; LANES];
    let (lanes, rest) = a.split_at(a.len() - a.len() % LANES);
    for x in lanes.chunks_exact(LANES) {
        for k in 0..LANES {
            acc[k] = acc[k].max(x[k]);
        }
    }
    rest.iter().chain(&acc).copied().fold(f32::MIN, f32::max)
}

/// `Σ exp(a_i - shift)`.
pub(crate) fn sum_exp(a: &[f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (lanes, rest) = a.split_at(a.len() - a.len() % LANES);
    for x in lanes.chunks_exact(LANES) {
        for k in 0..LANES {
            acc[k] += exp(x[k] - shift);
        }
    }
    acc.iter().sum::<f32>() + rest.iter().map(|&x| exp(x - shift)).sum::<f32>()
}

/// `e^x` in f32 to about 1 ulp (Cephes' `expf`: `x = k·ln 2 + r`, a degree-6 polynomial in `r`,
/// `2^k` built in the exponent bits); 0 below -87.33 (where `e^x` leaves f32's normal range)
/// and `e^88.72` above 88.72.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that k·LN2_HI is exact for |k| < 512.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without `roundf`.
    const ROUND: f32 = 12_582_912.0;
    const LOW: f32 = -87.336_55;
    let clamped = x.clamp(LOW, 88.722_83);
    let k = (clamped * LOG2E + ROUND) - ROUND;
    let r = clamped - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // k is in [-126, 128]; 2^k is built as 2^(k/2)·2^(k - k/2) because 2^128 has no f32
    // exponent (at k = 128 the product overflows to infinity, as e^88.73 does).
    let k = k as i32;
    let half = f32::from_bits(((k / 2 + 127) as u32) << 23);
    let other = f32::from_bits(((k - k / 2 + 127) as u32) << 23);
    if x < LOW {
        0.0
    } else {
        y * half * other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_f64_over_the_range_softmax_uses() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = f64::from(exp(x));
            let want = f64::from(x).exp();
            worst = worst.max((got - want).abs() / want);
            x += 0.0137;
        }
        assert!(
            worst < 2.0 * f64::from(f32::EPSILON),
            "relative error {worst}"
        );
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
    }

    #[test]
    fn reductions_match_sequential_loops() {
        for n in [0usize, 1, 15, 16, 17, 100, 513] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let b: Vec<f32> = (0..n)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0)
                .collect();
            let dot_want: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
            assert!(
                (f64::from(dot(&a, &b)) - dot_want).abs() < 1e-4,
                "dot, n = {n}"
            );
            let max_want = a.iter().copied().fold(f32::MIN, f32::max);
            assert_eq!(max(&a), max_want, "max, n = {n}");
            let sum_want: f64 = a.iter().map(|&x| (f64::from(x) - 1.0).exp()).sum();
            let got = f64::from(sum_exp(&a, 1.0));
            assert!(
                (got - sum_want).abs() < 1e-5 * sum_want.max(1.0),
                "sum_exp, n = {n}"
            );
        }
    }
}
