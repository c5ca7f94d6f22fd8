//! teletip-targets: issue 7's targets recomputed from one or more `benches/compare` reports.
//!
//! Every ratio is taken within one run (both servers measured minutes apart on the same
//! machine), then the median over the runs at each point: full runs of the same tree differ by
//! up to ±25 % at one point, so one run's ratio near a threshold can fall on either side of
//! it. Prints markdown: the summary table of docs/performance.md, then every point.
//!
//!   targets benches/results/20*.md

use std::io::Write;
use std::process::ExitCode;

use teletip_benches::report::{Report, median};

/// How a target's values read.
#[derive(Clone, Copy)]
enum Unit {
    Ratio,
    Micros,
    Millis,
    Bytes,
    PerSecond,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Unit::Ratio => format!("{v:.2}×"),
            Unit::Micros => format!("{v:.0} µs"),
            Unit::Millis => format!("{:.1} ms", v / 1000.0),
            Unit::Bytes => format!("{v:.0} B"),
            Unit::PerSecond => format!("{} /s", thousands(v)),
        }
    }
}

fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.round());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One target: its values per run, point by point.
struct Target {
    name: String,
    unit: Unit,
    threshold: f64,
    /// Met when the value is at least the threshold (else at most).
    at_least: bool,
    /// Point names, in the order of the first run that has them.
    points: Vec<String>,
    /// `runs[r][p]`: run r's value at point p.
    runs: Vec<Vec<Option<f64>>>,
}

impl Target {
    fn new(name: String, unit: Unit, threshold: f64, at_least: bool) -> Target {
        Target { name, unit, threshold, at_least, points: Vec::new(), runs: Vec::new() }
    }

    /// Adds run `run`'s value at `point`.
    fn record(&mut self, run: usize, point: String, value: Option<f64>) {
        let p = match self.points.iter().position(|q| *q == point) {
            Some(p) => p,
            None => {
                self.points.push(point);
                for r in &mut self.runs {
                    r.push(None);
                }
                self.points.len() - 1
            }
        };
        while self.runs.len() <= run {
            self.runs.push(vec![None; self.points.len()]);
        }
        self.runs[run][p] = value;
    }

    fn meets(&self, v: f64) -> bool {
        if self.at_least { v >= self.threshold } else { v <= self.threshold }
    }

    fn medians(&self) -> Vec<Option<f64>> {
        (0..self.points.len())
            .map(|p| median(&self.runs.iter().filter_map(|r| r.get(p).copied().flatten()).collect::<Vec<_>>()))
            .collect()
    }

    fn summary_row(&self, runs: usize) -> String {
        let medians: Vec<f64> = self.medians().into_iter().flatten().collect();
        let range = match (medians.iter().copied().reduce(f64::min), medians.iter().copied().reduce(f64::max)) {
            (Some(lo), Some(hi)) if lo == hi => self.unit.show(lo),
            (Some(lo), Some(hi)) => format!("{}–{}", self.unit.show(lo), self.unit.show(hi)),
            _ => "no data".to_owned(),
        };
        let met = medians.iter().filter(|&&m| self.meets(m)).count();
        let per_run: Vec<String> = (0..runs)
            .map(|r| {
                let values: Vec<f64> =
                    self.runs.get(r).map(|v| v.iter().copied().flatten().collect()).unwrap_or_default();
                if values.is_empty() {
                    return "–".to_owned();
                }
                format!("{} of {}", values.iter().filter(|&&v| self.meets(v)).count(), values.len())
            })
            .collect();
        let verdict = if !medians.is_empty() && met == medians.len() { "**yes**" } else { "no" };
        format!("| {} | {range} | {met} of {} | {} | {verdict} |", self.name, medians.len(), per_run.join(" / "))
    }

    fn detail(&self, labels: &[String]) -> String {
        let mut out = format!("\n#### {}\n\n| point | {} | median |\n|---|", self.name, labels.join(" | "));
        out.push_str(&"---|".repeat(labels.len() + 1));
        out.push('\n');
        for (p, (name, median)) in self.points.iter().zip(self.medians()).enumerate() {
            let cells: Vec<String> = (0..labels.len())
                .map(|r| {
                    self.runs
                        .get(r)
                        .and_then(|v| v.get(p).copied().flatten())
                        .map_or("–".into(), |v| self.unit.show(v))
                })
                .collect();
            let median = median
                .map_or("–".into(), |m| format!("{}{}", self.unit.show(m), if self.meets(m) { "" } else { " ✗" }));
            out.push_str(&format!("| {name} | {} | {median} |\n", cells.join(" | ")));
        }
        out
    }
}

fn point(size: u32, pairs: u32) -> String {
    format!("{size} B, {pairs} pairs")
}

