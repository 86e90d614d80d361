//! Small SVG charts shared by the pages and the widgets: line charts of training curves
//! (with the moving average that smooths them) and token-by-token heatmaps.

use leptos::prelude::*;

/// Exponential moving average with weight `alpha` on the past (0 = raw).
pub(crate) fn ema(points: &[(f64, f64)], alpha: f64) -> Vec<(f64, f64)> {
    let mut smoothed = Vec::with_capacity(points.len());
    let mut state: Option<f64> = None;
    for &(x, y) in points {
        if !y.is_finite() {
            continue;
        }
        let next = match state {
            Some(previous) => alpha * previous + (1.0 - alpha) * y,
            None => y,
        };
        state = Some(next);
        smoothed.push((x, next));
    }
    smoothed
}

/// A small SVG line chart: one polyline per series, axes with their ranges.
#[component]
pub(crate) fn LineChart(
    /// The chart's `data-testid`.
    testid: &'static str,
    /// Each line's name (its tooltip) and (x, y) points; non-finite points are skipped.
    series: Vec<(String, Vec<(f64, f64)>)>,
    /// What the x axis counts.
    x_label: &'static str,
    /// What the y axis measures.
    y_label: &'static str,
) -> impl IntoView {
    const W: f64 = 560.0;
    const H: f64 = 200.0;
    const PAD: f64 = 58.0;
    let finite: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, points)| points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if finite.is_empty() {
        return view! { <p class="hint" data-testid=testid>"No points yet."</p> }.into_any();
    }
    let (x0, x1) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
        (a.min(*x), b.max(*x))
    });
    let (y0, y1) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| {
        (a.min(*y), b.max(*y))
    });
    let (x1, y1) = (
        if x1 > x0 { x1 } else { x0 + 1.0 },
        if y1 > y0 {
            y1
        } else {
            y0 + 1e-9_f64.max(y0.abs() * 0.1)
        },
    );
    let sx = move |x: f64| PAD + (x - x0) / (x1 - x0) * (W - 2.0 * PAD);
    let sy = move |y: f64| H - PAD + -(y - y0) / (y1 - y0) * (H - 2.0 * PAD);
    let label = |v: f64| {
        if v.abs() < 1e-3 && v != 0.0 {
            format!("{v:.1e}")
        } else {
            format!("{v:.3}")
        }
    };
    let lines = series
        .into_iter()
        .enumerate()
        .map(|(index, (name, points))| {
            let path = points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect::<Vec<_>>()
                .join(" ");
            view! { <polyline class=format!("series series-{index}") points=path><title>{name}</title></polyline> }
        })
        .collect_view();
    view! {
        <svg class="line-chart" data-testid=testid viewBox=format!("0 0 {W} {H}") role="img" aria-label=format!("{y_label} by {x_label}")>
            <line class="axis" x1=PAD.to_string() y1=(H - PAD).to_string() x2=(W - PAD).to_string() y2=(H - PAD).to_string() />
            <line class="axis" x1=PAD.to_string() y1=PAD.to_string() x2=PAD.to_string() y2=(H - PAD).to_string() />
            <text class="tick" x=(PAD - 4.0).to_string() y=(H - PAD).to_string() text-anchor="end">{label(y0)}</text>
            <text class="tick" x=(PAD - 4.0).to_string() y=(PAD + 4.0).to_string() text-anchor="end">{label(y1)}</text>
            <text class="tick" x=PAD.to_string() y=(H - PAD + 16.0).to_string()>{format!("{x0:.0}")}</text>
            <text class="tick" x=(W - PAD).to_string() y=(H - PAD + 16.0).to_string() text-anchor="end">{format!("{x1:.0}")}</text>
            <text class="axis-label" x=(W / 2.0).to_string() y=(H - 8.0).to_string() text-anchor="middle">{x_label}</text>
            <text class="axis-label" x="12" y=(H / 2.0).to_string() transform=format!("rotate(-90 12 {})", H / 2.0) text-anchor="middle">{y_label}</text>
            {lines}
        </svg>
    }
    .into_any()
}

/// An SVG grid: rows are queries, columns keys, darkness the probability.
#[component]
pub(crate) fn Heatmap(
    /// The tokens, labelling both the rows and the columns.
    tokens: Vec<String>,
    /// The probabilities row by row (`tokens.len()` squared of them).
    matrix: Vec<f32>,
) -> impl IntoView {
    const CELL: f32 = 26.0;
    const LABEL: f32 = 92.0;
    let n = tokens.len();
    let size = LABEL + CELL * n as f32 + 4.0;
    // Room on the right for the last column's slanted label.
    let width = size + 40.0;
    let short = |t: &String| {
        if t.chars().count() > 12 {
            format!("{}…", t.chars().take(11).collect::<String>())
        } else {
            t.clone()
        }
    };
    let columns = tokens.iter().enumerate().map(|(k, token)| {
        let x = LABEL + CELL * k as f32 + CELL * 0.6;
        view! {
            <text class="key" x=x.to_string() y=(LABEL - 6.0).to_string() transform=format!("rotate(-50 {x} {})", LABEL - 6.0)>
                {short(token)}
            </text>
        }
    }).collect_view();
    let rows = tokens.iter().enumerate().map(|(q, token)| {
        view! {
            <text class="query" x=(LABEL - 6.0).to_string() y=(LABEL + CELL * q as f32 + CELL * 0.68).to_string() text-anchor="end">
                {short(token)}
            </text>
        }
    }).collect_view();
    let cells = (0..n * n)
        .map(|i| {
            let (q, k) = (i / n, i % n);
            let p = matrix.get(i).copied().unwrap_or(0.0);
            let title = format!("{} \u{2192} {}: {:.2}", tokens[q], tokens[k], p);
            view! {
                <rect
                    x=(LABEL + CELL * k as f32).to_string()
                    y=(LABEL + CELL * q as f32).to_string()
                    width=(CELL - 1.0).to_string()
                    height=(CELL - 1.0).to_string()
                    fill-opacity=format!("{:.3}", p.clamp(0.0, 1.0).sqrt())
                >
                    <title>{title}</title>
                </rect>
            }
        })
        .collect_view();
    view! {
        <div class="heatmap-scroll">
            <svg class="heatmap" data-testid="heatmap" viewBox=format!("0 0 {width} {size}") width=width.to_string() height=size.to_string() role="img" aria-label="Attention heatmap">
                {columns}
                {rows}
                {cells}
            </svg>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_moving_average_smooths_and_starts_at_the_first_point() {
        assert_eq!(
            ema(&[(1.0, 1.0), (2.0, 0.0)], 0.5),
            vec![(1.0, 1.0), (2.0, 0.5)]
        );
        assert_eq!(
            ema(&[(1.0, 1.0), (2.0, 0.0)], 0.0),
            vec![(1.0, 1.0), (2.0, 0.0)]
        );
        assert_eq!(ema(&[(1.0, f64::NAN), (2.0, 3.0)], 0.9), vec![(2.0, 3.0)]);
    }
}
