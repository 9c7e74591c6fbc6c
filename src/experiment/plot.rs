//! The plots of the reports, inline SVG drawn with plotters: line charts with error bars, the
//! Pareto front and a legend beside the plotting area ([`chart_div`]), and the code-usage rank
//! plot on log axes ([`rank_div`]).
//!
//! Every plot is a `<div class="plot">`. A chart's carries `data-curves` (curves drawn),
//! `data-points` (data points drawn) and `data-front` (points of the Pareto front, 0 where none is
//! drawn); a chart without points holds a note instead of an SVG, with `data-curves="0"
//! data-points="0"`. Inside a chart's SVG the elements are laid out so that they can be counted:
//! - `<polyline>`: one a curve (plotters' `LineSeries`, one even for a curve of one point), plus
//!   one for the Pareto front where the plot has one: `data-curves + (data-front > 0)`;
//! - `<circle>`: a filled marker a data point and a black ring a front point:
//!   `data-points + data-front`;
//! - error bars (± one standard deviation over seeds), legend swatches and the frame of the
//!   plotting area are `<rect>`s and the grid lines `<line>`s, so that they add to neither count
//!   (plotters' own axis lines and tick marks, polylines, are drawn transparent: not at all).

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::page::esc;

/// The non-dominated points of `points` (lower is better on both axes): the indices of the
/// points for which no other point has x <= and y <= with at least one strictly smaller, in
/// increasing x (then y, then index). Equal points do not dominate each other, so all of them
/// are on the front where one is. The points should be finite.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let dominated = |(x, y): (f64, f64)| {
        points
            .iter()
            .any(|&(a, b)| a <= x && b <= y && (a < x || b < y))
    };
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| !dominated(points[i]))
        .collect();
    front.sort_by(|&i, &j| {
        let (p, q) = (points[i], points[j]);
        p.0.total_cmp(&q.0)
            .then(p.1.total_cmp(&q.1))
            .then(i.cmp(&j))
    });
    front
}

/// A point of a chart: means over seeds and their standard deviations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pt {
    pub x: f64,
    pub y: f64,
    pub sx: f64,
    pub sy: f64,
}

/// A curve of a chart: a legend label, a colour and its points in increasing x.
pub struct Curve {
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<Pt>,
}

/// What a chart shows.
pub struct ChartSpec {
    /// The id of the plot's div.
    pub id: String,
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    /// Curves with at least one point each.
    pub curves: Vec<Curve>,
    /// Whether to mark the Pareto front over all the points (lower is better in x and y).
    pub pareto: bool,
    /// Whether x is on a log2 scale (x must then be positive).
    pub log2_x: bool,
}

/// A plot's div holding a note instead of a chart (no curves, no points).
pub fn note_div(id: &str, note: &str) -> String {
    format!(
        "<div class=\"plot\" id=\"{id}\" data-curves=\"0\" data-points=\"0\" data-front=\"0\">\
         <p class=\"note\">{}</p></div>\n",
        esc(note)
    )
}

/// A plot's div: the chart of `spec` as inline SVG with its counts (`data-curves`,
/// `data-points`, `data-front`), or, where it has no points, a note ("TITLE: `empty`").
pub fn chart_div(spec: &ChartSpec, empty: &str) -> anyhow::Result<String> {
    let points: Vec<(f64, f64)> = spec
        .curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| (p.x, p.y)))
        .collect();
    if points.is_empty() {
        return Ok(note_div(&spec.id, &format!("{}: {empty}", spec.title)));
    }
    let front: Vec<(f64, f64)> = if spec.pareto {
        pareto_front(&points)
            .into_iter()
            .map(|i| points[i])
            .collect()
    } else {
        Vec::new()
    };
    let svg = chart_svg(spec, &front)?;
    Ok(format!(
        "<div class=\"plot\" id=\"{}\" data-curves=\"{}\" data-points=\"{}\" data-front=\"{}\">{svg}</div>\n",
        spec.id,
        spec.curves.len(),
        points.len(),
        front.len()
    ))
}

