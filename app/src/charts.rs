//! Small SVG charts shared by the pages and the widgets: line charts of training curves
//! (with the moving average that smooths them) and token-by-token heatmaps. Each chart
//! comes with its text alternative: a summary in words for screen readers and the numbers
//! as a table under a disclosure, in a region that scrolls sideways on a phone.

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

/// Most rows a chart's table of numbers shows; longer curves are sampled evenly (the
/// last point always included).
const MAX_TABLE_ROWS: usize = 50;

/// Series with at most this many points get a dot at each point, so one evaluation (or a
/// few) shows as dots, not as an empty chart.
const MAX_MARKED_POINTS: usize = 40;

/// A value for a tick, a summary or a table cell: three decimals, or scientific notation
/// for tiny values (learning rates).
fn number(v: f64) -> String {
    if v.abs() < 1e-3 && v != 0.0 {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
    }
}

/// An x value (a step): whole numbers without decimals.
fn x_number(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        number(x)
    }
}

/// One series in words: where it starts and ends, and its lowest and highest points.
fn describe(name: &str, points: &[(f64, f64)], x_label: &str) -> String {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return format!("{name}: no points yet");
    };
    if points.len() == 1 {
        return format!(
            "{name}: one point, {} at {x_label} {}",
            number(first.1),
            x_number(first.0)
        );
    }
    let lowest = points
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or(*first);
    let highest = points
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or(*first);
    format!(
        "{name}: {} points, from {} at {x_label} {} to {} at {x_label} {}; lowest {} at {x_label} {}, highest {} at {x_label} {}",
        points.len(),
        number(first.1),
        x_number(first.0),
        number(last.1),
        x_number(last.0),
        number(lowest.1),
        x_number(lowest.0),
        number(highest.1),
        x_number(highest.0),
    )
}

/// A wrapper that scrolls its table sideways on a narrow screen, instead of the page: a
/// labelled region that keyboard users can focus to scroll it with the arrow keys.
#[component]
pub(crate) fn ScrollRegion(
    /// What the region holds, for screen readers.
    #[prop(into)]
    label: String,
    children: Children,
) -> impl IntoView {
    view! {
        <div class="table-scroll" role="region" tabindex="0" aria-label=label>
            {children()}
        </div>
    }
}

/// A small SVG line chart: one polyline per series (with dots when a series has few
/// points), axes with their ranges, a legend when there are several series, and the same
/// numbers as a table under a disclosure, for screen readers and for reading exact values.
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
    let series: Vec<(String, Vec<(f64, f64)>)> = series
        .into_iter()
        .map(|(name, points)| {
            let finite = points
                .into_iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            (name, finite)
        })
        .collect();
    let finite: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, points)| points.iter().copied())
        .collect();
    if finite.is_empty() {
        return view! { <p class="hint" data-testid=testid>{format!("{y_label} by {x_label}: no points yet.")}</p> }
            .into_any();
    }
    let (x0, x1) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
        (a.min(*x), b.max(*x))
    });
    let (y0, y1) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| {
        (a.min(*y), b.max(*y))
    });
    // One step, or a flat line, still gets a range: the points sit in its middle.
    let (x0, x1) = if x1 > x0 {
        (x0, x1)
    } else {
        (x0 - 1.0, x0 + 1.0)
    };
    let (y0, y1) = if y1 > y0 {
        (y0, y1)
    } else {
        let half = 1e-9_f64.max(y0.abs() * 0.1);
        (y0 - half, y0 + half)
    };
    let sx = move |x: f64| PAD + (x - x0) / (x1 - x0) * (W - 2.0 * PAD);
    let sy = move |y: f64| H - PAD + -(y - y0) / (y1 - y0) * (H - 2.0 * PAD);
    let summary = format!(
        "{y_label} by {x_label}. {}.",
        series
            .iter()
            .map(|(name, points)| describe(name, points, x_label))
            .collect::<Vec<_>>()
            .join(". ")
    );
    let legend = (series.len() > 1).then(|| {
        view! {
            <ul class="legend" aria-hidden="true">
                {series.iter().enumerate().map(|(index, (name, _))| view! {
                    <li>
                        <svg class="swatch" viewBox="0 0 28 10" width="28" height="10">
                            <line class=format!("series series-{index}") x1="1" y1="5" x2="27" y2="5" />
                        </svg>
                        {name.clone()}
                    </li>
                }).collect_view()}
            </ul>
        }
    });
    let lines = series
        .iter()
        .enumerate()
        .map(|(index, (name, points))| {
            let path = points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect::<Vec<_>>()
                .join(" ");
            // A lone point gets a bigger dot: it is the whole curve.
            let radius = if points.len() == 1 { "6" } else { "3.5" };
            let dots = (points.len() <= MAX_MARKED_POINTS).then(|| {
                points
                    .iter()
                    .map(|(x, y)| view! {
                        <circle class=format!("marker series-{index}") cx=format!("{:.1}", sx(*x)) cy=format!("{:.1}", sy(*y)) r=radius />
                    })
                    .collect_view()
            });
            view! {
                <g>
                    <polyline class=format!("series series-{index}") points=path><title>{name.clone()}</title></polyline>
                    {dots}
                </g>
            }
        })
        .collect_view();
    let single = series.len() == 1;
    let table = chart_table(&series, x_label, y_label);
    view! {
        <div class="chart">
            {legend}
            <svg class="line-chart" class:single=single data-testid=testid viewBox=format!("0 0 {W} {H}") role="img" aria-label=summary>
                <line class="axis" x1=PAD.to_string() y1=(H - PAD).to_string() x2=(W - PAD).to_string() y2=(H - PAD).to_string() />
                <line class="axis" x1=PAD.to_string() y1=PAD.to_string() x2=PAD.to_string() y2=(H - PAD).to_string() />
                <text class="tick" x=(PAD - 4.0).to_string() y=(H - PAD).to_string() text-anchor="end">{number(y0)}</text>
                <text class="tick" x=(PAD - 4.0).to_string() y=(PAD + 4.0).to_string() text-anchor="end">{number(y1)}</text>
                <text class="tick" x=PAD.to_string() y=(H - PAD + 16.0).to_string()>{format!("{x0:.0}")}</text>
                <text class="tick" x=(W - PAD).to_string() y=(H - PAD + 16.0).to_string() text-anchor="end">{format!("{x1:.0}")}</text>
                <text class="axis-label" x=(W / 2.0).to_string() y=(H - 8.0).to_string() text-anchor="middle">{x_label}</text>
                <text class="axis-label" x="12" y=(H / 2.0).to_string() transform=format!("rotate(-90 12 {})", H / 2.0) text-anchor="middle">{y_label}</text>
                {lines}
            </svg>
            {table}
        </div>
    }
    .into_any()
}

