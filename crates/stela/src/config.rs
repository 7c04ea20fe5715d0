//! Configuration of `stela serve`: the file format, the `STELA_*` environment variables, the
//! command-line flags, and [`load`], which merges them into one validated [`Config`].
//!
//! Precedence, from lowest to highest (this is the one place it is written down):
//!
//! 1. built-in defaults ([`Config::default`]; `config/stela.toml` lists every key at its default);
//! 2. the TOML file named by `--config FILE`, or else by `STELA_CONFIG`. No file is read unless
//!    one is named: `./stela.toml` is *not* picked up implicitly;
//! 3. the environment: `STELA_LISTEN`, `STELA_DATA_DIR`, `STELA_DATABASE`, `STELA_DEFAULT_TOP`,
//!    `STELA_MAX_TOP`, `STELA_MAX_BODY_BYTES`, `STELA_MAX_BATCH_REQUESTS`, `STELA_PUBLIC_URL`,
//!    `STELA_LOG`, `STELA_LOG_FORMAT`, `STELA_QUERY_TIMEOUT_MS`, `STELA_MQTT_LISTEN`,
//!    `STELA_MQTT_BROKER`, `STELA_MQTT_USERNAME`, `STELA_MQTT_PASSWORD`, `STELA_LEDGER_ORIGIN`,
//!    `STELA_CHECKPOINT_INTERVAL_MS`. A variable set to the empty string counts as unset;
//! 4. command-line flags (`--listen`, `--data-dir`, ...).
//!
//! Each layer overrides single keys, never whole sections. While merging, every value remembers
//! where it came from ([`Origin`]), so that a validation error names the key and its source, e.g.
//! `STELA_MAX_TOP: invalid number 'x'` or `query.max_top (config file): must be at least 1`.
//!
//! The flow is `file text + env map + flags → Raw → validate() → Config`; only a validated
//! `Config` leaves this module. [`load`] takes the environment as a map, so tests never touch
//! the process environment; [`process_env`] is the only function here that reads it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// The only configuration file version this build reads (the `version` key).
pub const CONFIG_VERSION: u32 = 1;

/// Environment variable naming the configuration file (`--config` wins over it).
pub const CONFIG_FILE_ENV: &str = "STELA_CONFIG";

/// Name of the SQLite database file inside the data directory.
pub const DATABASE_FILE_NAME: &str = "stela.db";

/// The validated configuration of `stela serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// HTTP listener and wire-level limits (`[server]`).
    pub server: ServerConfig,
    /// Where data lives (`[storage]`).
    pub storage: StorageConfig,
    /// Paging limits of collection queries (`[query]`).
    pub query: QueryConfig,
    /// Diagnostics output (`[log]`).
    pub log: LogConfig,
    /// The MQTT extension (`[mqtt]`).
    pub mqtt: MqttConfig,
    /// The verifiable log (`[ledger]`; `[log]` is diagnostics logging).
    pub ledger: LedgerConfig,
}

/// `[mqtt]`: the SensorThings MQTT extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// Embedded broker, external broker, or none.
    pub mode: MqttMode,
    /// Embedded broker: the username and password every client must present (anonymous
    /// access off). External broker: what Stela presents to it.
    pub credentials: Option<MqttCredentials>,
}

/// How the MQTT extension runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttMode {
    /// No MQTT (`--mqtt-listen off` without a broker).
    Off,
    /// The embedded broker on this address.
    Embedded(SocketAddr),
    /// A client of the broker at this `mqtt://host:port` URL.
    External(String),
}

/// A username and password; the password is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttCredentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for MqttCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `[server]`: how the HTTP API is exposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Socket address to bind; port 0 lets the OS pick a free port.
    pub listen: SocketAddr,
    /// Base URL clients see (behind a reverse proxy), without a trailing slash; `None` builds
    /// links from the request's `Host` header.
    pub public_url: Option<String>,
    /// Largest request body accepted; larger bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Most requests one `$batch` may hold, counting each request of a change set; a larger
    /// batch is refused with 413 before any of its requests runs.
    pub max_batch_requests: usize,
}

/// `[storage]`: where data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// Directory holding the log's signing key, and `stela.db` unless `database` names another
    /// database; created when missing.
    pub data_dir: PathBuf,
    /// The database of the entities and the log when it is not the embedded default
    /// `<data_dir>/stela.db`, e.g. a PostgreSQL server shared by several machines.
    pub database: Option<Database>,
}

impl StorageConfig {
    /// Path of the default SQLite database file, `<data_dir>/stela.db`.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE_NAME)
    }
}

/// A database named by the `storage.database` setting.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file (`sqlite://PATH` or a plain path), created when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://` or `postgresql://`).
    Postgres {
        /// The URL as given; it may hold a password, so it is never printed.
        url: String,
        /// The URL without password and query, for messages and logs.
        redacted: String,
    },
}

