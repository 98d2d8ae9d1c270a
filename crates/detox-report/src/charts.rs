//! The report's charts as SVG documents drawn by plotters' SVG backend: lines against step
//! (one polyline per series, plus a dot per point when there are few), overlaid histograms and
//! grouped bars (filled rectangles). Titles and legends are HTML around the SVG
//! ([`crate::html`]); an SVG holds only axes, tick labels and the marks.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::ReportError;
use crate::num::{fmt_num, fmt_tick};

/// Size of every chart, in SVG user units (the page scales it to its column).
pub const WIDTH: u32 = 560;
pub const HEIGHT: u32 = 300;
/// A series with at most this many points also gets a dot per point.
pub const DOTS_UP_TO: usize = 60;
/// Fill opacity of histogram bars (they overlap).
pub const HISTOGRAM_OPACITY: f64 = 0.45;

/// Tableau 10: distinguishable, print- and colour-blind-friendly enough.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0xE1, 0x57, 0x59),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xBA, 0xB0, 0xAC),
];

/// The colour of the `i`-th series.
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// `#RRGGBB`, as plotters writes colours into the SVG.
pub fn css(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// One entry of a chart's legend: a series' name, its colour and a short summary.
#[derive(Debug, Clone)]
pub struct LegendEntry {
    pub name: String,
    pub color: String,
    pub note: String,
}

/// A drawn chart: its title, the SVG document and its legend.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub svg: String,
    pub legend: Vec<LegendEntry>,
    /// What the chart shows, when the title alone does not say it.
    pub caption: Option<String>,
}

/// A named line: `(x, y)` points in order.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

fn chart_err<E: std::fmt::Display>(title: &str) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Chart {
        chart: title.to_string(),
        msg: e.to_string(),
    }
}

/// `[lo, hi]` of the finite `values` with 5% room on each side (a unit around a single value;
/// `[0, 1]` for none); `from_zero` makes the range include 0.
fn padded_range(values: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if lo == hi {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - d, hi + d);
    }
    let pad = (hi - lo) * 0.05;
    (
        if from_zero && lo == 0.0 {
            0.0
        } else {
            lo - pad
        },
        if from_zero && hi == 0.0 {
            0.0
        } else {
            hi + pad
        },
    )
}

/// The look of every chart's axes: grey grid and axis lines (black is for error bars), tick
/// labels with the digits the ranges `x` and `y` need.
fn draw_mesh<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    title: &str,
    x: (f64, f64),
    y: (f64, f64),
    configure: impl FnOnce(&mut plotters::chart::MeshStyle<'_, '_, RangedCoordf64, RangedCoordf64, DB>),
) -> Result<(), ReportError> {
    let x_tick = |v: &f64| fmt_tick(*v, x.0, x.1);
    let y_tick = |v: &f64| fmt_tick(*v, y.0, y.1);
    let mut mesh = chart.configure_mesh();
    mesh.label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .bold_line_style(RGBColor(0xDD, 0xDD, 0xDD))
        .light_line_style(RGBColor(0xF2, 0xF2, 0xF2))
        .axis_style(RGBColor(0x55, 0x55, 0x55))
        .x_label_formatter(&x_tick)
        .y_label_formatter(&y_tick)
        .x_labels(8)
        .y_labels(6);
    configure(&mut mesh);
    mesh.draw().map_err(|e| ReportError::Chart {
        chart: title.to_string(),
        msg: e.to_string(),
    })
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws into a fresh SVG document of the chart size and returns it.
fn svg(
    title: &str,
    draw: impl FnOnce(&Area) -> Result<(), ReportError>,
) -> Result<String, ReportError> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err(title))?;
        draw(&root)?;
        root.present().map_err(chart_err(title))?;
    }
    Ok(buf)
}

/// Summary of a series for the legend: points, last value, min and max.
fn line_note(points: &[(f64, f64)]) -> String {
    let Some(&(x, y)) = points.last() else {
        return "no points".into();
    };
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    format!(
        "{} point{}, last {} (step {}), min {}, max {}",
        points.len(),
        if points.len() == 1 { "" } else { "s" },
        fmt_num(y),
        fmt_num(x),
        fmt_num(lo),
        fmt_num(hi)
    )
}

