//! Reading a `benches/compare` report back: its title and the raw RESULT lines it keeps under
//! `<details>`, one measurement per line (`server key=value ...`). The tables above them are
//! for people; these lines are what `targets` recomputes the published figures from.

use std::collections::HashMap;

/// One measurement: which server (with `#round` or `/variant#round` for allocation rounds) and
/// its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub server: String,
    fields: HashMap<String, String>,
}

impl Record {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    pub fn num(&self, key: &str) -> Option<f64> {
        self.get(key)?.parse().ok()
    }

    fn is(&self, key: &str, value: &str) -> bool {
        self.get(key) == Some(value)
    }
}

/// A whole report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The first `## ` heading (when and where the run was made), or "" if there is none.
    pub title: String,
    pub records: Vec<Record>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReportError {
    #[error("no raw RESULT lines (the <details> section of a benches/compare report)")]
    NoRawSection,
}

impl Report {
    pub fn parse(text: &str) -> Result<Report, ReportError> {
        let title = text.lines().find_map(|l| l.strip_prefix("## ")).unwrap_or("").trim().to_owned();
        let raw = &text[text.find("<details>").ok_or(ReportError::NoRawSection)?..];
        let records: Vec<Record> = raw.lines().filter_map(parse_line).collect();
        if records.is_empty() {
            return Err(ReportError::NoRawSection);
        }
        Ok(Report { title, records })
    }

    /// Highest rate with <= 1 % loss (kpps relayed) of `server` at one point.
    pub fn max_kpps(&self, server: &str, size: u32, pairs: u32) -> Option<f64> {
        self.at(server, size, pairs).find(|r| r.is("kind", "max")).and_then(|r| r.num("rx_pps")).map(|p| p / 1000.0)
    }

    /// The fixed-rate run labelled `label` ("light", "overload") of `server` at one point.
    pub fn run<'a>(&'a self, server: &'a str, label: &str, size: u32, pairs: u32) -> Option<&'a Record> {
        self.at(server, size, pairs).find(|r| r.is("kind", "run") && r.is("label", label))
    }

    /// Microseconds of the server's CPU per relayed packet in its fixed-rate run (label "cpu"),
    /// `None` if it lost more than 1 %: a server dropping packets is past the rate compared.
    pub fn cpu_us_per_packet(&self, server: &str, size: u32, pairs: u32) -> Option<f64> {
        let run = self.run(server, "cpu", size, pairs)?;
        if run.num("loss_pct")? > 1.0 {
            return None;
        }
        let (cpu, pps) = (run.num("server_cpu_pct")?, run.num("rx_pps")?);
        (pps > 0.0).then(|| cpu * 10_000.0 / pps)
    }

    /// Allocation rounds of `server` (named `server#1`, `server#2`...), in order.
    pub fn alloc_rounds<'a>(&'a self, server: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.records
            .iter()
            .filter(move |r| r.is("mode", "alloc") && r.server.rsplit_once('#').is_some_and(|(name, _)| name == server))
    }

    /// Names of allocation variants of `server` (`server/pool-10000` for `server/pool-10000#1`).
    pub fn alloc_variants(&self, server: &str) -> Vec<String> {
        let prefix = format!("{server}/");
        let mut names: Vec<String> = self
            .records
            .iter()
            .filter(|r| r.is("mode", "alloc") && r.server.starts_with(&prefix))
            .filter_map(|r| r.server.rsplit_once('#').map(|(name, _)| name.to_owned()))
            .collect();
        names.dedup();
        names
    }

    /// The (size, pairs) points at which `server` has a maximum, in the report's order.
    pub fn points(&self, server: &str) -> Vec<(u32, u32)> {
        self.points_where(server, |r| r.is("kind", "max"))
    }

    /// The (size, pairs) points at which `server` has a fixed-rate run labelled `label`.
    pub fn run_points(&self, server: &str, label: &str) -> Vec<(u32, u32)> {
        self.points_where(server, |r| r.is("kind", "run") && r.is("label", label))
    }

    fn points_where(&self, server: &str, keep: impl Fn(&Record) -> bool) -> Vec<(u32, u32)> {
        let mut points = Vec::new();
        for r in self.records.iter().filter(|r| r.server == server && keep(r)) {
            if let (Some(size), Some(pairs)) = (r.num("size"), r.num("pairs")) {
                let point = (size as u32, pairs as u32);
                if !points.contains(&point) {
                    points.push(point);
                }
            }
        }
        points
    }

    fn at<'a>(&'a self, server: &'a str, size: u32, pairs: u32) -> impl Iterator<Item = &'a Record> + 'a {
        self.records.iter().filter(move |r| {
            r.server == server && r.num("size") == Some(f64::from(size)) && r.num("pairs") == Some(f64::from(pairs))
        })
    }
}