/// A chart's numbers as a table under a disclosure: one row per x value (sampled evenly
/// when there are many), one column per series.
fn chart_table(
    series: &[(String, Vec<(f64, f64)>)],
    x_label: &'static str,
    y_label: &'static str,
) -> AnyView {
    let mut xs: Vec<f64> = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(x, _)| *x))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let total = xs.len();
    let stride = total.div_ceil(MAX_TABLE_ROWS).max(1);
    let rows: Vec<f64> = xs
        .iter()
        .enumerate()
        .filter(|(i, _)| i % stride == 0 || *i + 1 == total)
        .map(|(_, x)| *x)
        .collect();
    let lookup: Vec<std::collections::HashMap<u64, f64>> = series
        .iter()
        .map(|(_, points)| points.iter().map(|(x, y)| (x.to_bits(), *y)).collect())
        .collect();
    let caption = if stride > 1 {
        format!(
            "{y_label} by {x_label}: {} of {total} rows, every {stride}th {x_label} and the last",
            rows.len()
        )
    } else {
        format!("{y_label} by {x_label}")
    };
    let names = series
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let head = series
        .iter()
        .map(|(name, _)| view! { <th scope="col">{name.clone()}</th> })
        .collect_view();
    let body = rows
        .into_iter()
        .map(|x| {
            let cells = lookup
                .iter()
                .map(|values| {
                    view! { <td>{values.get(&x.to_bits()).map_or_else(|| "–".to_string(), |y| number(*y))}</td> }
                })
                .collect_view();
            view! { <tr><th scope="row">{x_number(x)}</th>{cells}</tr> }
        })
        .collect_view();
    view! {
        <details class="chart-data">
            <summary>{format!("The numbers: {y_label} by {x_label}")}</summary>
            <ScrollRegion label=format!("Table of {y_label} by {x_label}: {names}")>
                <table class="data-table numbers">
                    <caption>{caption}</caption>
                    <thead><tr><th scope="col">{x_label}</th>{head}</tr></thead>
                    <tbody>{body}</tbody>
                </table>
            </ScrollRegion>
        </details>
    }
    .into_any()
}

/// The attention probabilities a heatmap (or the lines view) draws, shown for p in the
/// key: the heatmap's cells are as opaque as the square root of the probability.
const SCALE: [f32; 5] = [0.0, 0.1, 0.25, 0.5, 1.0];

