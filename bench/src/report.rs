//! What a run produced: every figure with its target, the machine it ran on, the dataset; shown
//! as a table on the terminal and written as JSON.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::runner::Latency;
use crate::seed::Dataset;
use crate::server::Memory;

/// Whether a figure could be measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// The server does not offer the feature (it answered 4xx/5xx or refused the connection).
    NotAvailable,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable key, e.g. `ingest_post_c32`.
    pub id: &'static str,
    /// `ingest`, `read` or `paging`.
    pub group: &'static str,
    pub title: &'static str,
    /// The request, as sent (with placeholders for what varies).
    pub request: String,
    pub concurrency: usize,
    pub status: Status,
    /// What the server answered (for "not available"), or what a response holds.
    pub note: Option<String>,
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// What one item is: `Observations`, `pages`, `responses`.
    pub item: &'static str,
    pub items: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub items_per_second: f64,
    pub latency_ms: Option<Latency>,
    pub server_cpu_ms_per_request: Option<f64>,
    pub server_cpu_ms_per_item: Option<f64>,
    /// CPU the harness itself spent per request: it shares the machine with the server.
    pub harness_cpu_ms_per_request: Option<f64>,
    /// The DESIGN.md target, when there is one.
    pub target: Option<&'static str>,
    /// Whether the target is met at this dataset size (`None`: no target or not measured).
    pub met: Option<bool>,
    /// The machine's 1-minute load average when the measurement ended: the machine is shared,
    /// and a figure taken under load from others is worth less.
    pub load_average: f64,
    /// Figure-specific values (paging rates at the first and last pages, …).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Figure {
    pub fn new(
        id: &'static str,
        group: &'static str,
        title: &'static str,
        request: String,
        item: &'static str,
    ) -> Figure {
        Figure {
            id,
            group,
            title,
            request,
            concurrency: 1,
            status: Status::Ok,
            note: None,
            requests: 0,
            errors: 0,
            first_error: None,
            item,
            items: 0,
            seconds: 0.0,
            requests_per_second: 0.0,
            items_per_second: 0.0,
            latency_ms: None,
            server_cpu_ms_per_request: None,
            server_cpu_ms_per_item: None,
            harness_cpu_ms_per_request: None,
            target: None,
            met: None,
            load_average: 0.0,
            extra: serde_json::Map::new(),
        }
    }
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub logical_cpus: usize,
    pub memory_total_bytes: u64,
    /// `uname -srvmo`.
    pub uname: String,
    /// Filesystem and device holding the data directory.
    pub data_filesystem: Option<String>,
    /// 1, 5 and 15 minute load averages when the run started and when it ended.
    pub load_average_start: [f64; 3],
    pub load_average_end: [f64; 3],
}

impl Machine {
    pub fn describe(data_parent: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let logical_cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_total_bytes = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let uname = std::process::Command::new("uname")
            .arg("-srvmo")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                std::fs::read_to_string("/proc/version").unwrap_or_default().trim().to_owned()
            });
        Machine {
            cpu_model,
            logical_cpus,
            memory_total_bytes,
            uname,
            data_filesystem: filesystem_of(data_parent),
            load_average_start: load_average(),
            load_average_end: [0.0; 3],
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut values = text.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(0.0));
    [values.next().unwrap_or(0.0), values.next().unwrap_or(0.0), values.next().unwrap_or(0.0)]
}

/// `TYPE on DEVICE` of the mount holding `path` (the longest matching mount point).
fn filesystem_of(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let mount_point = fields.next()?;
            let kind = fields.next()?;
            path.starts_with(mount_point)
                .then(|| (mount_point.len(), format!("{kind} on {device}")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, text)| text)
}

