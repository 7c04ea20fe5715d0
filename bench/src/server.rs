//! The server under test: either a release `stela` binary the harness starts on a fresh data
//! directory and port 0, or an external one named by `--url`.
//!
//! ```text
//! stela serve --listen 127.0.0.1:0 --data-dir TMP ──stdout──▶ "stela listening on http://ADDR"
//!        │                                                       └─▶ base URL of the run
//!        └─ /proc/<pid>/status (VmHWM, VmRSS), /proc/<pid>/stat (CPU time) while it runs
//! ```
//!
//! The child is killed when [`Server`] is dropped, so a failing run never leaves it behind.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;

/// How long the server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every Linux ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// A server the harness started and owns.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// The data directory: a temporary one (removed when the server is dropped) or one the
    /// user named with `--data-dir` (kept).
    data_dir: DataDir,
    /// Where the server's log (stderr) goes, to show when something fails.
    log_path: PathBuf,
    /// `http://ADDR`, from the listening line.
    pub base_url: String,
    /// An `mqtt://ADDR` the server announced on stdout, if any.
    mqtt_announced: Arc<Mutex<Option<String>>>,
}

impl Server {
    /// Starts `bin` on `kept` (created if missing), or else on a fresh data directory under
    /// `parent`, and waits for its listening line.
    pub fn start(
        bin: &Path,
        parent: &Path,
        kept: Option<&Path>,
        database: Option<&str>,
    ) -> anyhow::Result<Server> {
        let data_dir = match kept {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                DataDir::Kept(dir.to_owned())
            }
            None => DataDir::Temporary(
                tempfile::Builder::new().prefix("stela-bench-").tempdir_in(parent).with_context(
                    || format!("cannot create a data directory in {}", parent.display()),
                )?,
            ),
        };
        let log_path = parent.join(format!(
            "{}.log",
            data_dir.path().file_name().and_then(|n| n.to_str()).unwrap_or("stela-bench")
        ));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create the server log {}", log_path.display()))?;
        let mut command = Command::new(bin);
        command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir.path());
        if let Some(database) = database {
            command.args(["--database", database]);
        }
        // A server with an embedded MQTT broker gets a free port too, never a fixed one that
        // another broker on the machine may hold; it announces the port on stdout.
        if serve_flags(bin).contains("--mqtt-listen") {
            command.args(["--mqtt-listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start the server {}", bin.display()))?;
        let stdout = child.stdout.take().context("the server's stdout is not captured")?;

        // A thread reads stdout for the whole run: the listening line first, then anything the
        // server announces later (an MQTT listener), so that the pipe never fills up.
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        let mqtt_announced = Arc::new(Mutex::new(None));
        let mqtt_slot = Arc::clone(&mqtt_announced);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("mqtt://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    *mqtt_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
                }
                if let Some(url) = line.strip_prefix("stela listening on ") {
                    let _ = ready_tx.send(url.trim().trim_end_matches('/').to_owned());
                }
            }
        });

        let mut server =
            Server { child, data_dir, log_path, base_url: String::new(), mqtt_announced };
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => server.base_url = url,
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                anyhow::bail!(
                    "the server did not print its listening line within {} s ({}); its log:\n{}",
                    START_TIMEOUT.as_secs(),
                    status.map_or("still running".to_owned(), |s| format!("exited with {s}")),
                    server.log_tail()
                );
            }
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The MQTT address the server announced, if any (`host:port`).
    pub fn mqtt_announced(&self) -> Option<String> {
        self.mqtt_announced.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the server as an operator would (SIGTERM) and waits up to `grace` for it to exit,
    /// so that SQLite folds its WAL into the database file; kills it past that. Returns whether
    /// it exited by itself.
    pub fn shut_down(&mut self, grace: Duration) -> bool {
        // Sending a signal needs `kill(2)`; the `kill` command keeps this crate free of unsafe.
        let signalled = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if signalled {
            let deadline = std::time::Instant::now() + grace;
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill();
        false
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// Where the server keeps its data.
#[derive(Debug)]
enum DataDir {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Temporary(dir) => dir.path(),
            DataDir::Kept(dir) => dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The help text of `bin serve`, to learn which flags this build knows.
fn serve_flags(bin: &Path) -> String {
    Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Peak and current resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Memory {
    /// VmHWM: the peak resident set size since the process started.
    pub peak_bytes: u64,
    /// VmRSS: the resident set size now.
    pub current_bytes: u64,
}

/// Reads VmHWM and VmRSS of `pid`.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some(Memory { peak_bytes: field("VmHWM:")?, current_bytes: field("VmRSS:")? })
}

/// Resets the peak resident set size (VmHWM) of `pid` to its current size, so that a later
/// reading shows the peak of what happened in between; false when the kernel refuses.
pub fn reset_peak_memory(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// CPU time (user + system) a process has used so far, in seconds; `None` when unreadable.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_seconds_from_stat(&stat)
}

/// CPU time of this process (the harness), in seconds.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds_from_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn cpu_seconds_from_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces; fields are counted after its closing ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Bytes used by the files under `dir`, by file name (one level; SQLite keeps `stela.db`,
/// `stela.db-wal` and `stela.db-shm` there).
pub fn directory_files(dir: &Path) -> Vec<(String, u64)> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata()
                && meta.is_file()
            {
                files.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
            }
        }
    }
    files.sort();
    files
}

/// Where to find the release server binary when `--server-bin` is not given:
/// `$CARGO_TARGET_DIR/release/stela`, else `target/release/stela` from the current directory,
/// else the workspace's `target/release/stela` beside this crate.
pub fn default_server_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("release").join("stela");
    }
    let local = PathBuf::from("target").join("release").join("stela");
    if local.exists() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join("release").join("stela")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_times_after_a_command_name_with_spaces() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1 1 1";
        assert_eq!(cpu_seconds_from_stat(stat), Some(3.0));
    }

    #[test]
    fn reads_own_memory_and_cpu() {
        assert!(memory(std::process::id()).is_some_and(|m| m.peak_bytes > 0));
        assert!(own_cpu_seconds().is_some());
    }
}
