//! Starting and stopping the `stela` binary, and small HTTP helpers shared by the tests.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How long the binary may take to print its listening line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a stopping process may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The line prefix `stela serve` prints once it accepts connections.
const LISTENING_PREFIX: &str = "stela listening on ";

/// The line prefix of the embedded MQTT broker's address, printed before the HTTP one.
const MQTT_LISTENING_PREFIX: &str = "stela mqtt listening on ";

/// A `stela` command with no `STELA_*` variable inherited from the caller's environment,
/// so that a developer's settings cannot change what the tests see.
pub fn stela_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stela"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("STELA_") {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// `stela serve --listen 127.0.0.1:0 --data-dir <data_dir>` plus `extra_args`; the embedded
/// MQTT broker gets a free port too unless `extra_args` configure MQTT.
pub fn serve_command(data_dir: &Path, extra_args: &[&str]) -> Command {
    let mut command = stela_command();
    command.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(data_dir);
    if !extra_args.iter().any(|arg| arg.starts_with("--mqtt-")) {
        command.arg("--mqtt-listen").arg("127.0.0.1:0");
    }
    command.args(extra_args);
    command
}

/// A running `stela` process; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`, from the listening line.
    pub base_url: String,
    /// `mqtt://127.0.0.1:PORT`, from the MQTT listening line printed before it, if any.
    pub mqtt_url: Option<String>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `stela serve` on a free port with `data_dir` and waits for its listening line.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(serve_command(data_dir, &[]))
    }

    /// Starts `command` (a `serve` command) and waits for its listening line.
    pub fn start_with(mut command: Command) -> Server {
        let mut child = command.spawn().expect("spawn the stela binary");
        let stderr = collect_stderr(&mut child);
        let stdout = child.stdout.take().expect("stdout is piped");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut announced = false;
            let mut mqtt_url = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix(MQTT_LISTENING_PREFIX) {
                    mqtt_url = Some(url.trim().to_owned());
                }
                if !announced && let Some(url) = line.strip_prefix(LISTENING_PREFIX) {
                    announced = true;
                    let _ = line_tx.send((url.trim().to_owned(), mqtt_url.clone()));
                }
            }
        });
        let (base_url, mqtt_url) = match line_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(urls) => urls,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "stela did not print `{LISTENING_PREFIX}...` (exit: {status:?}); stderr:\n{}",
                    snapshot(&stderr)
                );
            }
        };
        assert!(base_url.starts_with("http://127.0.0.1:"), "unexpected listening URL {base_url}");
        Server { child, base_url, mqtt_url, stderr }
    }

    /// `base_url` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends `signal` (e.g. `TERM`) with the `kill` command; std has no signal API.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }

    /// Kills the process with SIGKILL (what `Child::kill` sends on Unix) and reaps it:
    /// no chance to flush, close or shut down.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL stela");
        self.child.wait().expect("reap stela");
    }

    /// Waits for the process to exit on its own; panics after a timeout.
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        wait_with_timeout(&mut self.child, EXIT_TIMEOUT)
            .unwrap_or_else(|| panic!("stela did not exit; stderr:\n{}", self.stderr()))
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        snapshot(&self.stderr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outcome of a process that is expected to stop by itself.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to completion; kills it and panics if it is still running after a timeout.
pub fn run_to_exit(mut command: Command) -> Finished {
    let mut child = command.spawn().expect("spawn the stela binary");
    let stderr = collect_stderr(&mut child);
    let mut stdout_pipe = child.stdout.take().expect("stdout is piped");
    let stdout_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout_pipe.read_to_string(&mut text);
        text
    });
    let Some(status) = wait_with_timeout(&mut child, EXIT_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("stela kept running; stderr:\n{}", snapshot(&stderr));
    };
    let stdout = stdout_reader.join().unwrap_or_default();
    // The stderr thread ends with the pipe; give it a moment to drain the last bytes.
    let drained_by = Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&stderr) > 1 && Instant::now() < drained_by {
        std::thread::sleep(Duration::from_millis(10));
    }
    Finished { status, stdout, stderr: snapshot(&stderr) }
}

fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let collected = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let sink = Arc::clone(&collected);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read) = pipe.read(&mut buffer) {
            if read == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buffer[..read]).into_owned();
            if let Ok(mut all) = sink.lock() {
                all.push_str(&text);
            }
        }
    });
    collected
}

fn snapshot(text: &Mutex<String>) -> String {
    text.lock().map(|text| text.clone()).unwrap_or_default()
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll the stela process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP client for loopback tests: no proxy, bounded waits.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build the HTTP client")
}

/// The entity key of a `201 Created` answer, in URL form (`42` or `'abc'`), taken from the
/// `Location` header that SensorThings requires, e.g. `http://host/v1.1/Things(42)`.
pub fn created_key(response: &reqwest::Response) -> String {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .unwrap_or_else(|| panic!("201 without a Location header: {response:?}"))
        .to_str()
        .expect("Location is ASCII");
    let open = location.rfind('(').unwrap_or_else(|| panic!("no key in Location {location}"));
    let close = location[open..].find(')').map(|at| open + at);
    let close = close.unwrap_or_else(|| panic!("no key in Location {location}"));
    location[open + 1..close].to_owned()
}

/// An `@iot.id` value in URL form: numbers as they are, strings quoted (`'` doubled).
pub fn key_of(id: &serde_json::Value) -> String {
    match id {
        serde_json::Value::String(text) => format!("'{}'", text.replace('\'', "''")),
        serde_json::Value::Number(number) => number.to_string(),
        other => panic!("unexpected @iot.id {other}"),
    }
}