impl Database {
    /// The setting in the form `stela_store::Store::open` reads.
    pub fn store_setting(&self) -> Cow<'_, str> {
        match self {
            // The path came from a string, so the conversion is lossless; the prefix keeps a
            // path that itself starts with `sqlite://` intact.
            Database::Sqlite(path) => Cow::Owned(format!("sqlite://{}", path.to_string_lossy())),
            Database::Postgres { url, .. } => Cow::Borrowed(url),
        }
    }
}

/// How the database appears in messages and logs: a path, or a URL without its password.
impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres { redacted, .. } => f.write_str(redacted),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Database::Postgres { redacted, .. } => {
                f.debug_struct("Postgres").field("url", redacted).finish_non_exhaustive()
            }
        }
    }
}

/// `[query]`: paging limits and the time limit applied to every read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryConfig {
    /// Page size when a request has no `$top`.
    pub default_top: u32,
    /// Largest page a client may ask for with `$top`.
    pub max_top: u32,
    /// How long one read may run before it is stopped (HTTP 503); at least 1 ms.
    pub timeout: Duration,
}

/// `[ledger]`: the verifiable log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// The log's identity, a schema-less URL: the origin line of its checkpoints and the name of
    /// its signing key (C2SP tlog-checkpoint, signed-note).
    pub origin: String,
    /// How often a checkpoint is signed while the log grows; at least 10 ms.
    pub checkpoint_interval: Duration,
}

/// `[log]`: what is logged and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `tracing` filter directives, e.g. `info` or `info,stela_server=debug`.
    pub level: String,
    /// Human-readable text or one JSON object per line.
    pub format: LogFormat,
}

/// Output format of the logs (written to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("invalid log format '{text}' (expected text or json)")),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                public_url: None,
                max_body_bytes: 16 * 1024 * 1024,
                max_batch_requests: 10_000,
            },
            storage: StorageConfig { data_dir: PathBuf::from("./stela-data"), database: None },
            query: QueryConfig {
                default_top: 100,
                max_top: 10_000,
                timeout: Duration::from_millis(30_000),
            },
            log: LogConfig { level: "info".to_owned(), format: LogFormat::Text },
            mqtt: MqttConfig {
                mode: MqttMode::Embedded(SocketAddr::from(([127, 0, 0, 1], 1883))),
                credentials: None,
            },
            ledger: LedgerConfig {
                origin: "stela.localhost/log".to_owned(),
                checkpoint_interval: Duration::from_millis(1000),
            },
        }
    }
}

