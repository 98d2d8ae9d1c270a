//! `exp` and `erf` over slices of f32 in a form the compiler vectorizes (8 lanes with AVX2 + FMA,
//! picked at run time; 4 lanes of SSE2 otherwise), for the softmax and GELU kernels.
//!
//! Why: libm's `expf` and `erff` are scalar calls. The attention softmax of a 16 x 200 T5
//! encoder layer evaluates `expf` 7.7 million times and took 38 ms of a ~350 ms layer, more than
//! the attention products themselves; the gated GELU another 6.5 million. RoBERTa's exact GELU
//! called `erff` 12.6 million times per layer of a 16 x 256 batch (~0.6 s of a 5 s pass).
//!
//! How (`exp`): Cephes' `expf` reduction and polynomial with branch-free arithmetic only. `x` is split
//! as `n ln2 + r` (`n` rounded to nearest with the 1.5·2²³ trick, `ln2` in two parts so `r` is
//! exact), `e^r` is a degree-6 polynomial, and `2^n` is built in the exponent bits. Plain
//! multiplies and adds (no fused multiply-add) so every machine computes the same bits.
//! Relative error below 2.5e-7 (about 2 ulp; the unit test measures it against f64) over the
//! whole range of normal results; below `LOW` the result is exactly 0 (so a masked attention
//! score, -1e9, still weighs exactly 0), above `HIGH` it is +inf, NaN stays NaN.

/// Above this `expf` overflows to +inf.
const HIGH: f32 = 88.722_84;
/// Below this (`ln` of the smallest normal float) the result is 0. `expf` still returns
/// subnormals down to -103.97; flushing them changes a probability by less than 1.2e-38.
const LOW: f32 = -87.336_54;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2²³: adding it rounds a float of magnitude < 2²² to an integer kept in the low
/// mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// `e^x` of one value, branch free (the lanes of a vectorized loop).
#[inline(always)]
pub fn exp_lane(x: f32) -> f32 {
    let xc = x.clamp(LOW, HIGH);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND; // x / ln2 rounded to the nearest integer
    let r = xc - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5; // Cephes' 5.0000001201e-1, which is 0.5 in f32
    let er = p * r2 + r + 1.0;
    // 2^n as two factors 2^(n/2) and 2^(n - n/2), each a normal float for every n in
    // [-126, 128] (the range after the clamp; 2^128 alone is not a float)
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let (n1, n2) = (ni >> 1, ni - (ni >> 1));
    let pow2 = |k: i32| f32::from_bits(((k + 127) << 23) as u32);
    let scaled = er * pow2(n1) * pow2(n2);
    if x < LOW {
        0.0
    } else if x > HIGH {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        scaled
    }
}

/// `erf(x)` of one value, branch free: Eigen's rational approximation `x P(x²) / Q(x²)` of
/// `erf` on [-4, 4] (beyond, erf rounds to ±1 in f32), evaluated in f64 (in f32 its rounding
/// errors reach 4.5e-7 near ±4; in f64 the result is within 1.2e-7 of the exact value, the
/// unit test measures it).
#[inline(always)]
pub fn erf_lane(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0) as f64;
    let x2 = x * x;
    let p = (((((-2.726_142_258_013_06e-10 * x2 + 2.770_681_424_959_02e-8) * x2
        - 2.101_024_020_825_08e-6)
        * x2
        - 5.692_506_394_623_46e-5)
        * x2
        - 7.349_906_303_268_55e-4)
        * x2
        - 2.954_599_808_540_25e-3)
        * x2
        - 1.609_603_332_624_15e-2;
    let q = (((-1.456_607_184_649_96e-5 * x2 - 2.133_740_552_789_05e-4) * x2
        - 1.682_826_974_382_03e-3)
        * x2
        - 7.373_329_167_204_68e-3)
        * x2
        - 1.426_473_905_141_89e-2;
    (x * p / q) as f32
}