/// `lo..hi` widened to show it with a margin: by `frac` of its length each side, or, where it is
/// a single value, by a tenth of the value (one where the value is 0).
pub fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    let pad = if hi > lo {
        (hi - lo) * frac
    } else if lo != 0.0 {
        lo.abs() * 0.1
    } else {
        1.0
    };
    (lo - pad, hi + pad)
}

/// The axis ranges (x, y) of a chart that show every point with its error bars: padded by 5% in
/// x and 8% in y (see [`padded`]); on a log2 x axis, half an octave each side. A unit range where
/// there are no points.
pub fn chart_ranges(curves: &[Curve], log2_x: bool) -> ((f64, f64), (f64, f64)) {
    let sd = |s: f64| if s.is_finite() { s.abs() } else { 0.0 };
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in curves.iter().flat_map(|c| &c.points) {
        let sx = if log2_x { 0.0 } else { sd(p.sx) };
        (x0, x1) = (x0.min(p.x - sx), x1.max(p.x + sx));
        (y0, y1) = (y0.min(p.y - sd(p.sy)), y1.max(p.y + sd(p.sy)));
    }
    if x0 > x1 {
        return ((0.0, 1.0), (0.0, 1.0));
    }
    let x = if log2_x {
        let x0 = if x0 > 0.0 { x0 } else { 1.0 };
        (
            x0 / std::f64::consts::SQRT_2,
            x1.max(x0) * std::f64::consts::SQRT_2,
        )
    } else {
        padded(x0, x1, 0.05)
    };
    (x, padded(y0, y1, 0.08))
}

/// A tick label of a log axis: an integer where the tick is one.
/// A tick of a linear axis: as short as its value allows (50, 0.01, 1.5; not 50.0, 0.010).
fn tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        return format!("{}", v.round() as i64);
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn int_tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.3}")
    }
}

