//! Horizontal bar charts of counts: a linear axis (a bar twice as long is twice as many), each
//! label centred on its bar, each bar ending in its count, first item at the top.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::draw::{err, tick, Area, PALETTE, W};

/// Bars of (label, count) in the order given, top to bottom.
pub(super) fn bar_chart(
    title: &str,
    bars: &[(String, f64)],
    x_desc: &str,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let n = bars.len().max(1);
        let height = (70 + 28 * n as u32).max(140);
        let root: Area<'_> = SVGBackend::with_string(&mut svg, (W, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        // Room after the longest bar for its count.
        let max = bars.iter().map(|b| b.1).fold(1.0f64, f64::max) * 1.18;
        let last = i32::try_from(n).unwrap_or(i32::MAX) - 1;
        // Row `r` (0 at the bottom) shows bar `n - 1 - r`, so the first bar is at the top.
        let label_of = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(r) => usize::try_from(last - r)
                .ok()
                .and_then(|i| bars.get(i))
                .map(|b| b.0.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(220)
            .build_cartesian_2d(0f64..max, (0i32..last.max(1)).into_segmented())
            .map_err(err)?;
        let x_fmt = |v: &f64| tick(*v, max);
        chart
            .configure_mesh()
            .label_style(("sans-serif", 14))
            .x_label_formatter(&x_fmt)
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&label_of)
            .x_desc(x_desc)
            .draw()
            .map_err(err)?;
        let row = |i: usize| last - i32::try_from(i).unwrap_or(last);
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(row(i))),
                        (v.max(0.0), SegmentValue::Exact(row(i) + 1)),
                    ],
                    PALETTE[0].mix(0.8).filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }))
            .map_err(err)?;
        let count =
            TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                Text::new(
                    format!(" {}", thousands(*v)),
                    (v.max(0.0), SegmentValue::CenterOf(row(i))),
                    count.clone(),
                )
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A whole count with thousands separators: 12345 → "12,345".
pub(super) fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