/// Command-line flags of `stela serve`; every one is optional and overrides the same key from
/// the environment, the file and the defaults (see the module documentation).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flags {
    /// Configuration file (TOML) [env: STELA_CONFIG]; no file is read unless one is named
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, IP:PORT; port 0 picks a free port [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory for the log's signing key and the default database (`stela.db`), created if
    /// missing [default: ./stela-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database: postgres://USER@HOST:PORT/DB (PostgreSQL with PostGIS), or an SQLite file,
    /// sqlite://PATH or PATH [default: <data-dir>/stela.db]. A URL with a password is better
    /// given in STELA_DATABASE or the config file: flags show in `ps`
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Page size of collections when a request has no $top [default: 100]
    #[arg(long, value_name = "N")]
    pub default_top: Option<u32>,
    /// Largest $top a client may ask for [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_top: Option<u32>,
    /// How long one read may run before it is stopped with 503, in milliseconds [default: 30000]
    #[arg(long, value_name = "MS")]
    pub query_timeout_ms: Option<u64>,
    /// Largest request body accepted, in bytes [default: 16777216]
    #[arg(long, value_name = "N")]
    pub max_body_bytes: Option<usize>,
    /// Most requests one $batch may hold, counting each request of a change set [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_batch_requests: Option<usize>,
    /// Base URL clients use to reach this server, used in links (default: from the Host header)
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Log output format [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Address of the embedded MQTT broker, IP:PORT, or `off` [default: 127.0.0.1:1883]
    #[arg(long, value_name = "ADDR")]
    pub mqtt_listen: Option<String>,
    /// Use this external MQTT broker (mqtt://host:port) instead of the embedded one
    #[arg(long, value_name = "URL")]
    pub mqtt_broker: Option<String>,
    /// Identity of the verifiable log, a schema-less URL: checkpoint origin and signing key
    /// name [default: stela.localhost/log]
    #[arg(long, value_name = "NAME")]
    pub ledger_origin: Option<String>,
    /// How often a checkpoint of the growing log is signed, in milliseconds [default: 1000]
    #[arg(long, value_name = "MS")]
    pub checkpoint_interval_ms: Option<u64>,
}

/// Where a configuration value came from; printed in front of every validation error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default of the given file key.
    Default(&'static str),
    /// The given key of the configuration file.
    File(&'static str),
    /// The given environment variable.
    Env(&'static str),
    /// The given command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default(key) => write!(f, "{key} (default)"),
            Origin::File(key) => write!(f, "{key} (config file)"),
            Origin::Env(name) => f.write_str(name),
            Origin::Flag(flag) => f.write_str(flag),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("config file: {0}")]
    File(String),
    /// A value is missing or not acceptable; `origin` names the key and its source.
    #[error("{origin}: {message}")]
    Invalid {
        /// The key and source that set the offending value.
        origin: Origin,
        /// What is wrong with it, lowercase, no trailing period.
        message: String,
    },
}

/// Merges defaults, the configuration file, the environment and the flags, in that order of
/// precedence, and validates the result.
///
/// `file_text` is the content of the configuration file when one was named (see
/// [`config_file_path`]); `env` holds the `STELA_*` variables (others are ignored).
pub fn load(
    file_text: Option<&str>,
    env: &HashMap<String, String>,
    flags: &Flags,
) -> Result<Config, ConfigError> {
    let mut raw = Raw::defaults();
    if let Some(text) = file_text {
        raw.apply_file(parse_file(text)?);
    }
    raw.apply_env(env)?;
    raw.apply_flags(flags);
    raw.validate()
}

/// The configuration file to read: `--config`, else `STELA_CONFIG`, else none.
pub fn config_file_path(env: &HashMap<String, String>, flags: &Flags) -> Option<PathBuf> {
    flags.config.clone().or_else(|| env_text(env, CONFIG_FILE_ENV).map(PathBuf::from))
}

/// Collects the process's `STELA_*` environment variables; the one place that reads them.
pub fn process_env() -> Result<HashMap<String, String>, ConfigError> {
    let mut env = HashMap::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let Some(known) = ENV_NAMES.iter().find(|known| **known == name) else { continue };
        let value = value.into_string().map_err(|_| ConfigError::Invalid {
            origin: Origin::Env(known),
            message: "value is not valid UTF-8".to_owned(),
        })?;
        env.insert(name.to_owned(), value);
    }
    Ok(env)
}

/// One configuration key under its three names.
struct Key {
    /// Dotted path in the TOML file.
    file: &'static str,
    /// Environment variable.
    env: &'static str,
    /// Command-line flag, when there is one.
    flag: Option<&'static str>,
}

const LISTEN: Key = Key { file: "server.listen", env: "STELA_LISTEN", flag: Some("--listen") };
const PUBLIC_URL: Key =
    Key { file: "server.public_url", env: "STELA_PUBLIC_URL", flag: Some("--public-url") };
const MAX_BODY_BYTES: Key = Key {
    file: "server.max_body_bytes",
    env: "STELA_MAX_BODY_BYTES",
    flag: Some("--max-body-bytes"),
};
const MAX_BATCH_REQUESTS: Key = Key {
    file: "server.max_batch_requests",
    env: "STELA_MAX_BATCH_REQUESTS",
    flag: Some("--max-batch-requests"),
};
const DATA_DIR: Key =
    Key { file: "storage.data_dir", env: "STELA_DATA_DIR", flag: Some("--data-dir") };
const DATABASE: Key =
    Key { file: "storage.database", env: "STELA_DATABASE", flag: Some("--database") };
const DEFAULT_TOP: Key =
    Key { file: "query.default_top", env: "STELA_DEFAULT_TOP", flag: Some("--default-top") };
const MAX_TOP: Key = Key { file: "query.max_top", env: "STELA_MAX_TOP", flag: Some("--max-top") };
const QUERY_TIMEOUT_MS: Key = Key {
    file: "query.timeout_ms",
    env: "STELA_QUERY_TIMEOUT_MS",
    flag: Some("--query-timeout-ms"),
};
const LOG_LEVEL: Key = Key { file: "log.level", env: "STELA_LOG", flag: None };
const LOG_FORMAT: Key =
    Key { file: "log.format", env: "STELA_LOG_FORMAT", flag: Some("--log-format") };
const MQTT_LISTEN: Key =
    Key { file: "mqtt.listen", env: "STELA_MQTT_LISTEN", flag: Some("--mqtt-listen") };
const MQTT_BROKER: Key =
    Key { file: "mqtt.broker", env: "STELA_MQTT_BROKER", flag: Some("--mqtt-broker") };
const MQTT_USERNAME: Key = Key { file: "mqtt.username", env: "STELA_MQTT_USERNAME", flag: None };
const MQTT_PASSWORD: Key = Key { file: "mqtt.password", env: "STELA_MQTT_PASSWORD", flag: None };
const LEDGER_ORIGIN: Key =
    Key { file: "ledger.origin", env: "STELA_LEDGER_ORIGIN", flag: Some("--ledger-origin") };
const CHECKPOINT_INTERVAL_MS: Key = Key {
    file: "ledger.checkpoint_interval_ms",
    env: "STELA_CHECKPOINT_INTERVAL_MS",
    flag: Some("--checkpoint-interval-ms"),
};

/// Every environment variable the configuration reads.
const ENV_NAMES: [&str; 18] = [
    CONFIG_FILE_ENV,
    LISTEN.env,
    PUBLIC_URL.env,
    MAX_BODY_BYTES.env,
    MAX_BATCH_REQUESTS.env,
    DATA_DIR.env,
    DATABASE.env,
    DEFAULT_TOP.env,
    MAX_TOP.env,
    QUERY_TIMEOUT_MS.env,
    LOG_LEVEL.env,
    LOG_FORMAT.env,
    MQTT_LISTEN.env,
    MQTT_BROKER.env,
    MQTT_USERNAME.env,
    MQTT_PASSWORD.env,
    LEDGER_ORIGIN.env,
    CHECKPOINT_INTERVAL_MS.env,
];

impl Key {
    fn flag_origin(&self) -> Origin {
        debug_assert!(self.flag.is_some(), "{} has no flag", self.file);
        Origin::Flag(self.flag.unwrap_or(self.file))
    }
}

/// The configuration file as written. Every key is optional except `version`, whose absence is
/// reported with a hint rather than serde's generic message. Later sections (e.g. chain) get
/// their own struct here when they exist.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    version: Option<u32>,
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    storage: FileStorage,
    #[serde(default)]
    query: FileQuery,
    #[serde(default)]
    log: FileLog,
    #[serde(default)]
    mqtt: FileMqtt,
    #[serde(default)]
    ledger: FileLedger,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMqtt {
    listen: Option<String>,
    broker: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    listen: Option<String>,
    public_url: Option<String>,
    max_body_bytes: Option<usize>,
    max_batch_requests: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    data_dir: Option<PathBuf>,
    database: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileQuery {
    default_top: Option<u32>,
    max_top: Option<u32>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLedger {
    origin: Option<String>,
    checkpoint_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    level: Option<String>,
    format: Option<LogFormat>,
}

fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    let file: FileConfig =
        toml::from_str(text).map_err(|error| ConfigError::File(error.to_string()))?;
    match file.version {
        Some(CONFIG_VERSION) => Ok(file),
        Some(other) => Err(ConfigError::Invalid {
            origin: Origin::File("version"),
            message: format!(
                "unsupported configuration version {other} (this stela reads version = {CONFIG_VERSION})"
            ),
        }),
        None => Err(ConfigError::Invalid {
            origin: Origin::File("version"),
            message: format!("missing; start the file with `version = {CONFIG_VERSION}`"),
        }),
    }
}

/// A value on its way through the layers, with the source that set it last.
#[derive(Debug, Clone)]
struct Setting<T> {
    value: T,
    origin: Origin,
}

impl<T> Setting<T> {
    fn default_for(key: &Key, value: T) -> Self {
        Setting { value, origin: Origin::Default(key.file) }
    }

    fn set(&mut self, value: T, origin: Origin) {
        self.value = value;
        self.origin = origin;
    }

    fn set_from_file(&mut self, value: Option<T>, key: &Key) {
        if let Some(value) = value {
            self.set(value, Origin::File(key.file));
        }
    }

    fn set_from_flag(&mut self, value: Option<T>, key: &Key) {
        if let Some(value) = value {
            self.set(value, key.flag_origin());
        }
    }
}

/// Merged but unvalidated settings.
#[derive(Debug)]
struct Raw {
    listen: Setting<String>,
    public_url: Setting<Option<String>>,
    max_body_bytes: Setting<usize>,
    max_batch_requests: Setting<usize>,
    data_dir: Setting<PathBuf>,
    database: Setting<Option<String>>,
    default_top: Setting<u32>,
    max_top: Setting<u32>,
    query_timeout_ms: Setting<u64>,
    log_level: Setting<String>,
    log_format: Setting<LogFormat>,
    mqtt_listen: Setting<String>,
    mqtt_broker: Setting<Option<String>>,
    mqtt_username: Setting<Option<String>>,
    mqtt_password: Setting<Option<String>>,
    ledger_origin: Setting<String>,
    checkpoint_interval_ms: Setting<u64>,
}

impl Raw {
    fn defaults() -> Raw {
        let Config { server, storage, query, log, mqtt: _, ledger } = Config::default();
        Raw {
            listen: Setting::default_for(&LISTEN, server.listen.to_string()),
            public_url: Setting::default_for(&PUBLIC_URL, server.public_url),
            max_body_bytes: Setting::default_for(&MAX_BODY_BYTES, server.max_body_bytes),
            max_batch_requests: Setting::default_for(
                &MAX_BATCH_REQUESTS,
                server.max_batch_requests,
            ),
            data_dir: Setting::default_for(&DATA_DIR, storage.data_dir),
            database: Setting::default_for(&DATABASE, None),
            default_top: Setting::default_for(&DEFAULT_TOP, query.default_top),
            max_top: Setting::default_for(&MAX_TOP, query.max_top),
            query_timeout_ms: Setting::default_for(&QUERY_TIMEOUT_MS, millis(query.timeout)),
            log_level: Setting::default_for(&LOG_LEVEL, log.level),
            log_format: Setting::default_for(&LOG_FORMAT, log.format),
            mqtt_listen: Setting::default_for(&MQTT_LISTEN, "127.0.0.1:1883".to_owned()),
            mqtt_broker: Setting::default_for(&MQTT_BROKER, None),
            mqtt_username: Setting::default_for(&MQTT_USERNAME, None),
            mqtt_password: Setting::default_for(&MQTT_PASSWORD, None),
            ledger_origin: Setting::default_for(&LEDGER_ORIGIN, ledger.origin),
            checkpoint_interval_ms: Setting::default_for(
                &CHECKPOINT_INTERVAL_MS,
                millis(ledger.checkpoint_interval),
            ),
        }
    }

    fn apply_file(&mut self, file: FileConfig) {
        let FileConfig { version: _, server, storage, query, log, mqtt, ledger } = file;
        self.listen.set_from_file(server.listen, &LISTEN);
        self.public_url.set_from_file(server.public_url.map(Some), &PUBLIC_URL);
        self.max_body_bytes.set_from_file(server.max_body_bytes, &MAX_BODY_BYTES);
        self.max_batch_requests.set_from_file(server.max_batch_requests, &MAX_BATCH_REQUESTS);
        self.data_dir.set_from_file(storage.data_dir, &DATA_DIR);
        self.database.set_from_file(storage.database.map(Some), &DATABASE);
        self.default_top.set_from_file(query.default_top, &DEFAULT_TOP);
        self.max_top.set_from_file(query.max_top, &MAX_TOP);
        self.query_timeout_ms.set_from_file(query.timeout_ms, &QUERY_TIMEOUT_MS);
        self.log_level.set_from_file(log.level, &LOG_LEVEL);
        self.log_format.set_from_file(log.format, &LOG_FORMAT);
        self.mqtt_listen.set_from_file(mqtt.listen, &MQTT_LISTEN);
        self.mqtt_broker.set_from_file(mqtt.broker.map(Some), &MQTT_BROKER);
        self.mqtt_username.set_from_file(mqtt.username.map(Some), &MQTT_USERNAME);
        self.mqtt_password.set_from_file(mqtt.password.map(Some), &MQTT_PASSWORD);
        self.ledger_origin.set_from_file(ledger.origin, &LEDGER_ORIGIN);
        self.checkpoint_interval_ms
            .set_from_file(ledger.checkpoint_interval_ms, &CHECKPOINT_INTERVAL_MS);
    }

    fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        if let Some(text) = env_text(env, LISTEN.env) {
            self.listen.set(text.to_owned(), Origin::Env(LISTEN.env));
        }
        if let Some(text) = env_text(env, PUBLIC_URL.env) {
            self.public_url.set(Some(text.to_owned()), Origin::Env(PUBLIC_URL.env));
        }
        if let Some(text) = env_text(env, MAX_BODY_BYTES.env) {
            self.max_body_bytes
                .set(env_number(text, &MAX_BODY_BYTES)?, Origin::Env(MAX_BODY_BYTES.env));
        }
        if let Some(text) = env_text(env, MAX_BATCH_REQUESTS.env) {
            self.max_batch_requests
                .set(env_number(text, &MAX_BATCH_REQUESTS)?, Origin::Env(MAX_BATCH_REQUESTS.env));
        }
        if let Some(text) = env_text(env, DATA_DIR.env) {
            self.data_dir.set(PathBuf::from(text), Origin::Env(DATA_DIR.env));
        }
        if let Some(text) = env_text(env, DATABASE.env) {
            self.database.set(Some(text.to_owned()), Origin::Env(DATABASE.env));
        }
        if let Some(text) = env_text(env, DEFAULT_TOP.env) {
            self.default_top.set(env_number(text, &DEFAULT_TOP)?, Origin::Env(DEFAULT_TOP.env));
        }
        if let Some(text) = env_text(env, MAX_TOP.env) {
            self.max_top.set(env_number(text, &MAX_TOP)?, Origin::Env(MAX_TOP.env));
        }
        if let Some(text) = env_text(env, QUERY_TIMEOUT_MS.env) {
            self.query_timeout_ms
                .set(env_number(text, &QUERY_TIMEOUT_MS)?, Origin::Env(QUERY_TIMEOUT_MS.env));
        }
        if let Some(text) = env_text(env, LOG_LEVEL.env) {
            self.log_level.set(text.to_owned(), Origin::Env(LOG_LEVEL.env));
        }
        if let Some(text) = env_text(env, LOG_FORMAT.env) {
            let format = text.parse().map_err(|message| ConfigError::Invalid {
                origin: Origin::Env(LOG_FORMAT.env),
                message,
            })?;
            self.log_format.set(format, Origin::Env(LOG_FORMAT.env));
        }
        if let Some(text) = env_text(env, MQTT_LISTEN.env) {
            self.mqtt_listen.set(text.to_owned(), Origin::Env(MQTT_LISTEN.env));
        }
        if let Some(text) = env_text(env, MQTT_BROKER.env) {
            self.mqtt_broker.set(Some(text.to_owned()), Origin::Env(MQTT_BROKER.env));
        }
        if let Some(text) = env_text(env, MQTT_USERNAME.env) {
            self.mqtt_username.set(Some(text.to_owned()), Origin::Env(MQTT_USERNAME.env));
        }
        if let Some(text) = env_text(env, MQTT_PASSWORD.env) {
            self.mqtt_password.set(Some(text.to_owned()), Origin::Env(MQTT_PASSWORD.env));
        }
        if let Some(text) = env_text(env, LEDGER_ORIGIN.env) {
            self.ledger_origin.set(text.to_owned(), Origin::Env(LEDGER_ORIGIN.env));
        }
        if let Some(text) = env_text(env, CHECKPOINT_INTERVAL_MS.env) {
            self.checkpoint_interval_ms.set(
                env_number(text, &CHECKPOINT_INTERVAL_MS)?,
                Origin::Env(CHECKPOINT_INTERVAL_MS.env),
            );
        }
        Ok(())
    }

    fn apply_flags(&mut self, flags: &Flags) {
        // `config` chose the file and is not a setting itself.
        let Flags {
            config: _,
            listen,
            data_dir,
            database,
            default_top,
            max_top,
            query_timeout_ms,
            max_body_bytes,
            max_batch_requests,
            public_url,
            log_format,
            mqtt_listen,
            mqtt_broker,
            ledger_origin,
            checkpoint_interval_ms,
        } = flags;
        self.listen.set_from_flag(listen.clone(), &LISTEN);
        self.public_url.set_from_flag(public_url.clone().map(Some), &PUBLIC_URL);
        self.max_body_bytes.set_from_flag(*max_body_bytes, &MAX_BODY_BYTES);
        self.max_batch_requests.set_from_flag(*max_batch_requests, &MAX_BATCH_REQUESTS);
        self.data_dir.set_from_flag(data_dir.clone(), &DATA_DIR);
        self.database.set_from_flag(database.clone().map(Some), &DATABASE);
        self.default_top.set_from_flag(*default_top, &DEFAULT_TOP);
        self.max_top.set_from_flag(*max_top, &MAX_TOP);
        self.query_timeout_ms.set_from_flag(*query_timeout_ms, &QUERY_TIMEOUT_MS);
        self.log_format.set_from_flag(*log_format, &LOG_FORMAT);
        self.mqtt_listen.set_from_flag(mqtt_listen.clone(), &MQTT_LISTEN);
        self.mqtt_broker.set_from_flag(mqtt_broker.clone().map(Some), &MQTT_BROKER);
        self.ledger_origin.set_from_flag(ledger_origin.clone(), &LEDGER_ORIGIN);
        self.checkpoint_interval_ms.set_from_flag(*checkpoint_interval_ms, &CHECKPOINT_INTERVAL_MS);
    }

    fn validate(self) -> Result<Config, ConfigError> {
        let Raw {
            listen,
            public_url,
            max_body_bytes,
            max_batch_requests,
            data_dir,
            database,
            default_top,
            max_top,
            query_timeout_ms,
            log_level,
            log_format,
            mqtt_listen,
            mqtt_broker,
            mqtt_username,
            mqtt_password,
            ledger_origin,
            checkpoint_interval_ms,
        } = self;

        let listen_addr = listen.value.parse::<SocketAddr>().map_err(|_| {
            invalid(
                listen.origin,
                format!(
                    "invalid address '{}' (expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)",
                    listen.value
                ),
            )
        })?;
        let public_url_value = match public_url.value {
            Some(url) => Some(
                validate_public_url(&url).map_err(|message| invalid(public_url.origin, message))?,
            ),
            None => None,
        };
        if max_body_bytes.value == 0 {
            return Err(invalid(max_body_bytes.origin, "must be at least 1".to_owned()));
        }
        if max_batch_requests.value == 0 {
            return Err(invalid(max_batch_requests.origin, "must be at least 1".to_owned()));
        }
        if data_dir.value.as_os_str().is_empty() {
            return Err(invalid(data_dir.origin, "must not be empty".to_owned()));
        }
        if max_top.value < 1 {
            return Err(invalid(max_top.origin, "must be at least 1".to_owned()));
        }
        if default_top.value < 1 {
            return Err(invalid(default_top.origin, "must be at least 1".to_owned()));
        }
        if default_top.value > max_top.value {
            return Err(invalid(
                default_top.origin,
                format!(
                    "default_top {} is larger than max_top {} (set by {})",
                    default_top.value, max_top.value, max_top.origin
                ),
            ));
        }
        if query_timeout_ms.value < 1 {
            return Err(invalid(query_timeout_ms.origin, "must be at least 1".to_owned()));
        }
        if let Err(error) = EnvFilter::builder().parse(&log_level.value) {
            return Err(invalid(
                log_level.origin,
                format!("invalid log filter '{}': {error}", log_level.value),
            ));
        }

        Ok(Config {
            server: ServerConfig {
                listen: listen_addr,
                public_url: public_url_value,
                max_body_bytes: max_body_bytes.value,
                max_batch_requests: max_batch_requests.value,
            },
            storage: StorageConfig {
                data_dir: data_dir.value,
                database: validate_database(database)?,
            },
            query: QueryConfig {
                default_top: default_top.value,
                max_top: max_top.value,
                timeout: Duration::from_millis(query_timeout_ms.value),
            },
            log: LogConfig { level: log_level.value, format: log_format.value },
            mqtt: validate_mqtt(mqtt_listen, mqtt_broker, mqtt_username, mqtt_password)?,
            ledger: validate_ledger(ledger_origin, checkpoint_interval_ms)?,
        })
    }
}

/// Smallest checkpoint interval accepted, in milliseconds.
const MIN_CHECKPOINT_INTERVAL_MS: u64 = 10;

/// The log's origin must be usable as a signed-note key name (non-empty, no whitespace, no
/// `+`, no control characters); the checkpoint interval must not make the signer spin.
fn validate_ledger(
    origin: Setting<String>,
    checkpoint_interval_ms: Setting<u64>,
) -> Result<LedgerConfig, ConfigError> {
    if origin.value.is_empty() {
        return Err(invalid(origin.origin, "must not be empty".to_owned()));
    }
    if origin.value.chars().any(|c| c.is_whitespace() || c.is_control() || c == '+') {
        return Err(invalid(
            origin.origin,
            format!(
                "invalid log origin '{}' (expected a schema-less URL without whitespace or '+', \
                 e.g. example.org/log; it is also the signing key's name)",
                origin.value.escape_debug()
            ),
        ));
    }
    if checkpoint_interval_ms.value < MIN_CHECKPOINT_INTERVAL_MS {
        return Err(invalid(
            checkpoint_interval_ms.origin,
            format!("must be at least {MIN_CHECKPOINT_INTERVAL_MS}"),
        ));
    }
    Ok(LedgerConfig {
        origin: origin.value,
        checkpoint_interval: Duration::from_millis(checkpoint_interval_ms.value),
    })
}

/// What a `storage.database` value may look like, for error messages.
const DATABASE_FORMS: &str =
    "expected postgres://USER@HOST:PORT/DB, postgresql://..., sqlite://PATH or a file path";

/// A database setting names PostgreSQL by a URL the client accepts, or an SQLite file; other
/// schemes are refused rather than taken for a file name. Messages never show a password.
fn validate_database(database: Setting<Option<String>>) -> Result<Option<Database>, ConfigError> {
    let Some(text) = database.value else { return Ok(None) };
    if text.trim().is_empty() {
        return Err(invalid(database.origin, "must not be empty".to_owned()));
    }
    let Some((scheme, rest)) = url_scheme(&text) else {
        return Ok(Some(Database::Sqlite(PathBuf::from(text))));
    };
    let shown = redact_url(&text);
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" if rest.is_empty() => Err(invalid(
            database.origin,
            format!("'{shown}' names no file (expected sqlite://PATH, e.g. sqlite://./stela.db)"),
        )),
        "sqlite" => Ok(Some(Database::Sqlite(PathBuf::from(rest)))),
        scheme @ ("postgres" | "postgresql") => {
            // The store tells the backends apart by the lowercase scheme.
            let url = format!("{scheme}://{rest}");
            let parsed = postgres::Config::from_str(&url).map_err(|error| {
                invalid(database.origin, format!("invalid PostgreSQL URL '{shown}': {error}"))
            })?;
            if parsed.get_hosts().is_empty() {
                return Err(invalid(
                    database.origin,
                    format!("'{shown}' names no host ({DATABASE_FORMS})"),
                ));
            }
            Ok(Some(Database::Postgres { redacted: redact_url(&url), url }))
        }
        _ => Err(invalid(
            database.origin,
            format!("unsupported database '{shown}' ({DATABASE_FORMS})"),
        )),
    }
}

