//! Charts over time that are not lines: outcomes stacked bucket by bucket, and a step chart of
//! named states (the breaker per replica), on the same backdrop of faults and violations.

use plotters::prelude::*;

use super::draw::{
    backdrop, err, headroom, kinds, legend, lines, mesh, Area, Backdrop, Series, H, W,
};

/// One layer of a stacked chart: its name, colour and value per bucket.
pub(super) struct Layer {
    pub(super) name: &'static str,
    pub(super) color: RGBColor,
    pub(super) values: Vec<f64>,
}

/// Stacks layers bucket by bucket (bucket `i` spans `starts[i]..starts[i] + width`).
pub(super) fn stacked_chart(
    title: &str,
    y_desc: &str,
    starts: &[f64],
    width: f64,
    layers: &[Layer],
    back: &Backdrop<'_>,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root: Area<'_> = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let tops: Vec<f64> = (0..starts.len())
            .map(|i| {
                layers
                    .iter()
                    .map(|l| l.values.get(i).copied().unwrap_or(0.0))
                    .sum()
            })
            .collect();
        let y_max = tops.iter().copied().fold(1.0f64, f64::max)
            * headroom(layers.len() + kinds(back.faults) + usize::from(!back.marks.is_empty()));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..back.x_max.max(0.1), 0f64..y_max)
            .map_err(err)?;
        mesh(&mut chart, y_desc)?;
        backdrop(&mut chart, back, 0.0, y_max)?;
        let mut base = vec![0.0f64; starts.len()];
        for layer in layers {
            let color = layer.color;
            let mut bars = Vec::new();
            for (i, start) in starts.iter().enumerate() {
                let v = layer.values.get(i).copied().unwrap_or(0.0);
                if v > 0.0 {
                    bars.push(Rectangle::new(
                        [(*start, base[i]), (start + width * 0.92, base[i] + v)],
                        color.mix(0.85).filled(),
                    ));
                }
                base[i] += v;
            }
            chart
                .draw_series(bars)
                .map_err(err)?
                .label(layer.name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], color.mix(0.85).filled())
                });
        }
        legend(&mut chart)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Draws, per series, a step line over named states (`states[v]` names value `v`).
pub(super) fn state_chart(
    title: &str,
    states: &[&str],
    series: &[Series],
    back: &Backdrop<'_>,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root: Area<'_> = SVGBackend::with_string(&mut svg, (W, 220)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let top = states.len() as f64 - 0.5;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(90)
            .build_cartesian_2d(0f64..back.x_max.max(0.1), -0.5f64..top)
            .map_err(err)?;
        let name = |v: &f64| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                states
                    .get(i as usize)
                    .map(|s| (*s).to_owned())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .label_style(("sans-serif", 14))
            .x_desc("seconds")
            .y_labels(states.len() * 2 + 1)
            .y_label_formatter(&name)
            .draw()
            .map_err(err)?;
        backdrop(&mut chart, back, -0.5, top)?;
        let stepped: Vec<Series> = series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                // Replicas are drawn slightly apart so equal states do not hide each other.
                let lift = i as f64 * 0.06;
                let mut points = Vec::new();
                for pair in s.points.windows(2) {
                    let ((t0, v0), (t1, v1)) = (pair[0], pair[1]);
                    points.extend([(t0, v0 + lift), (t1, v0 + lift), (t1, v1 + lift)]);
                }
                if let [only] = s.points.as_slice() {
                    points.push((only.0, only.1 + lift));
                }
                Series {
                    name: s.name.clone(),
                    points,
                }
            })
            .collect();
        lines(&mut chart, &stepped, -0.5)?;
        legend(&mut chart)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