/// Server memory at the points of the run where it tells something.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryReport {
    /// Right after start, before any request.
    pub at_rest: Option<Memory>,
    /// After seeding (the seeding is itself a sustained ingest at full concurrency).
    pub after_seeding: Option<Memory>,
    /// After the read measurements.
    pub after_reads: Option<Memory>,
    /// After the ingest measurements; its peak is that of the ingest phase alone when
    /// `peak_reset_before_ingest`, else of the whole run.
    pub after_ingest: Option<Memory>,
    /// Whether VmHWM was reset (`/proc/<pid>/clear_refs`) before the ingest measurements.
    pub peak_reset_before_ingest: bool,
    pub target_at_rest: &'static str,
    pub target_under_ingest: &'static str,
    pub met_at_rest: Option<bool>,
    pub met_under_ingest: Option<bool>,
}

/// Size of the data directory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StorageReport {
    /// Files and sizes after the Things were written, before any Observation.
    pub before_observations: Vec<(String, u64)>,
    /// Files and sizes after the Observations were seeded.
    pub after_observations: Vec<(String, u64)>,
    /// Growth of the whole directory per million Observations seeded.
    pub bytes_per_million_observations: Option<f64>,
    /// The same for the database file alone (without the WAL, which SQLite reuses).
    pub database_bytes_per_million_observations: Option<f64>,
    /// Files and sizes once the server has shut down cleanly, at the end of the run.
    pub after_shutdown: Vec<(String, u64)>,
    /// Observations stored at the end (seeded and ingested).
    pub observations_stored: Option<u64>,
    /// The database files after shutdown over `observations_stored`: the real cost of one
    /// Observation on disk, indexes included.
    pub bytes_per_observation_after_shutdown: Option<f64>,
    /// Tables and indexes by size, after shutdown (the WAL folded in).
    pub objects: Vec<crate::storage::ObjectSize>,
}

/// The server the figures are about.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    /// `stela --version`, or what the external server says.
    pub version: String,
    pub url: String,
    pub started_by_harness: bool,
    pub binary: Option<String>,
    pub mqtt: Option<String>,
    /// The server died before the harness stopped it.
    pub exited_during_run: bool,
}

/// How the run was configured.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub quick: bool,
    pub seconds_per_measurement: f64,
    pub concurrency: usize,
    pub command: String,
    /// Requests the client sent twice because a pooled keep-alive connection had been closed.
    pub http_retries: u64,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub harness_version: &'static str,
    pub server: ServerInfo,
    pub machine: Machine,
    pub settings: Settings,
    pub dataset: Dataset,
    pub figures: Vec<Figure>,
    pub memory: MemoryReport,
    pub storage: StorageReport,
    /// The store's ingest with and without the log append (in-process); absent with `--url`.
    pub log_overhead: Option<crate::log_overhead::LogOverhead>,
}