/// The chart of `spec` as SVG: axes, the curves (error bars, line and markers each), the Pareto
/// front `front` (rings joined by a thin black line; none where empty) and the legend.
fn chart_svg(spec: &ChartSpec, front: &[(f64, f64)]) -> anyhow::Result<String> {
    let ((x0, x1), (y0, y1)) = chart_ranges(&spec.curves, spec.log2_x);
    // The legend stands right of the plotting area: room for its longest label.
    let longest = spec
        .curves
        .iter()
        .map(|c| c.label.chars().count())
        .chain((!front.is_empty()).then_some("Pareto front".len()))
        .max()
        .unwrap_or(0);
    let legend = 6 * longest as u32 + 40;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (380 + legend, 310)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&spec.title, ("sans-serif", 15))
            .margin(8)
            .margin_right(legend + 8)
            .x_label_area_size(40)
            .y_label_area_size(62);
        if spec.log2_x {
            let mut chart = builder.build_cartesian_2d((x0..x1).log_scale().base(2.0), y0..y1)?;
            chart
                .configure_mesh()
                .x_desc(spec.x_desc.as_str())
                .y_desc(spec.y_desc.as_str())
                .x_labels(8)
                .y_labels(5)
                .x_label_formatter(&int_tick)
                .axis_style(TRANSPARENT)
                .draw()?;
            draw_curves(&root, &mut chart, spec, front)?;
        } else {
            let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc(spec.x_desc.as_str())
                .y_desc(spec.y_desc.as_str())
                .x_labels(5)
                .y_labels(5)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .axis_style(TRANSPARENT)
                .draw()?;
            draw_curves(&root, &mut chart, spec, front)?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// Draws into `chart` a frame around the plotting area (a `<rect>`), then each curve of `spec`:
/// its error bars (± one standard deviation in x and y, where positive, as `<rect>`s on `root`),
/// its line (one `LineSeries`: one `<polyline>`) and a filled circle a point; then the Pareto
/// front `front` (a thin black `LineSeries` and a black ring a point) and the legend, right of
/// the plotting area (swatches as `<rect>`s).
fn draw_curves<'a, 'b: 'a, X>(
    root: &DrawingArea<SVGBackend<'b>, Shift>,
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, RangedCoordf64>>,
    spec: &ChartSpec,
    front: &[(f64, f64)],
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
{
    // The frame of the plotting area, in place of the axes (drawn transparent, since plotters
    // draws them and their tick marks as polylines).
    let (xr, yr) = (chart.x_range(), chart.y_range());
    chart.draw_series(std::iter::once(Rectangle::new(
        [(xr.start, yr.start), (xr.end, yr.end)],
        BLACK.stroke_width(1),
    )))?;
    let shown = |s: f64| s.is_finite() && s > 0.0;
    for c in &spec.curves {
        let color = c.color;
        let bar = color.mix(0.6).filled();
        for p in &c.points {
            if shown(p.sx) && !spec.log2_x {
                let a = chart.backend_coord(&(p.x - p.sx, p.y));
                let b = chart.backend_coord(&(p.x + p.sx, p.y));
                for r in [
                    [(a.0, a.1), (b.0, a.1 + 1)],
                    [(a.0, a.1 - 3), (a.0 + 1, a.1 + 4)],
                    [(b.0, b.1 - 3), (b.0 + 1, b.1 + 4)],
                ] {
                    root.draw(&Rectangle::new(r, bar))?;
                }
            }
            if shown(p.sy) {
                let a = chart.backend_coord(&(p.x, p.y + p.sy));
                let b = chart.backend_coord(&(p.x, p.y - p.sy));
                for r in [
                    [(a.0, a.1), (a.0 + 1, b.1)],
                    [(a.0 - 3, a.1), (a.0 + 4, a.1 + 1)],
                    [(b.0 - 3, b.1), (b.0 + 4, b.1 + 1)],
                ] {
                    root.draw(&Rectangle::new(r, bar))?;
                }
            }
        }
        chart.draw_series(LineSeries::new(
            c.points.iter().map(|p| (p.x, p.y)),
            color.stroke_width(2),
        ))?;
        chart.draw_series(
            c.points
                .iter()
                .map(|p| Circle::new((p.x, p.y), 3, color.filled())),
        )?;
    }
    if !front.is_empty() {
        chart.draw_series(LineSeries::new(
            front.iter().copied(),
            BLACK.stroke_width(1),
        ))?;
        chart.draw_series(
            front
                .iter()
                .map(|&p| Circle::new(p, 6, BLACK.stroke_width(1))),
        )?;
    }
    // The legend, drawn on `root` (the plotting area clips what is drawn on it): an entry a
    // curve and one for the front, each a swatch and a label.
    let (px, py) = chart.plotting_area().get_pixel_range();
    let entries = spec
        .curves
        .iter()
        .map(|c| (c.label.as_str(), c.color, 2))
        .chain((!front.is_empty()).then_some(("Pareto front", BLACK, 1)));
    for (i, (label, color, thick)) in entries.enumerate() {
        let (x, y) = (px.end + 10, py.start + 4 + 16 * i as i32);
        root.draw(&Rectangle::new(
            [(x, y + 6), (x + 16, y + 6 + thick)],
            color.filled(),
        ))?;
        root.draw(&Text::new(label, (x + 22, y), ("sans-serif", 12)))?;
    }
    Ok(())
}

/// The code-usage plot of a code histogram (`id`), a rank plot on log axes: the codes sorted by
/// count, a bar a used code from rank r to r + 1 up to its count, rank and count on log10 axes
/// (ticks at the powers of ten), so that a handful of used codes and a spread over hundreds
/// both show. The caption says how many of the codes were used; unused codes (count 0) have no
/// place on a log axis and are not drawn.
pub fn rank_div(id: &str, title: &str, counts: &[u64], color: RGBColor) -> anyhow::Result<String> {
    let mut sorted: Vec<u64> = counts.iter().copied().filter(|&c| c > 0).collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let top = sorted.first().copied().unwrap_or(1) as f64;
    let caption = format!("{title}: {} of {} codes used", sorted.len(), counts.len());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (380, 310)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&caption, ("sans-serif", 15))
            .margin(8)
            .margin_right(16)
            .x_label_area_size(40)
            .y_label_area_size(62)
            .build_cartesian_2d(
                (1.0..(counts.len().max(1) + 1) as f64).log_scale(),
                (0.5..top * 2.0).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("code rank (log scale)")
            .y_desc("count (log scale)")
            .x_labels(4)
            .y_labels(6)
            .x_label_formatter(&int_tick)
            .y_label_formatter(&int_tick)
            .draw()?;
        chart.draw_series(sorted.iter().enumerate().map(|(i, &c)| {
            let r = (i + 1) as f64;
            Rectangle::new([(r, 0.5), (r + 1.0, c as f64)], color.filled())
        }))?;
        root.present()?;
    }
    Ok(format!(
        "<div class=\"plot\" id=\"{id}\" data-scale=\"log-log\">{svg}</div>\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::super::page::COLORS;
    use super::*;

    #[test]
    fn linear_ticks_are_short() {
        let t = |v: f64| tick(&v);
        assert_eq!(
            [
                t(50.0),
                t(400.0),
                t(0.01),
                t(1.5),
                t(0.0125),
                t(-2.0),
                t(0.0)
            ],
            ["50", "400", "0.01", "1.5", "0.0125", "-2", "0"]
        );
    }

    #[test]
    fn pareto_front_of_hand_made_sets() {
        let pts = [
            (1.0, 5.0), // 0: front
            (2.0, 3.0), // 1: front
            (2.0, 4.0), // 2: dominated by 1 (same x, higher y)
            (3.0, 3.0), // 3: dominated by 1 (same y, higher x)
            (4.0, 1.0), // 4: front
            (5.0, 1.0), // 5: dominated by 4
            (0.5, 6.0), // 6: front (lowest x)
            (6.0, 7.0), // 7: dominated by all of the front
        ];
        assert_eq!(pareto_front(&pts), vec![6, 0, 1, 4]);
        // Equal points do not dominate each other; both are on the front.
        assert_eq!(
            pareto_front(&[(2.0, 2.0), (1.0, 1.0), (1.0, 1.0)]),
            vec![1, 2]
        );
        assert_eq!(pareto_front(&[(3.0, -1.0)]), vec![0]);
        assert_eq!(pareto_front(&[]), Vec::<usize>::new());
        // A diagonal of trade-offs: all on the front, by x.
        assert_eq!(
            pareto_front(&[(3.0, 1.0), (1.0, 3.0), (2.0, 2.0)]),
            vec![1, 2, 0]
        );
    }

    #[test]
    fn ranges_show_error_bars() {
        let curve = |points: Vec<Pt>| Curve {
            label: String::new(),
            color: COLORS[0],
            points,
        };
        let pt = |x, y, sx, sy| Pt { x, y, sx, sy };
        let ((x0, x1), (y0, y1)) = chart_ranges(
            &[curve(vec![
                pt(0.0, 0.0, 1.0, 2.0),
                pt(8.0, 10.0, f64::NAN, 1.0),
            ])],
            false,
        );
        // x from -1 to 8 (NaN sd ignored) padded by 5%; y from -2 to 11 padded by 8%.
        assert!((x0 - -1.45).abs() < 1e-12 && (x1 - 8.45).abs() < 1e-12);
        assert!((y0 - -3.04).abs() < 1e-12 && (y1 - 12.04).abs() < 1e-12);
        let ((x0, x1), _) = chart_ranges(&[curve(vec![pt(64.0, 1.0, 5.0, 0.0)])], true);
        assert!((x0 * x1 - 64.0 * 64.0).abs() < 1e-9 && x1 / x0 > 1.99 && x1 / x0 < 2.01);
        assert_eq!(chart_ranges(&[], false), ((0.0, 1.0), (0.0, 1.0)));
    }

    /// The `<text>` elements of an SVG: their attributes and their text.
    fn texts(svg: &str) -> Vec<(&str, &str)> {
        svg.split("<text")
            .skip(1)
            .map(|t| {
                let (attrs, rest) = t.split_once('>').unwrap();
                (attrs, rest[..rest.find("</text>").unwrap()].trim())
            })
            .collect()
    }

    /// `name="..."` of an element's attributes, as a number.
    fn num(attrs: &str, name: &str) -> f64 {
        let v = attrs.split(&format!(" {name}=\"")).nth(1).unwrap();
        v[..v.find('"').unwrap()].parse().unwrap()
    }

    /// The y-axis tick labels of a plot (right-aligned numbers): value and height, top down.
    fn y_ticks(svg: &str) -> Vec<(f64, f64)> {
        texts(svg)
            .into_iter()
            .filter(|(a, _)| a.contains("text-anchor=\"end\""))
            .filter_map(|(a, t)| Some((t.parse().ok()?, num(a, "y"))))
            .collect()
    }

    /// Vq's handful of codes and a spread over 200 codes, on log axes: the count axis has a tick
    /// at every power of ten up to the largest count, a decade the same height, and a bar a used
    /// code.
    #[test]
    fn code_usage_is_drawn_on_log_axes() {
        let few: Vec<u64> = (0..512)
            .map(|i| if i < 7 { 3000 * (i + 1) } else { 0 })
            .collect();
        let spread: Vec<u64> = (0..512)
            .map(|i| if i < 200 { 1 + i * 3 } else { 0 })
            .collect();
        for (counts, top, used) in [(&few, 10_000.0, 7), (&spread, 1000.0, 200)] {
            let div = rank_div("h", "q", counts, COLORS[0]).unwrap();
            assert!(
                div.contains(&format!("q: {used} of 512 codes used")),
                "{div}"
            );
            let ticks = y_ticks(&div);
            let values: Vec<f64> = ticks.iter().map(|t| t.0).collect();
            let decades: Vec<f64> = (0..values.len()).map(|i| 10f64.powi(i as i32)).collect();
            assert_eq!(values, decades, "{div}");
            assert_eq!(values.last(), Some(&top));
            let steps: Vec<f64> = ticks.windows(2).map(|w| w[0].1 - w[1].1).collect();
            assert!(steps[0] > 20.0, "{steps:?}");
            assert!(
                steps.iter().all(|s| (s - steps[0]).abs() <= 1.0),
                "{steps:?}"
            );
            // The background and a bar a used code.
            assert_eq!(div.matches("<rect").count(), 1 + used, "{div}");
        }
        // No code used: an empty plot, not an error.
        let div = rank_div("h", "q", &[0, 0], COLORS[0]).unwrap();
        assert!(div.contains("q: 0 of 2 codes used"));
    }

    /// The legend stands right of the plotting area: every label starts past the frame's right
    /// edge.
    #[test]
    fn legends_stand_outside_the_plotting_area() {
        let curve = |label: &str, y: f64| Curve {
            label: label.into(),
            color: COLORS[1],
            points: (1..=5)
                .map(|x| Pt {
                    x: x as f64,
                    y: y * x as f64,
                    sx: 0.0,
                    sy: 0.0,
                })
                .collect(),
        };
        for log2_x in [false, true] {
            let spec = ChartSpec {
                id: "c".into(),
                title: "t".into(),
                x_desc: "x".into(),
                y_desc: "y".into(),
                curves: vec![curve("vq", 1.0), curve("a much longer label", 2.0)],
                pareto: !log2_x,
                log2_x,
            };
            let div = chart_div(&spec, "").unwrap();
            let frame = div
                .split("<rect")
                .find(|r| r.contains("fill=\"none\""))
                .unwrap_or_else(|| panic!("no frame in {div}"));
            let right = num(frame, "x") + num(frame, "width");
            let width = num(div.split("<svg").nth(1).unwrap(), "width");
            let labels = ["vq", "a much longer label"]
                .into_iter()
                .chain((!log2_x).then_some("Pareto front"));
            for label in labels {
                let (attrs, _) = texts(&div)
                    .into_iter()
                    .find(|(_, t)| *t == label)
                    .unwrap_or_else(|| panic!("no legend {label} in {div}"));
                let x = num(attrs, "x");
                assert!(x > right, "{label} at x = {x}, the frame ends at {right}");
                let chars = label.chars().count() as f64;
                assert!(
                    x + 6.0 * chars <= width,
                    "{label} at {x} runs past the SVG's {width}"
                );
            }
        }
    }

    /// `name="..."` of an SVG element's attributes `el`.
    fn svg_attr<'a>(el: &'a str, name: &str) -> &'a str {
        let at = el
            .find(&format!(" {name}=\""))
            .unwrap_or_else(|| panic!("no {name} in {el}"))
            + name.len()
            + 3;
        &el[at..at + el[at..].find('"').unwrap()]
    }

    /// Error bars where the sd is positive: a point's bar in y (sd 2) is a vertical rect through
    /// its marker with a whisker at each end, its bar in x likewise horizontal, each in its
    /// curve's colour at opacity 0.6 (the frame is unfilled, the legend's swatches opaque); none
    /// in x where the sd is 0 or not measured (NaN).
    #[test]
    fn error_bars_are_drawn_where_the_sd_is_positive() {
        // Three curves of three points, the Pareto front ringed.
        let curves = |sx: f64| -> Vec<Curve> {
            (0..3)
                .map(|q| Curve {
                    label: format!("q{q}"),
                    color: COLORS[q],
                    points: (0..3)
                        .map(|k| Pt {
                            x: 10.0 * (k + 1) as f64 + q as f64,
                            y: 100.0 - 10.0 * k as f64 + q as f64,
                            sx,
                            sy: 2.0,
                        })
                        .collect(),
                })
                .collect()
        };
        for (x, in_x) in [(1.0, 9), (0.5, 9), (0.0, 0), (f64::NAN, 0)] {
            let spec = ChartSpec {
                id: "c".into(),
                title: "t".into(),
                x_desc: "x".into(),
                y_desc: "y".into(),
                curves: curves(x),
                pareto: true,
                log2_x: false,
            };
            let div = chart_div(&spec, "").unwrap();
            let int = |el: &str, name: &str| -> i32 { svg_attr(el, name).parse().unwrap() };
            let rects: Vec<&str> = div
                .split("<rect")
                .skip(1)
                .map(|r| &r[..r.find("/>").unwrap()])
                .collect();
            let size = |r: &&str| (int(r, "width"), int(r, "height"));
            let filled = |r: &&str, opacity: &str| {
                svg_attr(r, "opacity") == opacity && svg_attr(r, "fill") != "none"
            };
            let bars: Vec<&str> = rects.iter().copied().filter(|r| filled(r, "0.6")).collect();
            // The legend's swatches of the curves: 16 by 2 pixels, opaque.
            let colours: Vec<&str> = rects
                .iter()
                .filter(|r| filled(r, "1") && size(r) == (16, 2))
                .map(|r| svg_attr(r, "fill"))
                .collect();
            assert_eq!(colours.len(), 3, "{x}: a swatch a curve: {rects:?}");
            for b in &bars {
                assert!(
                    colours.contains(&svg_attr(b, "fill")),
                    "{x}: a bar in a curve's colour: {b}"
                );
            }
            let vertical: Vec<&&str> = bars
                .iter()
                .filter(|r| size(r).0 == 1 && size(r).1 > 7)
                .collect();
            let horizontal = bars
                .iter()
                .filter(|r| size(r).1 == 1 && size(r).0 > 7)
                .count();
            assert_eq!(vertical.len(), 9, "{x}: a bar in y a point: {bars:?}");
            assert_eq!(horizontal, in_x, "{x}: bars in x: {bars:?}");
            assert_eq!(bars.len(), 3 * (9 + in_x), "{x}: bars and whiskers");
            // Each bar in y passes through a marker of its colour.
            let markers: Vec<(i32, i32, &str)> = div
                .split("<circle")
                .skip(1)
                .map(|c| (int(c, "cx"), int(c, "cy"), svg_attr(c, "fill")))
                .collect();
            for b in vertical {
                let (bx, by, h) = (int(b, "x"), int(b, "y"), int(b, "height"));
                assert!(
                    markers.iter().any(|&(cx, cy, fill)| {
                        cx == bx && by < cy && cy < by + h && fill == svg_attr(b, "fill")
                    }),
                    "{x}: the bar {b} through no marker of {markers:?}"
                );
            }
        }
    }
}