/// Lines of `series` against `x_desc` (step): one polyline per series with every point, a dot
/// per point for series of at most [`DOTS_UP_TO`] points.
pub fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<Chart, ReportError> {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = padded_range(all().map(|p| p.0), false);
    let (y0, y1) = padded_range(all().map(|p| p.1), false);
    let svg = svg(title, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(chart_err(title))?;
        draw_mesh(&mut chart, title, (x0, x1), (y0, y1), |m| {
            m.x_desc(x_desc).y_desc(y_desc);
        })?;
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    s.points.clone(),
                    c.stroke_width(2),
                )))
                .map_err(chart_err(title))?;
            if s.points.len() <= DOTS_UP_TO {
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(chart_err(title))?;
            }
        }
        Ok(())
    })?;
    let legend = series
        .iter()
        .enumerate()
        .map(|(i, s)| LegendEntry {
            name: s.name.clone(),
            color: css(color(i)),
            note: line_note(&s.points),
        })
        .collect();
    Ok(Chart {
        title: title.to_string(),
        svg,
        legend,
        caption: None,
    })
}

/// Overlaid histograms and the bins they were counted in.
#[derive(Debug, Clone)]
pub struct Histogram {
    pub chart: Chart,
    /// `bins + 1` edges; bin `k` is `[edges[k], edges[k+1])`, the last one closed.
    pub edges: Vec<f64>,
    /// Per series, the count of each bin.
    pub counts: Vec<Vec<usize>>,
}

/// Number of bins for `n` values: about sqrt(n), between 5 and 30.
fn bin_count(n: usize) -> usize {
    ((n as f64).sqrt().ceil() as usize).clamp(5, 30)
}

/// `n` mean and population std of the finite `values`.
pub fn mean_std(values: &[f64]) -> (usize, f64, f64) {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return (0, f64::NAN, f64::NAN);
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
    (n, mean, var.sqrt())
}

/// Histograms of each series' finite values in shared bins on one axis (bars of
/// [`HISTOGRAM_OPACITY`], one filled rectangle per non-empty bin and series), with a vertical
/// line at each series' mean.
pub fn histogram(
    title: &str,
    x_desc: &str,
    series: &[(String, Vec<f64>)],
) -> Result<Histogram, ReportError> {
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.1.iter().copied())
            .filter(|v| v.is_finite())
    };
    let (mut lo, mut hi) = finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        (lo, hi) = (0.0, 1.0);
    } else if lo == hi {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let n_max = series.iter().map(|s| s.1.len()).max().unwrap_or(0);
    let bins = bin_count(n_max);
    let width = (hi - lo) / bins as f64;
    let edges: Vec<f64> = (0..=bins).map(|k| lo + width * k as f64).collect();
    let counts: Vec<Vec<usize>> = series
        .iter()
        .map(|(_, values)| {
            let mut c = vec![0usize; bins];
            for v in values.iter().filter(|v| v.is_finite()) {
                let k = (((v - lo) / width).floor() as usize).min(bins - 1);
                c[k] += 1;
            }
            c
        })
        .collect();
    let top = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let (x0, x1) = (lo - width * 0.25, hi + width * 0.25);
    let svg = svg(title, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, 0.0..top)
            .map_err(chart_err(title))?;
        draw_mesh(&mut chart, title, (x0, x1), (0.0, top), |m| {
            m.x_desc(x_desc).y_desc("count");
        })?;
        for (i, c) in counts.iter().enumerate() {
            let style = color(i).mix(HISTOGRAM_OPACITY).filled();
            let bars = c
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(k, &n)| Rectangle::new([(edges[k], 0.0), (edges[k + 1], n as f64)], style));
            chart.draw_series(bars).map_err(chart_err(title))?;
        }
        for (i, (_, values)) in series.iter().enumerate() {
            let (n, mean, _) = mean_std(values);
            if n > 0 {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(mean, 0.0), (mean, top)],
                        color(i).stroke_width(2),
                    )))
                    .map_err(chart_err(title))?;
            }
        }
        Ok(())
    })?;
    let legend = series
        .iter()
        .enumerate()
        .map(|(i, (name, values))| {
            let (n, mean, std) = mean_std(values);
            LegendEntry {
                name: name.clone(),
                color: css(color(i)),
                note: format!(
                    "n = {n}, mean {} (line), std {}",
                    fmt_num(mean),
                    fmt_num(std)
                ),
            }
        })
        .collect();
    Ok(Histogram {
        chart: Chart {
            title: title.to_string(),
            svg,
            legend,
            caption: None,
        },
        edges,
        counts,
    })
}