/// What an attention map shows, in one sentence.
fn describe_attention(tokens: &[String], matrix: &[f32]) -> String {
    let n = tokens.len();
    let strongest = (0..n * n)
        .filter_map(|i| matrix.get(i).map(|p| (i, *p)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let strongest = strongest
        .map(|(i, p)| {
            format!(
                " The strongest: \u{201c}{}\u{201d} attends to \u{201c}{}\u{201d} with {p:.2}.",
                tokens[i / n],
                tokens[i % n]
            )
        })
        .unwrap_or_default();
    format!(
        "Attention between {n} tokens: each row is a token, each column a token it attends to; darker cells mean more attention, and each row adds up to 1.{strongest} The numbers are in the table below."
    )
}

/// The key of the attention heatmap: what a shade means, in numbers.
#[component]
fn HeatScale() -> impl IntoView {
    view! {
        <p class="heat-scale">
            <span>"Attention:"</span>
            {SCALE.iter().map(|p| view! {
                <span class="heat-key">
                    <span class="heat-swatch" style=format!("--alpha: {:.3}", p.sqrt())></span>
                    {format!("{p}")}
                </span>
            }).collect_view()}
        </p>
    }
}

/// An attention map's probabilities as a table under a disclosure: rows are the tokens
/// that attend, columns the tokens attended to.
#[component]
pub(crate) fn AttentionTable(
    /// Whose map it is, telling it apart from others on the page.
    #[prop(into)]
    name: String,
    /// The tokens, labelling both the rows and the columns.
    tokens: Vec<String>,
    /// The probabilities row by row.
    matrix: Vec<f32>,
) -> impl IntoView {
    let n = tokens.len();
    let head = tokens
        .iter()
        .map(|t| view! { <th scope="col">{t.clone()}</th> })
        .collect_view();
    let body = tokens
        .iter()
        .enumerate()
        .map(|(q, token)| {
            let cells = (0..n)
                .map(|k| {
                    let p = matrix.get(q * n + k).copied().unwrap_or(0.0);
                    view! { <td>{format!("{p:.2}")}</td> }
                })
                .collect_view();
            view! { <tr><th scope="row">{token.clone()}</th>{cells}</tr> }
        })
        .collect_view();
    view! {
        <details class="chart-data">
            <summary>"The numbers: attention from each token (row) to each token (column)"</summary>
            <ScrollRegion label=format!("Table of attention probabilities: {name}")>
                <table class="data-table numbers">
                    <caption>"Attention from the row's token to the column's token; each row adds up to 1"</caption>
                    <thead><tr><th scope="col">"from ↓ to →"</th>{head}</tr></thead>
                    <tbody>{body}</tbody>
                </table>
            </ScrollRegion>
        </details>
    }
}

/// An SVG grid: rows are queries, columns keys, darkness the probability; with a key of
/// the shades and the numbers as a table.
#[component]
pub(crate) fn Heatmap(
    /// Whose map it is (the model, the step), telling it apart from others on the page.
    #[prop(into)]
    name: String,
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
    let summary = describe_attention(&tokens, &matrix);
    view! {
        <div class="heatmap-scroll" role="region" tabindex="0" aria-label=format!("Attention heatmap: {name}")>
            <svg class="heatmap" data-testid="heatmap" viewBox=format!("0 0 {width} {size}") width=width.to_string() height=size.to_string() role="img" aria-label=summary>
                {columns}
                {rows}
                {cells}
            </svg>
        </div>
        <HeatScale />
        <AttentionTable name tokens matrix />
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

    #[test]
    fn a_series_is_described_in_words() {
        assert_eq!(
            describe("validation loss", &[(40.0, 0.6928)], "step"),
            "validation loss: one point, 0.693 at step 40"
        );
        assert_eq!(
            describe("loss", &[(1.0, 0.9), (2.0, 0.2), (3.0, 0.4)], "step"),
            "loss: 3 points, from 0.900 at step 1 to 0.400 at step 3; lowest 0.200 at step 2, \
             highest 0.900 at step 1"
        );
        assert_eq!(describe("lr", &[], "step"), "lr: no points yet");
        assert_eq!(number(2e-5), "2.0e-5");
        assert_eq!(x_number(12.0), "12");
    }

    #[test]
    fn an_attention_map_is_described_by_its_strongest_link() {
        let tokens = vec!["[CLS]".to_string(), "good".to_string()];
        let text = describe_attention(&tokens, &[0.3, 0.7, 0.9, 0.1]);
        assert!(text.starts_with("Attention between 2 tokens"), "{text}");
        assert!(
            text.contains("\u{201c}good\u{201d} attends to \u{201c}[CLS]\u{201d} with 0.90"),
            "{text}"
        );
    }
}
