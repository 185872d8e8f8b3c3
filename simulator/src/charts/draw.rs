//! Drawing primitives of the report's charts: time charts with shaded fault spans, bar charts,
//! legends, one palette, each rendered to an SVG string with plotters.

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use crate::report::FaultSpan;

const W: u32 = 960;
const H: u32 = 300;
pub(super) const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}

/// A named series of (seconds, value).
pub(super) struct Series {
    pub(super) name: String,
    pub(super) points: Vec<(f64, f64)>,
}

/// Draws series over time on a linear or log y axis, shading fault spans.
pub(super) fn time_chart(
    title: &str,
    y_desc: &str,
    series: &[Series],
    faults: &[FaultSpan],
    x_max: f64,
    log: bool,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root: Area<'_> = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let y_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(1.0)
            * 1.1;
        let x_max = x_max.max(1.0);
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(64);
        if log {
            let mut chart = builder
                .build_cartesian_2d(0f64..x_max, (0.1f64..y_max).log_scale())
                .map_err(err)?;
            plot(&mut chart, y_desc, series, faults, 0.1, y_max)?;
        } else {
            let mut chart = builder
                .build_cartesian_2d(0f64..x_max, 0f64..y_max)
                .map_err(err)?;
            plot(&mut chart, y_desc, series, faults, 0.0, y_max)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Mesh, fault bands, lines and legend on a chart over time; `floor` is the y axis' lowest value.
fn plot<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    y_desc: &str,
    series: &[Series],
    faults: &[FaultSpan],
    floor: f64,
    y_max: f64,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    for f in faults {
        let (a, b) = span(f);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, floor), (b, y_max)],
                RED.mix(0.12).filled(),
            )))
            .map_err(err)?;
    }
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|&(x, y)| (x, y.max(floor))),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    legend(chart)
}

/// A fault's span in seconds; one-shot faults get a visible sliver.
pub(super) fn span(f: &FaultSpan) -> (f64, f64) {
    let a = f.start_ms as f64 / 1000.0;
    let b = (f.end_ms as f64 / 1000.0).max(a + 0.1);
    (a, b)
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)
}

/// Horizontal bars of (label, count) on a log axis (counts span orders of magnitude).
pub(super) fn bar_chart(
    title: &str,
    bars: &[(String, f64)],
    x_desc: &str,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let height = (40 + 26 * bars.len() as u32).max(140);
        let root: Area<'_> = SVGBackend::with_string(&mut svg, (W, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max = bars.iter().map(|b| b.1).fold(1.0f64, f64::max) * 1.15;
        let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        let n = bars.len().max(1) as i32;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(200);
        let y_fmt = |y: &i32| {
            usize::try_from(*y)
                .ok()
                .and_then(|i| labels.get(i).cloned())
                .unwrap_or_default()
        };
        let mut chart = builder
            .build_cartesian_2d((0.5f64..max.max(1.0)).log_scale(), 0i32..n)
            .map_err(err)?;
        chart
            .configure_mesh()
            .y_labels(bars.len().max(1))
            .y_label_formatter(&y_fmt)
            .x_desc(x_desc)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let i = i32::try_from(i).unwrap_or(0);
                Rectangle::new(
                    [(0.5, i), (v.max(0.5), i + 1)],
                    PALETTE[0].mix(0.8).filled(),
                )
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
