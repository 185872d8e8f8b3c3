//! Drawing primitives of the report's charts over time: line charts (with gaps where data is too
//! thin), and what every chart over time shares: the run's faults shaded and labelled by kind,
//! its violations marked, readable ticks, the legend; rendered to an SVG string with plotters.

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::FaultSpan;

pub(super) const W: u32 = 960;
pub(super) const H: u32 = 300;
pub(super) const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
/// Fault bands, one colour per kind in order of first appearance.
const BANDS: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
];
/// Where an invariant was seen violated.
const MARK: RGBColor = RGBColor(180, 0, 0);

pub(super) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

pub(super) fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}

/// A named series of (seconds, value); a NaN value is a gap (too few samples to draw).
pub(super) struct Series {
    pub(super) name: String,
    pub(super) points: Vec<(f64, f64)>,
}

/// What every chart over time shows behind its data: faults and violation marks.
pub(super) struct Backdrop<'a> {
    pub(super) faults: &'a [FaultSpan],
    /// (seconds, label), e.g. (3.2, "I1 violated").
    pub(super) marks: &'a [(f64, String)],
    pub(super) x_max: f64,
}

/// Draws series over time on a linear or log y axis.
pub(super) fn time_chart(
    title: &str,
    y_desc: &str,
    series: &[Series],
    back: &Backdrop<'_>,
    log: bool,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root: Area<'_> = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let y_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1).filter(|y| y.is_finite()))
            .fold(0.0f64, f64::max)
            .max(1.0);
        // Log charts keep their legend at the bottom; linear ones above the data.
        let y_max = if log {
            y_max * 1.5
        } else {
            y_max
                * headroom(series.len() + kinds(back.faults) + usize::from(!back.marks.is_empty()))
        };
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(64);
        let x = 0f64..back.x_max.max(0.1);
        if log {
            let mut chart = builder
                .build_cartesian_2d(x, (0.1f64..y_max).log_scale())
                .map_err(err)?;
            mesh(&mut chart, y_desc)?;
            backdrop(&mut chart, back, 0.1, y_max)?;
            lines(&mut chart, series, 0.1)?;
            legend_at(&mut chart, SeriesLabelPosition::LowerRight)?;
        } else {
            let mut chart = builder.build_cartesian_2d(x, 0f64..y_max).map_err(err)?;
            mesh(&mut chart, y_desc)?;
            backdrop(&mut chart, back, 0.0, y_max)?;
            lines(&mut chart, series, 0.0)?;
            legend(&mut chart)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

pub(super) fn mesh<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    y_desc: &str,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let (x, y) = (chart.x_range(), chart.y_range());
    let x_fmt = |v: &f64| tick(*v, x.end - x.start);
    let y_fmt = |v: &f64| tick(*v, y.end - y.start);
    chart
        .configure_mesh()
        .label_style(("sans-serif", 14))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_desc("seconds")
        .y_desc(y_desc)
        .draw()
        .map_err(err)
}

/// A tick label with as many decimals as the axis' span needs: "400", "2.5", "0.25".
pub(crate) fn tick(v: f64, span: f64) -> String {
    if span >= 10.0 || v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if span >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Room above the data for a legend of `entries` lines, as a factor of the data's top.
pub(super) fn headroom(entries: usize) -> f64 {
    1.15 + 0.08 * entries as f64
}

/// Fault bands coloured and labelled by kind (one legend entry per kind), and a dashed line with
/// its label where an invariant was seen violated.
pub(super) fn backdrop<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    back: &Backdrop<'_>,
    floor: f64,
    y_max: f64,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    let kinds = fault_kinds(back.faults);
    let tag = TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Left, VPos::Top));
    for (k, kind) in kinds.iter().enumerate() {
        let color = BANDS[k % BANDS.len()];
        let spans: Vec<(f64, f64)> = back
            .faults
            .iter()
            .filter(|f| f.kind == *kind)
            .map(span)
            .collect();
        chart
            .draw_series(
                spans.iter().map(|&(a, b)| {
                    Rectangle::new([(a, floor), (b, y_max)], color.mix(0.14).filled())
                }),
            )
            .map_err(err)?
            .label(format!("fault: {kind}"))
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 18, y + 5)], color.mix(0.3).filled())
            });
        let ink = color.mix(0.9);
        let tag = tag.color(&ink);
        chart
            .draw_series(
                spans
                    .iter()
                    .map(|&(a, _)| Text::new(kind.to_string(), (a, y_max), tag.clone())),
            )
            .map_err(err)?;
    }
    if !back.marks.is_empty() {
        let style = MARK.stroke_width(2);
        for (t, _) in back.marks {
            chart
                .draw_series(DashedLineSeries::new(
                    [(*t, floor), (*t, y_max)],
                    6,
                    4,
                    style,
                ))
                .map_err(err)?;
        }
        // The label starts just right of its line.
        let nudge = back.x_max * 0.004;
        let label = TextStyle::from(("sans-serif", 12).into_font().style(FontStyle::Bold))
            .pos(Pos::new(HPos::Left, VPos::Top))
            .color(&MARK);
        chart
            .draw_series(
                back.marks
                    .iter()
                    .map(|(t, what)| Text::new(what.clone(), (t + nudge, y_max), label.clone())),
            )
            .map_err(err)?
            .label("invariant violated")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    Ok(())
}

/// Each series as lines through its points, broken at gaps; a point alone is drawn as a dot.
pub(super) fn lines<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    series: &[Series],
    floor: f64,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(std::iter::empty(), color.stroke_width(2)))
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        for run in s.points.split(|p| !p.1.is_finite()) {
            let run: Vec<(f64, f64)> = run.iter().map(|&(x, y)| (x, y.max(floor))).collect();
            if let [only] = run.as_slice() {
                chart
                    .draw_series(std::iter::once(Circle::new(*only, 3, color.filled())))
                    .map_err(err)?;
            } else if !run.is_empty() {
                chart
                    .draw_series(LineSeries::new(run, color.stroke_width(2)))
                    .map_err(err)?;
            }
        }
    }
    Ok(())
}

/// The kinds of fault, in order of first appearance.
fn fault_kinds(faults: &[FaultSpan]) -> Vec<&str> {
    let mut kinds: Vec<&str> = Vec::new();
    for f in faults {
        if !kinds.contains(&f.kind.as_str()) {
            kinds.push(&f.kind);
        }
    }
    kinds
}

pub(super) fn kinds(faults: &[FaultSpan]) -> usize {
    fault_kinds(faults).len()
}

/// A fault's span in seconds; one-shot faults get a visible sliver.
pub(super) fn span(f: &FaultSpan) -> (f64, f64) {
    let a = f.start_ms as f64 / 1000.0;
    let b = (f.end_ms as f64 / 1000.0).max(a + 0.1);
    (a, b)
}

/// The legend at the top right, in the headroom left above the data.
pub(super) fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> anyhow::Result<()> {
    legend_at(chart, SeriesLabelPosition::UpperRight)
}

/// The legend where asked: log charts put it at the bottom, under 1 ms, where latency never is.
fn legend_at<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(at)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)
}