/// Every target of issue 7 that a report measures.
fn targets(reports: &[Report]) -> Vec<Target> {
    let ratios = [
        ("teletip", "coturn", 2.0, "same-relay pps ≥ 2× coturn"),
        ("teletip", "turnrs", 1.3, "same-relay pps ≥ 1.3× turn-rs"),
        ("teletip", "fwd1", 0.9, "same-relay pps ≥ 90 % of the 1-hop forwarder"),
        ("teletip-kernel", "fwd2", 0.9, "kernel path ≥ 90 % of the 2-hop forwarder (shared sockets)"),
        ("teletip-kernel", "fwd2pp", 0.9, "kernel path ≥ 90 % of the 2-hop forwarder (socket per pair)"),
        ("teletip-kernel", "coturn", 1.0, "kernel path ≥ coturn (context, not a target)"),
    ];
    let mut out = Vec::new();
    for (ours, theirs, threshold, name) in ratios {
        let mut t = Target::new(name.to_owned(), Unit::Ratio, threshold, true);
        for (r, report) in reports.iter().enumerate() {
            for (size, pairs) in report.points(ours) {
                let ratio =
                    report.max_kpps(ours, size, pairs).zip(report.max_kpps(theirs, size, pairs)).map(|(a, b)| a / b);
                t.record(r, point(size, pairs), ratio);
            }
        }
        out.push(t);
    }

    // The same ratios from CPU per packet at one fixed rate, which the generator does not bound.
    let cpu = [
        ("teletip", "fwd1", "same-relay: 1-hop forwarder's CPU per packet ÷ teletip's ≥ 0.9 (fixed rate)"),
        (
            "teletip-kernel",
            "fwd2pp",
            "kernel path: 2-hop forwarder's (socket per pair) CPU per packet ÷ teletip's ≥ 0.9",
        ),
        ("teletip-kernel", "fwd2", "kernel path: 2-hop forwarder's (shared sockets) CPU per packet ÷ teletip's ≥ 0.9"),
    ];
    for (ours, theirs, name) in cpu {
        let mut t = Target::new(name.to_owned(), Unit::Ratio, 0.9, true);
        for (r, report) in reports.iter().enumerate() {
            for (size, pairs) in report.run_points(ours, "cpu") {
                let ratio = report
                    .cpu_us_per_packet(theirs, size, pairs)
                    .zip(report.cpu_us_per_packet(ours, size, pairs))
                    .map(|(a, b)| a / b);
                t.record(r, point(size, pairs), ratio);
            }
        }
        out.push(t);
    }

    let runs_of = |server: &str, label: &str, key: &str, name: &str, unit, threshold, at_least| {
        let mut t = Target::new(name.to_owned(), unit, threshold, at_least);
        for (r, report) in reports.iter().enumerate() {
            for (size, pairs) in report.run_points(server, label) {
                t.record(r, point(size, pairs), report.run(server, label, size, pairs).and_then(|x| x.num(key)));
            }
        }
        t
    };
    out.push(runs_of("teletip", "light", "p50_us", "light-load one-way p50 ≤ 40 µs", Unit::Micros, 40.0, false));
    out.push(runs_of(
        "teletip-kernel",
        "overload",
        "p99_steady_us",
        "at 1.5× capacity, settled p99 < 5 ms (kernel path)",
        Unit::Millis,
        5000.0,
        false,
    ));
    out.push(runs_of(
        "teletip-kernel",
        "overload",
        "p99_us",
        "at 1.5× capacity, p99 of the whole run incl. onset (kernel path)",
        Unit::Millis,
        5000.0,
        false,
    ));
    out.push(runs_of(
        "coturn",
        "overload",
        "p99_steady_us",
        "coturn at 1.5× its capacity, settled p99 (context)",
        Unit::Millis,
        5000.0,
        false,
    ));

    // Rounds of the named servers, each report's rounds under the first name it has: a pool
    // sized for the burst is one configuration whatever size the relay could open (it caps the
    // pool by the open-file limit), so `teletip/pool-10000` and `teletip/pool-5000` are one row.
    let rounds = |servers: &[String], key: &str, name: String, unit, threshold, at_least| {
        let mut t = Target::new(name, unit, threshold, at_least);
        for (r, report) in reports.iter().enumerate() {
            let Some(server) = servers.iter().find(|s| report.alloc_rounds(s).next().is_some()) else { continue };
            for (i, rec) in report.alloc_rounds(server).enumerate() {
                t.record(r, format!("round {}", i + 1), rec.num(key));
            }
        }
        t
    };
    let plain = ["teletip".to_owned()];
    out.push(rounds(
        &plain,
        "bytes_per_alloc",
        "≤ 2 KB of user memory per allocation".into(),
        Unit::Bytes,
        2048.0,
        false,
    ));
    out.push(rounds(
        &plain,
        "allocs_per_sec",
        "≥ 40,000 allocations/s (default pool)".into(),
        Unit::PerSecond,
        40000.0,
        true,
    ));
    let mut pooled: Vec<String> = Vec::new();
    for report in reports {
        for v in report.alloc_variants("teletip") {
            if v.starts_with("teletip/pool-") && !pooled.contains(&v) {
                pooled.push(v);
            }
        }
    }
    out.push(rounds(
        &pooled,
        "allocs_per_sec",
        format!("≥ 40,000 allocations/s (pool sized for the burst: {})", pooled.join(", ")),
        Unit::PerSecond,
        40000.0,
        true,
    ));
    // A server a report did not measure (turn-rs not installed, say) leaves its rows out.
    out.retain(|t| t.runs.iter().flatten().any(Option::is_some));
    out
}

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() || paths.iter().any(|p| p == "-h" || p == "--help") {
        eprintln!("usage: targets REPORT.md... (benches/compare --out files, one per run)");
        return ExitCode::from(2);
    }
    let mut reports = Vec::new();
    for path in &paths {
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| Report::parse(&t).map_err(|e| e.to_string()));
        match parsed {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("targets: {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // Written at once, and a closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(render(&reports, &paths).as_bytes());
    ExitCode::SUCCESS
}

fn render(reports: &[Report], paths: &[String]) -> String {
    let labels: Vec<String> = (0..reports.len()).map(run_label).collect();
    let mut out = format!("## Targets over {} run(s)\n\n", reports.len());
    for ((label, report), path) in labels.iter().zip(reports).zip(paths) {
        out.push_str(&format!("- **{label}**: {} (`{path}`)\n", report.title));
    }
    out.push_str(&format!(
        "\nEach ratio is taken within one run, then the median over the runs at each point.\n\n\
         | target | median at each point (range over the points) | points met by the median | points met in {} | met? |\n\
         |---|---|---|---|---|\n",
        labels.join(" / ")
    ));
    let all = targets(reports);
    for t in &all {
        out.push_str(&t.summary_row(reports.len()));
        out.push('\n');
    }
    out.push_str("\n### Every point\n");
    for t in &all {
        out.push_str(&t.detail(&labels));
    }
    out
}

/// A, B, ... Z, then AA, AB...
fn run_label(i: usize) -> String {
    let letter = |n: usize| char::from(b'A' + (n % 26) as u8);
    if i < 26 { letter(i).to_string() } else { format!("{}{}", letter(i / 26 - 1), letter(i)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(teletip: f64, coturn: f64, allocs: f64) -> Report {
        let text = format!(
            "## Results (test)\n<details>\n\
             teletip mode=channel pairs=10 size=160 rx_pps={teletip} kind=max\n\
             coturn mode=channel pairs=10 size=160 rx_pps={coturn} kind=max\n\
             teletip#1 mode=alloc allocs_per_sec={allocs} bytes_per_alloc=700\n\
             </details>\n"
        );
        Report::parse(&text).unwrap()
    }

    #[test]
    fn ratios_are_taken_within_a_run_then_the_median_over_runs() {
        // Run A: 2.4x; run B: 1.8x; run C: 2.2x. The median, 2.2x, meets 2x; B alone does not.
        let reports = [report(240e3, 100e3, 45e3), report(180e3, 100e3, 30e3), report(220e3, 100e3, 41e3)];
        let all = targets(&reports);
        let coturn = all.iter().find(|t| t.name.contains("2× coturn")).unwrap();
        assert_eq!(coturn.medians(), vec![Some(2.2)]);
        assert_eq!(
            coturn.summary_row(3),
            "| same-relay pps ≥ 2× coturn | 2.20× | 1 of 1 | 1 of 1 / 0 of 1 / 1 of 1 | **yes** |"
        );
        let rate = all.iter().find(|t| t.name.contains("allocations/s (default pool)")).unwrap();
        assert_eq!(
            rate.summary_row(3),
            "| ≥ 40,000 allocations/s (default pool) | 41,000 /s | 1 of 1 | 1 of 1 / 0 of 1 / 1 of 1 | **yes** |"
        );
        assert!(all.iter().all(|t| !t.name.contains("turn-rs")), "no turn-rs in these reports, so no such row");
    }

    #[test]
    fn a_point_missed_by_the_median_is_marked() {
        let reports = [report(150e3, 100e3, 30e3)];
        let all = targets(&reports);
        let coturn = all.iter().find(|t| t.name.contains("2× coturn")).unwrap();
        assert!(coturn.summary_row(1).ends_with("| no |"));
        assert!(coturn.detail(&["A".into()]).contains("| 160 B, 10 pairs | 1.50× | 1.50× ✗ |"));
    }

    #[test]
    fn pools_of_different_sizes_are_one_row() {
        let with_pool = |name: &str, rate: f64| {
            let text = format!("## R\n<details>\n{name}#1 mode=alloc allocs_per_sec={rate}\n</details>\n");
            Report::parse(&text).unwrap()
        };
        let reports = [with_pool("teletip/pool-10000", 45e3), with_pool("teletip/pool-5000", 35e3)];
        let all = targets(&reports);
        let pooled: Vec<&Target> = all.iter().filter(|t| t.name.contains("pool sized for the burst")).collect();
        assert_eq!(pooled.len(), 1);
        assert_eq!(pooled[0].medians(), vec![Some(40e3)]);
        assert!(pooled[0].name.contains("teletip/pool-10000, teletip/pool-5000"), "{}", pooled[0].name);
    }

    #[test]
    fn run_labels_go_on_after_z() {
        assert_eq!(run_label(0), "A");
        assert_eq!(run_label(25), "Z");
        assert_eq!(run_label(26), "AA");
    }
}