impl Report {
    /// Writes the report as pretty JSON to `path`, creating its directory.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "\n{} · {} logical CPUs · {:.1} GiB · {}\nload {:.2} {:.2} {:.2} at start, {:.2} {:.2} {:.2} at end · {} · {} Observations seeded by {} in {:.1} s\n",
            m.cpu_model,
            m.logical_cpus,
            m.memory_total_bytes as f64 / (1u64 << 30) as f64,
            m.uname,
            m.load_average_start[0],
            m.load_average_start[1],
            m.load_average_start[2],
            m.load_average_end[0],
            m.load_average_end[1],
            m.load_average_end[2],
            self.server.version,
            group_digits(self.dataset.observations),
            self.dataset.seed_method,
            self.dataset.seed_observations_seconds,
        );
        let _ = writeln!(
            out,
            "{:<44} {:>4} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>5}  {:<24} verdict",
            "figure",
            "conc",
            "req/s",
            "items/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "CPU ms",
            "load",
            "target",
        );
        let _ = writeln!(out, "{}", "-".repeat(146));
        for figure in &self.figures {
            let verdict = match figure.met {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "",
            };
            if figure.status == Status::NotAvailable {
                let note = figure.note.as_deref().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{:<44} {:>4} not available: {}",
                    figure.title,
                    figure.concurrency,
                    truncate(note, 70)
                );
                continue;
            }
            let (p50, p95, p99) =
                figure.latency_ms.map_or((String::new(), String::new(), String::new()), |l| {
                    (ms(l.p50), ms(l.p95), ms(l.p99))
                });
            let cpu = figure.server_cpu_ms_per_request.map_or(String::new(), ms);
            let _ = writeln!(
                out,
                "{:<44} {:>4} {:>9.0} {:>10} {:>8} {:>8} {:>8} {:>8} {:>5.1}  {:<24} {}",
                figure.title,
                figure.concurrency,
                figure.requests_per_second,
                format!("{:.0} {}", figure.items_per_second, short_item(figure.item)),
                p50,
                p95,
                p99,
                cpu,
                figure.load_average,
                figure.target.unwrap_or_default(),
                verdict
            );
            if figure.errors > 0 {
                let _ = writeln!(
                    out,
                    "{:<6}{} failed requests, first: {}",
                    "",
                    figure.errors,
                    figure.first_error.as_deref().unwrap_or_default()
                );
            }
            if let Some(note) = &figure.note {
                let _ = writeln!(out, "{:<6}{note}", "");
            }
        }
        let mib = |m: Option<Memory>| {
            m.map_or("n/a".to_owned(), |m| {
                format!(
                    "peak {:.1} MiB, now {:.1} MiB",
                    m.peak_bytes as f64 / 1048576.0,
                    m.current_bytes as f64 / 1048576.0
                )
            })
        };
        let verdict = |met: Option<bool>| match met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "",
        };
        let _ = writeln!(out, "\nserver memory (peak = VmHWM, now = VmRSS)");
        let _ = writeln!(
            out,
            "  at rest          {:<40} target {} {}",
            mib(self.memory.at_rest),
            self.memory.target_at_rest,
            verdict(self.memory.met_at_rest)
        );
        let _ = writeln!(out, "  after seeding    {}", mib(self.memory.after_seeding));
        let _ = writeln!(out, "  after reads      {}", mib(self.memory.after_reads));
        let _ = writeln!(
            out,
            "  {:<16} {:<40} target {} {}",
            if self.memory.peak_reset_before_ingest { "ingest phase" } else { "after ingest" },
            mib(self.memory.after_ingest),
            self.memory.target_under_ingest,
            verdict(self.memory.met_under_ingest)
        );
        if let Some(bytes) = self.storage.bytes_per_million_observations {
            let _ = writeln!(
                out,
                "\ndata directory growth while seeding: {:.1} MiB per million Observations",
                bytes / 1048576.0,
            );
        }
        if let (Some(bytes), Some(count)) =
            (self.storage.bytes_per_observation_after_shutdown, self.storage.observations_stored)
        {
            let _ = writeln!(
                out,
                "database after a clean shutdown: {:.0} bytes per Observation = {:.1} MiB per million ({} Observations stored)",
                bytes,
                bytes * 1e6 / 1048576.0,
                group_digits(count)
            );
            let objects: Vec<String> = self
                .storage
                .objects
                .iter()
                .take(6)
                .map(|o| format!("{} {:.1} MiB", o.name, o.bytes as f64 / 1048576.0))
                .collect();
            let _ = writeln!(out, "  largest: {}", objects.join(", "));
        }
        out
    }
}

fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn short_item(item: &str) -> &str {
    match item {
        "Observations" => "obs",
        _ => "",
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max).collect();
        short.push('…');
        short
    }
}

/// `1234567` → `1,234,567`.
pub fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(10_000_000), "10,000,000");
    }

    #[test]
    fn describes_this_machine() {
        let machine = Machine::describe(Path::new("/"));
        assert!(machine.logical_cpus >= 1);
        assert!(machine.memory_total_bytes > 0);
        assert!(machine.data_filesystem.is_some());
    }
}
