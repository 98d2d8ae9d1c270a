//! Numbers as the report prints them: short, and the same in tables, legends and tick labels.

/// `v` with about four significant digits: fixed notation from 0.001 to 99999 (trailing zeros
/// dropped), scientific outside; "–" for NaN or infinity.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    trim_zeros(format!("{v:.decimals$}"))
}

/// A tick label of an axis from `lo` to `hi`: as many digits as the tick spacing (about a sixth
/// of the range) needs, so neighbouring ticks never read the same (0.1998, 0.1999, 0.2 where
/// [`fmt_num`] would print 0.1999 twice); scientific below 0.001 and from 100000, as
/// [`fmt_num`].
pub fn fmt_tick(v: f64, lo: f64, hi: f64) -> String {
    let step = (hi - lo).abs() / 6.0;
    if !v.is_finite() || !step.is_finite() || step == 0.0 {
        return fmt_num(v);
    }
    if v.abs() < step * 1e-6 {
        return "0".into();
    }
    let mag = lo.abs().max(hi.abs());
    if !(1e-3..1e5).contains(&mag) {
        let digits = (v.abs().log10().floor() - step.log10().floor()).clamp(0.0, 8.0) as usize;
        let s = format!("{v:.digits$e}");
        return match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", trim_zeros(m.to_string())),
            None => s,
        };
    }
    let decimals = ((-step.log10()).ceil().max(0.0) as usize).min(10);
    trim_zeros(format!("{v:.decimals$}"))
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// [`fmt_num`] of an optional number ("–" for none).
pub fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), fmt_num)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        for (v, s) in [
            (0.0, "0"),
            (1.0, "1"),
            (2.5, "2.5"),
            (-0.123456, "-0.1235"),
            (1901.99, "1902"),
            (12000.0, "12000"),
            (1.41e-5, "1.41e-5"),
            (123456.0, "1.23e5"),
            (0.001, "0.001"),
            (f64::NAN, "–"),
        ] {
            assert_eq!(fmt_num(v), s, "{v}");
        }
        assert_eq!(fmt_opt(None), "–");
    }

    #[test]
    fn neighbouring_ticks_differ() {
        let (lo, hi) = (0.19978, 0.20002);
        let ticks: Vec<String> = [0.1998, 0.19985, 0.1999, 0.19995, 0.2]
            .iter()
            .map(|&v| fmt_tick(v, lo, hi))
            .collect();
        assert_eq!(ticks, ["0.1998", "0.19985", "0.1999", "0.19995", "0.2"]);
        assert_eq!(fmt_tick(40.0, 0.0, 60.0), "40");
        assert_eq!(fmt_tick(0.0025, 0.0, 0.003), "0.0025");
        assert_eq!(fmt_tick(-1e-17, -1.0, 1.0), "0", "float noise at zero");
        assert_eq!(fmt_tick(1.5e-5, 0.0, 3e-5), "1.5e-5");
        assert_eq!(fmt_tick(150000.0, 100000.0, 200000.0), "1.5e5");
        assert_eq!(fmt_tick(200000.0, 100000.0, 200000.0), "2e5");
    }
}