#[inline(always)]
fn map_loop<F: Fn(f32) -> f32>(xs: &mut [f32], f: F) {
    for x in xs {
        *x = f(*x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn map_avx2<F: Fn(f32) -> f32>(xs: &mut [f32], f: F) {
    map_loop(xs, f)
}

/// `x = f(x)` for every element, compiled for AVX2 + FMA where the CPU has them.
#[inline(always)]
fn map_in_place<F: Fn(f32) -> f32>(xs: &mut [f32], f: F) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for (checked above).
        unsafe { map_avx2(xs, f) };
        return;
    }
    map_loop(xs, f)
}

/// `x = e^x` for every element.
pub fn exp_in_place(xs: &mut [f32]) {
    map_in_place(xs, exp_lane)
}

/// `x = erf(x)` for every element.
pub fn erf_in_place(xs: &mut [f32]) {
    map_in_place(xs, erf_lane)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64 by its Taylor series (|x| <= 3) or continued fraction of erfc (beyond).
    fn erf64(x: f64) -> f64 {
        let a = x.abs();
        let v = if a <= 3.0 {
            let (mut term, mut sum, mut n) = (a, a, 0.0);
            while term.abs() > 1e-17 * sum.abs() {
                n += 1.0;
                term *= -a * a / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...))))
            let mut f = a;
            for k in (1..60).rev() {
                f = a + (k as f64 / 2.0) / f;
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
        };
        v.copysign(x)
    }

    #[test]
    fn erf_within_1_2e_7_of_the_exact_value() {
        let xs: Vec<f32> = (-100_000..=100_000).map(|i| i as f32 * 1e-4).collect();
        let mut got = xs.clone();
        erf_in_place(&mut got);
        let worst = xs
            .iter()
            .zip(&got)
            .map(|(&x, &g)| (g as f64 - erf64(x as f64)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1.2e-7, "largest absolute error {worst}");
        assert_eq!(erf_lane(0.0), 0.0);
        assert_eq!(erf_lane(-30.0), -1.0);
        for (&x, &g) in xs.iter().zip(&got).step_by(991) {
            assert_eq!(erf_lane(x).to_bits(), g.to_bits(), "x = {x}");
        }
    }

    fn rel(got: f32, x: f32) -> f64 {
        let want = (x as f64).exp();
        ((got as f64) - want).abs() / want
    }

    #[test]
    fn within_two_and_a_half_ulp_of_the_exact_value_over_the_finite_range() {
        let mut xs: Vec<f32> = (0..2_000_001)
            .map(|i| LOW + (HIGH - LOW) * i as f32 / 2_000_000.0)
            .collect();
        xs.extend((-2000..=2000).map(|i| i as f32 * 1e-3)); // around 0, where softmax lives
        let mut got = xs.clone();
        exp_in_place(&mut got);
        let worst = xs
            .iter()
            .zip(&got)
            .filter(|(&x, _)| x < HIGH - 1e-3)
            .map(|(&x, &g)| rel(g, x))
            .fold(0.0, f64::max);
        assert!(worst < 2.5e-7, "largest relative error {worst}");
        // the scalar path (no AVX2) computes the same bits
        for (&x, &g) in xs.iter().zip(&got).step_by(997) {
            assert_eq!(exp_lane(x).to_bits(), g.to_bits(), "x = {x}");
        }
    }

    #[test]
    fn edges_are_zero_infinity_and_nan_as_expf() {
        let mut xs = [
            -1e9,
            f32::NEG_INFINITY,
            -88.0,
            0.0,
            89.0,
            f32::INFINITY,
            f32::NAN,
        ];
        exp_in_place(&mut xs);
        assert_eq!(xs[0], 0.0);
        assert_eq!(xs[1], 0.0);
        assert!(xs[2] < 1.2e-38);
        assert_eq!(xs[3], 1.0);
        assert_eq!(xs[4], f32::INFINITY);
        assert_eq!(xs[5], f32::INFINITY);
        assert!(xs[6].is_nan());
    }
}