/// The scheme and the rest of `scheme://rest`, when `text` starts with a URL scheme (a letter,
/// then letters, digits, `+`, `-` or `.`).
fn url_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let is_scheme = starts_with_letter
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    is_scheme.then_some((scheme, rest))
}

/// `scheme://user@host:port/path` of a URL, without its password and query (where
/// `password=` may be given), so that it can be printed.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    // The last `@` ends the user information even when an unencoded password holds one.
    let (user, host_and_path) = match rest.rsplit_once('@') {
        Some((user_info, host_and_path)) => {
            (user_info.split(':').next().filter(|user| !user.is_empty()), host_and_path)
        }
        None => (None, rest),
    };
    match user {
        Some(user) => format!("{scheme}://{user}@{host_and_path}"),
        None => format!("{scheme}://{host_and_path}"),
    }
}

/// A default duration in whole milliseconds, as the file, the environment and the flags give it.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `off` (any case) switches a setting off.
fn is_off(text: &str) -> bool {
    text.trim().eq_ignore_ascii_case("off")
}

/// The MQTT mode: an external broker when one is named, else the embedded broker unless its
/// address is `off`.
fn validate_mqtt(
    listen: Setting<String>,
    broker: Setting<Option<String>>,
    username: Setting<Option<String>>,
    password: Setting<Option<String>>,
) -> Result<MqttConfig, ConfigError> {
    let broker_url = broker.value.filter(|url| !url.is_empty() && !is_off(url));
    let mode = if let Some(url) = broker_url {
        stela_mqtt::parse_broker_url(&url)
            .map_err(|error| invalid(broker.origin, error.to_string()))?;
        MqttMode::External(url)
    } else if is_off(&listen.value) {
        MqttMode::Off
    } else {
        let addr = listen.value.parse::<SocketAddr>().map_err(|_| {
            invalid(
                listen.origin,
                format!(
                    "invalid address '{}' (expected IP:PORT, e.g. 127.0.0.1:1883, or off)",
                    listen.value
                ),
            )
        })?;
        MqttMode::Embedded(addr)
    };
    let credentials = match (username.value, password.value) {
        (None, None) => None,
        (Some(username), Some(password)) if !username.is_empty() => {
            Some(MqttCredentials { username, password })
        }
        (Some(_), Some(_)) => {
            return Err(invalid(username.origin, "must not be empty".to_owned()));
        }
        (Some(_), None) => {
            return Err(invalid(
                username.origin,
                format!(
                    "set the password too ({} or {}), or neither",
                    MQTT_PASSWORD.file, MQTT_PASSWORD.env
                ),
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                password.origin,
                format!(
                    "set the username too ({} or {}), or neither",
                    MQTT_USERNAME.file, MQTT_USERNAME.env
                ),
            ));
        }
    };
    Ok(MqttConfig { mode, credentials })
}

fn invalid(origin: Origin, message: String) -> ConfigError {
    ConfigError::Invalid { origin, message }
}

/// The value of `name`, treating an empty value as unset.
fn env_text<'env>(env: &'env HashMap<String, String>, name: &str) -> Option<&'env str> {
    env.get(name).map(String::as_str).filter(|text| !text.is_empty())
}

fn env_number<T: FromStr>(text: &str, key: &Key) -> Result<T, ConfigError> {
    text.parse().map_err(|_| invalid(Origin::Env(key.env), format!("invalid number '{text}'")))
}

/// Accepts `http(s)://host[:port][/path]` and returns it without trailing slashes, so that the
/// server can append `/v1.1/...` directly.
fn validate_public_url(url: &str) -> Result<String, String> {
    let explain = || {
        format!(
            "invalid URL '{url}' (expected http:// or https:// followed by a host and an optional \
             path, e.g. https://example.org/sta)"
        )
    };
    let rest =
        url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).ok_or_else(explain)?;
    let host = rest.split('/').next().unwrap_or_default();
    let has_forbidden_char =
        url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#');
    if host.is_empty() || has_forbidden_char {
        return Err(explain());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
#[path = "config_test.rs"]
mod tests;
