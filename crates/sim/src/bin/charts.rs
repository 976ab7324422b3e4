//! `swarmd-charts`: draws the benchmark charts embedded in BENCHMARKS.md, as SVG.
//!
//! Reads `docs/charts/bench.json` (written by `scripts/bench`: samples per system and metric)
//! and `docs/charts/scale.json` (written by `scripts/bench-scale`: one row per simulated run)
//! and writes `docs/charts/convergence.svg` (time to all running vs replicas, swarmd and
//! Docker's swarm mode) and `docs/charts/placements.svg` (placements/s vs cluster size, one
//! and three managers). A missing input skips its chart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Bench {
    samples: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

#[derive(Deserialize)]
struct ScaleRow {
    managers: u32,
    nodes: u64,
    tasks: u64,
    placements_per_s: f64,
}

#[derive(Deserialize)]
struct Scale {
    runs: Vec<ScaleRow>,
}

fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

type Series = (String, RGBColor, Vec<(f64, f64)>);

fn chart(
    out: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    log_x: bool,
) -> anyhow::Result<()> {
    let xs = series.iter().flat_map(|s| s.2.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.2.iter().map(|p| p.1));
    let x_max = xs.clone().fold(1.0_f64, f64::max) * 1.1;
    let x_min = xs.fold(f64::MAX, f64::min).min(x_max) * 0.9;
    let y_max = ys.fold(0.0_f64, f64::max) * 1.15 + 1e-9;
    let root = SVGBackend::new(out, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    macro_rules! draw {
        ($c:expr) => {{
            let mut c = $c;
            c.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw()?;
            for (name, color, pts) in series {
                let color = *color;
                c.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                c.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
            }
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }};
    }
    if log_x {
        draw!(builder.build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max)?);
    } else {
        draw!(builder.build_cartesian_2d(0.0..x_max, 0.0..y_max)?);
    }
    root.present()?;
    Ok(())
}

fn convergence(bench: &Bench, out: &Path) -> anyhow::Result<()> {
    // Services created on an otherwise idle swarm: replicas -> seconds to all running.
    let points = |system: &str| -> Vec<(f64, f64)> {
        [("create10", 10.0), ("create20", 20.0), ("create50", 50.0)]
            .iter()
            .filter_map(|(k, n)| {
                bench
                    .samples
                    .get(system)
                    .and_then(|m| m.get(*k))
                    .and_then(|xs| median(xs))
                    .map(|v| (*n, v))
            })
            .collect()
    };
    let mut series = vec![
        ("swarmd".to_string(), BLUE, points("swarmd")),
        ("Docker swarm mode".to_string(), RED, points("docker")),
    ];
    if let Some(raw) = bench
        .samples
        .get("raw")
        .and_then(|m| m.get("raw_run50"))
        .and_then(|xs| median(xs))
    {
        series.push((
            "raw engine (50 x docker run -d, -P8)".into(),
            BLACK,
            vec![(50.0, raw)],
        ));
    }
    chart(
        out,
        "service create --replicas N: time to N containers running",
        "replicas",
        "seconds (median)",
        &series,
        false,
    )
}

fn placements(scale: &Scale, out: &Path) -> anyhow::Result<()> {
    let mut series = Vec::new();
    for (managers, color) in [(1, BLUE), (3, GREEN)] {
        let mut pts: Vec<(f64, f64)> = scale
            .runs
            .iter()
            .filter(|r| r.managers == managers && r.tasks > 0)
            .map(|r| (r.nodes as f64, r.placements_per_s))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !pts.is_empty() {
            series.push((
                format!(
                    "swarmd, {managers} manager{}",
                    if managers > 1 { "s" } else { "" }
                ),
                color,
                pts,
            ));
        }
    }
    chart(
        out,
        "placements/s committed through Raft vs simulated nodes",
        "simulated nodes (log scale)",
        "placements per second",
        &series,
        true,
    )
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("docs/charts"));
    let bench_json = dir.join("bench.json");
    if bench_json.exists() {
        let bench: Bench = serde_json::from_str(&std::fs::read_to_string(&bench_json)?)
            .with_context(|| format!("reading {}", bench_json.display()))?;
        convergence(&bench, &dir.join("convergence.svg"))?;
        println!("wrote {}", dir.join("convergence.svg").display());
    }
    let scale_json = dir.join("scale.json");
    if scale_json.exists() {
        let scale: Scale = serde_json::from_str(&std::fs::read_to_string(&scale_json)?)
            .with_context(|| format!("reading {}", scale_json.display()))?;
        placements(&scale, &dir.join("placements.svg"))?;
        println!("wrote {}", dir.join("placements.svg").display());
    }
    Ok(())
}