/// `server key=value ...`; other lines (markup, prose) are not measurements.
fn parse_line(line: &str) -> Option<Record> {
    let mut words = line.split_whitespace();
    let server = words.next().filter(|w| !w.contains('=') && !w.starts_with('<'))?;
    let fields: HashMap<String, String> =
        words.filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    if fields.is_empty() {
        return None;
    }
    Some(Record { server: server.to_owned(), fields })
}

/// The median (the mean of the middle two for an even count); `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "## Results (2026-11-25 09:28 UTC, 2 cores)\n\n| a | b |\n|---|---|\n\n\
<details><summary>raw RESULT lines</summary>\n\n```\n\
teletip mode=channel label=- pairs=10 size=160 rx_pps=175300 kind=max\n\
coturn mode=channel label=- pairs=10 size=160 rx_pps=68100 kind=max\n\
teletip mode=channel label=- pairs=1 size=1200 rx_pps=120000 kind=max\n\
teletip-kernel mode=channel label=overload pairs=10 size=160 p99_steady_us=4296.3 kind=run\n\
teletip mode=channel label=cpu pairs=10 size=160 rx_pps=50000 loss_pct=0.000 server_cpu_pct=51.5 kind=run\n\
coturn mode=channel label=cpu pairs=10 size=160 rx_pps=40000 loss_pct=20.000 server_cpu_pct=99.0 kind=run\n\
teletip#1 mode=alloc count=10000 allocs_per_sec=26938\n\
teletip#2 mode=alloc count=10000 allocs_per_sec=47561\n\
teletip/pool-10000#1 mode=alloc count=10000 allocs_per_sec=41000\n\
```\n</details>\n";

    #[test]
    fn reads_the_raw_lines_of_a_report() {
        let report = Report::parse(REPORT).unwrap();
        assert_eq!(report.title, "Results (2026-11-25 09:28 UTC, 2 cores)");
        assert_eq!(report.records.len(), 9, "markup and table lines are not records");
        assert_eq!(report.max_kpps("teletip", 160, 10), Some(175.3));
        assert_eq!(report.max_kpps("coturn", 160, 10), Some(68.1));
        assert_eq!(report.max_kpps("coturn", 160, 1), None);
        assert_eq!(report.points("teletip"), vec![(160, 10), (1200, 1)]);
        assert_eq!(report.run_points("teletip", "cpu"), vec![(160, 10)]);
        let overload = report.run("teletip-kernel", "overload", 160, 10).unwrap();
        assert_eq!(overload.num("p99_steady_us"), Some(4296.3));
        assert!(report.run("teletip-kernel", "light", 160, 10).is_none());
        assert_eq!(report.cpu_us_per_packet("teletip", 160, 10), Some(10.3));
        assert_eq!(report.cpu_us_per_packet("coturn", 160, 10), None, "20 % loss: past the rate compared");
    }

    #[test]
    fn allocation_rounds_are_told_apart_from_variants() {
        let report = Report::parse(REPORT).unwrap();
        let plain: Vec<f64> = report.alloc_rounds("teletip").filter_map(|r| r.num("allocs_per_sec")).collect();
        assert_eq!(plain, vec![26938.0, 47561.0]);
        assert_eq!(report.alloc_variants("teletip"), vec!["teletip/pool-10000".to_owned()]);
        assert_eq!(report.alloc_rounds("teletip/pool-10000").count(), 1);
    }

    #[test]
    fn a_file_without_raw_lines_is_refused() {
        assert_eq!(Report::parse("## Results\n\n| a |\n"), Err(ReportError::NoRawSection));
        assert_eq!(Report::parse("<details>\n</details>\n"), Err(ReportError::NoRawSection));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