/// One colour of a grouped bar chart: a value per group (`None`: no bar), optionally with an
/// error bar (± that much) each.
#[derive(Debug, Clone)]
pub struct BarSeries {
    pub name: String,
    pub values: Vec<Option<f64>>,
    pub errors: Option<Vec<Option<f64>>>,
}

/// Grouped bars: for each of `groups` (labels under the axis), one filled rectangle per series
/// that has a finite value there, from 0 to the value; error bars as lines.
pub fn bar_chart(
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[BarSeries],
) -> Result<Chart, ReportError> {
    let value =
        |s: &BarSeries, g: usize| s.values.get(g).copied().flatten().filter(|v| v.is_finite());
    let error = |s: &BarSeries, g: usize| {
        s.errors
            .as_ref()
            .and_then(|e| e.get(g).copied().flatten())
            .filter(|e| e.is_finite())
    };
    let ends = series.iter().flat_map(|s| {
        (0..groups.len()).flat_map(move |g| {
            let v = value(s, g);
            let e = error(s, g).unwrap_or(0.0);
            [v.map(|v| v - e), v.map(|v| v + e)]
        })
    });
    let (y0, y1) = padded_range(ends.flatten(), true);
    let n_groups = groups.len().max(1) as f64;
    let width = 0.8 / series.len().max(1) as f64;
    let svg = svg(title, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n_groups, y0..y1)
            .map_err(chart_err(title))?;
        draw_mesh(&mut chart, title, (0.0, n_groups), (y0, y1), |m| {
            m.disable_x_mesh().x_labels(0).y_desc(y_desc);
        })?;
        for (j, s) in series.iter().enumerate() {
            let style = color(j).filled();
            let bars = (0..groups.len()).filter_map(|g| {
                let v = value(s, g)?;
                let left = g as f64 + 0.1 + j as f64 * width;
                Some(Rectangle::new(
                    [(left + width * 0.05, 0.0), (left + width * 0.95, v)],
                    style,
                ))
            });
            chart.draw_series(bars).map_err(chart_err(title))?;
        }
        for (j, s) in series.iter().enumerate() {
            for g in 0..groups.len() {
                let (Some(v), Some(e)) = (value(s, g), error(s, g)) else {
                    continue;
                };
                let mid = g as f64 + 0.1 + (j as f64 + 0.5) * width;
                let cap = width * 0.2;
                let lines = [
                    vec![(mid, v - e), (mid, v + e)],
                    vec![(mid - cap, v - e), (mid + cap, v - e)],
                    vec![(mid - cap, v + e), (mid + cap, v + e)],
                ];
                chart
                    .draw_series(
                        lines
                            .into_iter()
                            .map(|l| PathElement::new(l, BLACK.stroke_width(1))),
                    )
                    .map_err(chart_err(title))?;
            }
        }
        let style = TextStyle::from(("sans-serif", 14).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ),
        );
        for (g, name) in groups.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(g as f64 + 0.5, y0));
            root.draw(&Text::new(name.clone(), (px, py + 8), style.clone()))
                .map_err(chart_err(title))?;
        }
        Ok(())
    })?;
    let legend = series
        .iter()
        .enumerate()
        .map(|(j, s)| LegendEntry {
            name: s.name.clone(),
            color: css(color(j)),
            note: String::new(),
        })
        .collect();
    Ok(Chart {
        title: title.to_string(),
        svg,
        legend,
        caption: None,
    })
}
