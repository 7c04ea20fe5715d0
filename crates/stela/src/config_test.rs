//! Tests of configuration loading: defaults, the sample file, precedence, rejections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Config, ConfigError, Database, Flags, LogFormat, MqttMode, config_file_path, load};

/// The committed sample configuration.
const SAMPLE: &str = include_str!("../../../config/stela.toml");

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

/// Loads and expects an error whose message is exactly `expected`.
fn check_error(file: Option<&str>, env: &HashMap<String, String>, flags: &Flags, expected: &str) {
    match load(file, env, flags) {
        Ok(config) => panic!("expected error `{expected}`, got {config:?}"),
        Err(error) => assert_eq!(error.to_string(), expected),
    }
}

/// Loads and expects a file error whose message contains `needle`.
fn check_file_error(file: &str, needle: &str) {
    match load(Some(file), &HashMap::new(), &Flags::default()) {
        Ok(config) => panic!("expected an error containing `{needle}`, got {config:?}"),
        Err(error @ ConfigError::File(_)) => {
            let message = error.to_string();
            assert!(message.contains(needle), "`{needle}` not in: {message}");
        }
        Err(other) => panic!("expected a file error containing `{needle}`, got `{other}`"),
    }
}

#[test]
fn nothing_given_yields_the_documented_defaults() {
    let config = load(None, &HashMap::new(), &Flags::default()).expect("defaults are valid");
    assert_eq!(config, Config::default());
    assert_eq!(config.server.listen, addr("127.0.0.1:8080"));
    assert_eq!(config.server.public_url, None);
    assert_eq!(config.server.max_body_bytes, 16 * 1024 * 1024);
    assert_eq!(config.server.max_batch_requests, 10_000);
    assert_eq!(config.storage.data_dir, PathBuf::from("./stela-data"));
    assert_eq!(config.storage.database, None);
    assert_eq!(config.storage.database_path(), PathBuf::from("./stela-data/stela.db"));
    assert_eq!(config.query.default_top, 100);
    assert_eq!(config.query.max_top, 10_000);
    assert_eq!(config.query.timeout, Duration::from_secs(30));
    assert_eq!(config.log.level, "info");
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.ledger.origin, "stela.localhost/log");
    assert_eq!(config.ledger.checkpoint_interval, Duration::from_secs(1));
}

#[test]
fn sample_file_equals_the_defaults() {
    let config = load(Some(SAMPLE), &HashMap::new(), &Flags::default())
        .unwrap_or_else(|error| panic!("config/stela.toml does not load: {error}"));
    assert_eq!(config, Config::default());
}

#[test]
fn sample_file_sets_every_key() {
    // Every key appears uncommented, so that the sample really documents each default;
    // public_url has no default value and is shown commented out.
    for key in [
        "version",
        "listen",
        "max_body_bytes",
        "max_batch_requests",
        "data_dir",
        "default_top",
        "max_top",
        "timeout_ms",
        "level",
        "format",
        "origin",
        "checkpoint_interval_ms",
    ] {
        let prefix = format!("{key} = ");
        assert!(SAMPLE.lines().any(|line| line.starts_with(&prefix)), "sample lacks `{key}`");
    }
    for optional in
        ["# public_url = ", "# database = ", "# broker = ", "# username = ", "# password = "]
    {
        assert!(SAMPLE.lines().any(|line| line.starts_with(optional)), "sample lacks `{optional}`");
    }
}

const FILE_WITH_EVERY_KEY: &str = r#"
version = 1

[server]
listen = "127.0.0.1:1001"
public_url = "https://file.example/sta/"
max_body_bytes = 1001
max_batch_requests = 1001

[storage]
data_dir = "/file/data"
database = "postgres://file@file.example:5432/stela"

[query]
default_top = 11
max_top = 1001
timeout_ms = 1001

[log]
level = "warn"
format = "json"

[mqtt]
listen = "127.0.0.1:2001"
username = "file-user"
password = "file-password"

[ledger]
origin = "file.example/log"
checkpoint_interval_ms = 1001
"#;

fn env_with_every_key() -> HashMap<String, String> {
    env(&[
        ("STELA_LISTEN", "127.0.0.1:1002"),
        ("STELA_PUBLIC_URL", "https://env.example/sta"),
        ("STELA_MAX_BODY_BYTES", "1002"),
        ("STELA_MAX_BATCH_REQUESTS", "1002"),
        ("STELA_DATA_DIR", "/env/data"),
        ("STELA_DATABASE", "postgresql://env:env-password@env.example/stela"),
        ("STELA_DEFAULT_TOP", "12"),
        ("STELA_MAX_TOP", "1002"),
        ("STELA_QUERY_TIMEOUT_MS", "1002"),
        ("STELA_LOG", "debug"),
        ("STELA_LOG_FORMAT", "text"),
        ("STELA_MQTT_LISTEN", "127.0.0.1:2002"),
        ("STELA_MQTT_USERNAME", "env-user"),
        ("STELA_MQTT_PASSWORD", "env-password"),
        ("STELA_LEDGER_ORIGIN", "env.example/log"),
        ("STELA_CHECKPOINT_INTERVAL_MS", "1002"),
    ])
}

fn flags_with_every_key() -> Flags {
    Flags {
        config: Some(PathBuf::from("/ignored/by/load.toml")),
        listen: Some("127.0.0.1:1003".to_owned()),
        data_dir: Some(PathBuf::from("/flag/data")),
        database: Some("sqlite:///flag/stela.db".to_owned()),
        default_top: Some(13),
        max_top: Some(1003),
        query_timeout_ms: Some(1003),
        max_body_bytes: Some(1003),
        max_batch_requests: Some(1003),
        public_url: Some("http://flag.example".to_owned()),
        log_format: Some(LogFormat::Json),
        mqtt_listen: Some("127.0.0.1:2003".to_owned()),
        mqtt_broker: None,
        ledger_origin: Some("flag.example/log".to_owned()),
        checkpoint_interval_ms: Some(1003),
    }
}

#[test]
fn file_overrides_defaults() {
    let config =
        load(Some(FILE_WITH_EVERY_KEY), &HashMap::new(), &Flags::default()).expect("valid");
    assert_eq!(config.server.listen, addr("127.0.0.1:1001"));
    assert_eq!(config.server.public_url.as_deref(), Some("https://file.example/sta"));
    assert_eq!(config.server.max_body_bytes, 1001);
    assert_eq!(config.server.max_batch_requests, 1001);
    assert_eq!(config.storage.data_dir, PathBuf::from("/file/data"));
    let database = config.storage.database.as_ref().expect("a database");
    assert_eq!(database.store_setting(), "postgres://file@file.example:5432/stela");
    assert_eq!(config.query.default_top, 11);
    assert_eq!(config.query.max_top, 1001);
    assert_eq!(config.query.timeout, Duration::from_millis(1001));
    assert_eq!(config.log.level, "warn");
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.mqtt.mode, MqttMode::Embedded(addr("127.0.0.1:2001")));
    assert_eq!(config.mqtt.credentials.as_ref().map(|c| c.username.as_str()), Some("file-user"));
    assert_eq!(config.ledger.origin, "file.example/log");
    assert_eq!(config.ledger.checkpoint_interval, Duration::from_millis(1001));
}

#[test]
fn env_overrides_file() {
    let config =
        load(Some(FILE_WITH_EVERY_KEY), &env_with_every_key(), &Flags::default()).expect("valid");
    assert_eq!(config.server.listen, addr("127.0.0.1:1002"));
    assert_eq!(config.server.public_url.as_deref(), Some("https://env.example/sta"));
    assert_eq!(config.server.max_body_bytes, 1002);
    assert_eq!(config.server.max_batch_requests, 1002);
    assert_eq!(config.storage.data_dir, PathBuf::from("/env/data"));
    let database = config.storage.database.as_ref().expect("a database");
    assert_eq!(database.store_setting(), "postgresql://env:env-password@env.example/stela");
    assert_eq!(database.to_string(), "postgresql://env@env.example/stela");
    assert_eq!(config.query.default_top, 12);
    assert_eq!(config.query.max_top, 1002);
    assert_eq!(config.query.timeout, Duration::from_millis(1002));
    assert_eq!(config.log.level, "debug");
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.mqtt.mode, MqttMode::Embedded(addr("127.0.0.1:2002")));
    let credentials = config.mqtt.credentials.expect("credentials");
    assert_eq!(
        (credentials.username.as_str(), credentials.password.as_str()),
        ("env-user", "env-password")
    );
    assert_eq!(config.ledger.origin, "env.example/log");
    assert_eq!(config.ledger.checkpoint_interval, Duration::from_millis(1002));
}

#[test]
fn flags_override_env_and_file() {
    let config = load(Some(FILE_WITH_EVERY_KEY), &env_with_every_key(), &flags_with_every_key())
        .expect("valid");
    assert_eq!(config.server.listen, addr("127.0.0.1:1003"));
    assert_eq!(config.server.public_url.as_deref(), Some("http://flag.example"));
    assert_eq!(config.server.max_body_bytes, 1003);
    assert_eq!(config.server.max_batch_requests, 1003);
    assert_eq!(config.storage.data_dir, PathBuf::from("/flag/data"));
    assert_eq!(config.storage.database, Some(Database::Sqlite(PathBuf::from("/flag/stela.db"))));
    assert_eq!(config.query.default_top, 13);
    assert_eq!(config.query.max_top, 1003);
    assert_eq!(config.query.timeout, Duration::from_millis(1003));
    // The log level has no flag: the environment still decides it.
    assert_eq!(config.log.level, "debug");
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.mqtt.mode, MqttMode::Embedded(addr("127.0.0.1:2003")));
    assert_eq!(config.ledger.origin, "flag.example/log");
    assert_eq!(config.ledger.checkpoint_interval, Duration::from_millis(1003));
}

#[test]
fn layers_override_single_keys_not_sections() {
    let file = "version = 1\n[query]\ndefault_top = 20\nmax_top = 50\n";
    let config =
        load(Some(file), &env(&[("STELA_MAX_TOP", "40")]), &Flags::default()).expect("valid");
    assert_eq!((config.query.default_top, config.query.max_top), (20, 40));
    assert_eq!(config.server, Config::default().server);
}

#[test]
fn empty_env_value_counts_as_unset() {
    let config =
        load(None, &env(&[("STELA_MAX_TOP", ""), ("STELA_PUBLIC_URL", "")]), &Flags::default())
            .expect("valid");
    assert_eq!(config, Config::default());
}

#[test]
fn env_vars_other_than_stela_ones_are_ignored() {
    let config = load(None, &env(&[("PORT", "x"), ("STELA_UNRELATED", "x")]), &Flags::default())
        .expect("valid");
    assert_eq!(config, Config::default());
}

#[test]
fn config_file_comes_from_flag_then_env() {
    let from_env = env(&[("STELA_CONFIG", "/env/stela.toml")]);
    let flag = Flags { config: Some(PathBuf::from("/flag/stela.toml")), ..Flags::default() };
    assert_eq!(config_file_path(&from_env, &flag), Some(PathBuf::from("/flag/stela.toml")));
    assert_eq!(
        config_file_path(&from_env, &Flags::default()),
        Some(PathBuf::from("/env/stela.toml"))
    );
    assert_eq!(config_file_path(&HashMap::new(), &Flags::default()), None);
    assert_eq!(config_file_path(&env(&[("STELA_CONFIG", "")]), &Flags::default()), None);
}

#[test]
fn unknown_top_level_key_is_rejected() {
    check_file_error("version = 1\nlisten = \"127.0.0.1:1\"\n", "unknown field `listen`");
}

#[test]
fn unknown_key_in_a_section_is_rejected() {
    check_file_error("version = 1\n[server]\nlisen = \"127.0.0.1:1\"\n", "unknown field `lisen`");
}

#[test]
fn unknown_section_is_rejected() {
    check_file_error("version = 1\n[mqt]\nlisten = \"127.0.0.1:1883\"\n", "unknown field `mqt`");
}

#[test]
fn ledger_keys_belong_in_their_own_section() {
    // `[log]` is diagnostics logging; the verifiable log's keys are not accepted there.
    check_file_error("version = 1\n[log]\norigin = \"a.example/log\"\n", "unknown field `origin`");
    check_file_error("version = 1\n[ledger]\ninterval_ms = 5\n", "unknown field `interval_ms`");
}

#[test]
fn wrong_type_in_file_is_rejected() {
    check_file_error("version = 1\n[query]\nmax_top = \"ten\"\n", "max_top");
    check_file_error("version = 1\n[query]\nmax_top = -1\n", "max_top");
    check_file_error("version = 1\n[server]\nmax_batch_requests = -1\n", "max_batch_requests");
    check_file_error("version = 1\n[log]\nformat = \"xml\"\n", "xml");
    check_file_error("version = 1\n[query]\ntimeout_ms = \"30s\"\n", "timeout_ms");
    check_file_error(
        "version = 1\n[ledger]\ncheckpoint_interval_ms = -1\n",
        "checkpoint_interval_ms",
    );
    check_file_error("version = 1\n[ledger]\norigin = 7\n", "origin");
}

#[test]
fn invalid_toml_is_rejected() {
    check_file_error("version = 1\n[server\n", "TOML parse error");
}

#[test]
fn missing_or_unsupported_version_is_rejected() {
    let no_env = HashMap::new();
    let no_flags = Flags::default();
    check_error(
        Some("[query]\nmax_top = 5\n"),
        &no_env,
        &no_flags,
        "version (config file): missing; start the file with `version = 1`",
    );
    check_error(
        Some("version = 2\n"),
        &no_env,
        &no_flags,
        "version (config file): unsupported configuration version 2 (this stela reads version = 1)",
    );
}

#[test]
fn bad_env_numbers_name_the_variable() {
    let no_flags = Flags::default();
    check_error(
        None,
        &env(&[("STELA_MAX_TOP", "x")]),
        &no_flags,
        "STELA_MAX_TOP: invalid number 'x'",
    );
    check_error(
        None,
        &env(&[("STELA_DEFAULT_TOP", "-1")]),
        &no_flags,
        "STELA_DEFAULT_TOP: invalid number '-1'",
    );
    check_error(
        None,
        &env(&[("STELA_MAX_BODY_BYTES", "16MiB")]),
        &no_flags,
        "STELA_MAX_BODY_BYTES: invalid number '16MiB'",
    );
    check_error(
        None,
        &env(&[("STELA_MAX_BATCH_REQUESTS", "10k")]),
        &no_flags,
        "STELA_MAX_BATCH_REQUESTS: invalid number '10k'",
    );
    check_error(
        None,
        &env(&[("STELA_MAX_TOP", "99999999999")]),
        &no_flags,
        "STELA_MAX_TOP: invalid number '99999999999'",
    );
    check_error(
        None,
        &env(&[("STELA_QUERY_TIMEOUT_MS", "30s")]),
        &no_flags,
        "STELA_QUERY_TIMEOUT_MS: invalid number '30s'",
    );
    check_error(
        None,
        &env(&[("STELA_CHECKPOINT_INTERVAL_MS", "-5")]),
        &no_flags,
        "STELA_CHECKPOINT_INTERVAL_MS: invalid number '-5'",
    );
}

#[test]
fn bad_log_settings_name_their_source() {
    check_error(
        None,
        &env(&[("STELA_LOG_FORMAT", "xml")]),
        &Flags::default(),
        "STELA_LOG_FORMAT: invalid log format 'xml' (expected text or json)",
    );
    let error = load(None, &env(&[("STELA_LOG", "info,stela=loud")]), &Flags::default())
        .expect_err("a bad level is rejected");
    assert!(
        error.to_string().starts_with("STELA_LOG: invalid log filter 'info,stela=loud'"),
        "{error}"
    );
}

#[test]
fn bad_listen_address_names_its_source() {
    let flags = Flags { listen: Some("localhost".to_owned()), ..Flags::default() };
    check_error(
        None,
        &HashMap::new(),
        &flags,
        "--listen: invalid address 'localhost' (expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)",
    );
    check_error(
        Some("version = 1\n[server]\nlisten = \"1.2.3.4\"\n"),
        &HashMap::new(),
        &Flags::default(),
        "server.listen (config file): invalid address '1.2.3.4' (expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)",
    );
}

#[test]
fn ipv6_listen_address_is_accepted() {
    let config =
        load(None, &env(&[("STELA_LISTEN", "[::1]:0")]), &Flags::default()).expect("valid");
    assert_eq!(config.server.listen, addr("[::1]:0"));
}

#[test]
fn max_top_must_be_at_least_one() {
    check_error(
        Some("version = 1\n[query]\nmax_top = 0\n"),
        &HashMap::new(),
        &Flags::default(),
        "query.max_top (config file): must be at least 1",
    );
    let flags = Flags { max_top: Some(0), ..Flags::default() };
    check_error(None, &HashMap::new(), &flags, "--max-top: must be at least 1");
}

#[test]
fn default_top_must_not_exceed_max_top() {
    check_error(
        None,
        &env(&[("STELA_MAX_TOP", "50")]),
        &Flags::default(),
        "query.default_top (default): default_top 100 is larger than max_top 50 (set by STELA_MAX_TOP)",
    );
    let flags = Flags { default_top: Some(20_000), ..Flags::default() };
    check_error(
        None,
        &HashMap::new(),
        &flags,
        "--default-top: default_top 20000 is larger than max_top 10000 (set by query.max_top (default))",
    );
    let flags = Flags { default_top: Some(50), max_top: Some(50), ..Flags::default() };
    let config = load(None, &HashMap::new(), &flags).expect("equal values are fine");
    assert_eq!((config.query.default_top, config.query.max_top), (50, 50));
}

#[test]
fn zero_sizes_are_rejected() {
    let flags = Flags { default_top: Some(0), ..Flags::default() };
    check_error(None, &HashMap::new(), &flags, "--default-top: must be at least 1");
    check_error(
        None,
        &env(&[("STELA_MAX_BODY_BYTES", "0")]),
        &Flags::default(),
        "STELA_MAX_BODY_BYTES: must be at least 1",
    );
    check_error(
        Some("version = 1\n[server]\nmax_batch_requests = 0\n"),
        &HashMap::new(),
        &Flags::default(),
        "server.max_batch_requests (config file): must be at least 1",
    );
    check_error(
        None,
        &env(&[("STELA_MAX_BATCH_REQUESTS", "0")]),
        &Flags::default(),
        "STELA_MAX_BATCH_REQUESTS: must be at least 1",
    );
    let flags = Flags { max_batch_requests: Some(0), ..Flags::default() };
    check_error(None, &HashMap::new(), &flags, "--max-batch-requests: must be at least 1");
    check_error(
        Some("version = 1\n[storage]\ndata_dir = \"\"\n"),
        &HashMap::new(),
        &Flags::default(),
        "storage.data_dir (config file): must not be empty",
    );
}

#[test]
fn public_url_is_checked_and_normalised() {
    let flags =
        Flags { public_url: Some("https://example.org/sta//".to_owned()), ..Flags::default() };
    let config = load(None, &HashMap::new(), &flags).expect("valid");
    assert_eq!(config.server.public_url.as_deref(), Some("https://example.org/sta"));

    for bad in [
        "example.org",
        "ftp://example.org",
        "http://",
        "http:///sta",
        "http://a b",
        "http://a/?x=1",
    ] {
        let flags = Flags { public_url: Some(bad.to_owned()), ..Flags::default() };
        let error = load(None, &HashMap::new(), &flags).expect_err(bad);
        assert!(
            error.to_string().starts_with(&format!("--public-url: invalid URL '{bad}'")),
            "{error}"
        );
    }
}

#[test]
fn mqtt_defaults_to_the_embedded_broker_on_1883() {
    let config = load(None, &HashMap::new(), &Flags::default()).expect("defaults are valid");
    assert_eq!(config.mqtt.mode, MqttMode::Embedded(addr("127.0.0.1:1883")));
    assert_eq!(config.mqtt.credentials, None);
}

#[test]
fn mqtt_can_be_switched_off_or_pointed_at_an_external_broker() {
    let off = Flags { mqtt_listen: Some("off".to_owned()), ..Flags::default() };
    assert_eq!(load(None, &HashMap::new(), &off).expect("valid").mqtt.mode, MqttMode::Off);
    let from_env = env(&[("STELA_MQTT_LISTEN", "OFF")]);
    assert_eq!(load(None, &from_env, &Flags::default()).expect("valid").mqtt.mode, MqttMode::Off);

    let external = env(&[("STELA_MQTT_BROKER", "mqtt://127.0.0.1:1883")]);
    let config = load(None, &external, &Flags::default()).expect("valid");
    assert_eq!(config.mqtt.mode, MqttMode::External("mqtt://127.0.0.1:1883".to_owned()));
    // The flag `--mqtt-broker off` goes back to the embedded broker of the file or env.
    let back = Flags { mqtt_broker: Some("off".to_owned()), ..Flags::default() };
    let file =
        "version = 1\n[mqtt]\nbroker = \"mqtt://broker.example:1884\"\nlisten = \"127.0.0.1:0\"\n";
    assert_eq!(
        load(Some(file), &HashMap::new(), &back).expect("valid").mqtt.mode,
        MqttMode::Embedded(addr("127.0.0.1:0"))
    );
}

#[test]
fn bad_mqtt_settings_name_their_source() {
    let flags = Flags { mqtt_listen: Some("localhost".to_owned()), ..Flags::default() };
    check_error(
        None,
        &HashMap::new(),
        &flags,
        "--mqtt-listen: invalid address 'localhost' (expected IP:PORT, e.g. 127.0.0.1:1883, or off)",
    );
    check_error(
        None,
        &env(&[("STELA_MQTT_BROKER", "http://broker:1883")]),
        &Flags::default(),
        "STELA_MQTT_BROKER: invalid broker URL 'http://broker:1883' (expected mqtt://host:port, e.g. mqtt://127.0.0.1:1883)",
    );
    check_error(
        None,
        &env(&[("STELA_MQTT_USERNAME", "device")]),
        &Flags::default(),
        "STELA_MQTT_USERNAME: set the password too (mqtt.password or STELA_MQTT_PASSWORD), or neither",
    );
    check_error(
        Some("version = 1\n[mqtt]\npassword = \"x\"\n"),
        &HashMap::new(),
        &Flags::default(),
        "mqtt.password (config file): set the username too (mqtt.username or STELA_MQTT_USERNAME), or neither",
    );
}

#[test]
fn mqtt_passwords_are_not_printed() {
    let config = load(
        None,
        &env(&[("STELA_MQTT_USERNAME", "device"), ("STELA_MQTT_PASSWORD", "s3cret")]),
        &Flags::default(),
    )
    .expect("valid");
    assert!(!format!("{config:?}").contains("s3cret"));
}

#[test]
fn query_timeout_comes_from_each_layer_and_the_highest_wins() {
    let file = "version = 1\n[query]\ntimeout_ms = 5000\n";
    let from_file = load(Some(file), &HashMap::new(), &Flags::default()).expect("valid");
    assert_eq!(from_file.query.timeout, Duration::from_millis(5000));
    let from_env = env(&[("STELA_QUERY_TIMEOUT_MS", "250")]);
    let config = load(Some(file), &from_env, &Flags::default()).expect("valid");
    assert_eq!(config.query.timeout, Duration::from_millis(250));
    let flags = Flags { query_timeout_ms: Some(1), ..Flags::default() };
    let config = load(Some(file), &from_env, &flags).expect("1 ms is the smallest timeout");
    assert_eq!(config.query.timeout, Duration::from_millis(1));
}

#[test]
fn query_timeout_must_be_at_least_one() {
    check_error(
        Some("version = 1\n[query]\ntimeout_ms = 0\n"),
        &HashMap::new(),
        &Flags::default(),
        "query.timeout_ms (config file): must be at least 1",
    );
    check_error(
        None,
        &env(&[("STELA_QUERY_TIMEOUT_MS", "0")]),
        &Flags::default(),
        "STELA_QUERY_TIMEOUT_MS: must be at least 1",
    );
    let flags = Flags { query_timeout_ms: Some(0), ..Flags::default() };
    check_error(None, &HashMap::new(), &flags, "--query-timeout-ms: must be at least 1");
}

#[test]
fn ledger_settings_come_from_each_layer_and_the_highest_wins() {
    let file =
        "version = 1\n[ledger]\norigin = \"file.example/log\"\ncheckpoint_interval_ms = 5000\n";
    let config = load(Some(file), &HashMap::new(), &Flags::default()).expect("valid");
    assert_eq!(config.ledger.origin, "file.example/log");
    assert_eq!(config.ledger.checkpoint_interval, Duration::from_millis(5000));
    // Single keys: the environment changes the origin, the file still sets the interval.
    let from_env = env(&[("STELA_LEDGER_ORIGIN", "env.example/log")]);
    let config = load(Some(file), &from_env, &Flags::default()).expect("valid");
    assert_eq!(config.ledger.origin, "env.example/log");
    assert_eq!(config.ledger.checkpoint_interval, Duration::from_millis(5000));
    let from_env = env(&[
        ("STELA_LEDGER_ORIGIN", "env.example/log"),
        ("STELA_CHECKPOINT_INTERVAL_MS", "2000"),
    ]);
    let flags = Flags {
        ledger_origin: Some("flag.example/log".to_owned()),
        checkpoint_interval_ms: Some(10),
        ..Flags::default()
    };
    let config = load(Some(file), &from_env, &flags).expect("10 ms is the smallest interval");
    assert_eq!(config.ledger.origin, "flag.example/log");
    assert_eq!(config.ledger.checkpoint_interval, Duration::from_millis(10));
    // The `[ledger]` section leaves `[log]` (diagnostics) alone, and the other way round.
    assert_eq!(config.log, Config::default().log);
}

#[test]
fn ledger_origin_must_be_a_key_name() {
    check_error(
        Some("version = 1\n[ledger]\norigin = \"\"\n"),
        &HashMap::new(),
        &Flags::default(),
        "ledger.origin (config file): must not be empty",
    );
    check_error(
        None,
        &env(&[("STELA_LEDGER_ORIGIN", "example.org/my log")]),
        &Flags::default(),
        "STELA_LEDGER_ORIGIN: invalid log origin 'example.org/my log' (expected a schema-less URL \
         without whitespace or '+', e.g. example.org/log; it is also the signing key's name)",
    );
    let flags = Flags { ledger_origin: Some("example.org+log".to_owned()), ..Flags::default() };
    check_error(
        None,
        &HashMap::new(),
        &flags,
        "--ledger-origin: invalid log origin 'example.org+log' (expected a schema-less URL \
         without whitespace or '+', e.g. example.org/log; it is also the signing key's name)",
    );
    for bad in ["a\tb", "a\nb", "a\u{7f}b", "a\u{a0}b", " example.org/log"] {
        let flags = Flags { ledger_origin: Some(bad.to_owned()), ..Flags::default() };
        let error = load(None, &HashMap::new(), &flags).expect_err(bad);
        assert!(error.to_string().starts_with("--ledger-origin: invalid log origin '"), "{error}");
    }
    // An empty variable counts as unset, so only the file and the flag can try an empty origin.
    let flags = Flags { ledger_origin: Some(String::new()), ..Flags::default() };
    check_error(None, &HashMap::new(), &flags, "--ledger-origin: must not be empty");
}

#[test]
fn checkpoint_interval_must_be_at_least_ten_ms() {
    check_error(
        Some("version = 1\n[ledger]\ncheckpoint_interval_ms = 9\n"),
        &HashMap::new(),
        &Flags::default(),
        "ledger.checkpoint_interval_ms (config file): must be at least 10",
    );
    check_error(
        None,
        &env(&[("STELA_CHECKPOINT_INTERVAL_MS", "0")]),
        &Flags::default(),
        "STELA_CHECKPOINT_INTERVAL_MS: must be at least 10",
    );
    let flags = Flags { checkpoint_interval_ms: Some(1), ..Flags::default() };
    check_error(None, &HashMap::new(), &flags, "--checkpoint-interval-ms: must be at least 10");
}

/// Loads with `--database value` and returns the database it names.
fn database_from_flag(value: &str) -> Option<Database> {
    let flags = Flags { database: Some(value.to_owned()), ..Flags::default() };
    load(None, &HashMap::new(), &flags)
        .unwrap_or_else(|error| panic!("{value}: {error}"))
        .storage
        .database
}

#[test]
fn database_is_a_postgres_url_or_an_sqlite_file() {
    for url in [
        "postgres://stela@db.example:5432/stela",
        "postgresql://stela@db.example/stela?sslmode=disable",
        "postgres://stela@[::1]:5433/stela",
    ] {
        let database = database_from_flag(url).expect("a database");
        assert!(matches!(database, Database::Postgres { .. }), "{url}: {database:?}");
        assert_eq!(database.store_setting(), url);
    }
    // The store tells the backends apart by the lowercase scheme.
    let database = database_from_flag("POSTGRES://stela@db.example/stela").expect("a database");
    assert_eq!(database.store_setting(), "postgres://stela@db.example/stela");

    let sqlite = |path: &str| Some(Database::Sqlite(PathBuf::from(path)));
    assert_eq!(
        database_from_flag("sqlite:///var/lib/stela/stela.db"),
        sqlite("/var/lib/stela/stela.db")
    );
    assert_eq!(database_from_flag("sqlite://./stela.db"), sqlite("./stela.db"));
    assert_eq!(database_from_flag("./other.db"), sqlite("./other.db"));
    assert_eq!(database_from_flag("/srv/stela.db"), sqlite("/srv/stela.db"));
    // A `://` that does not follow a scheme is part of a file name.
    assert_eq!(database_from_flag("./odd://name.db"), sqlite("./odd://name.db"));
    assert_eq!(
        database_from_flag("./other.db").expect("a database").store_setting(),
        "sqlite://./other.db"
    );
}

#[test]
fn database_comes_from_each_layer_and_the_highest_wins() {
    let file = "version = 1\n[storage]\ndatabase = \"/file/stela.db\"\n";
    let config = load(Some(file), &HashMap::new(), &Flags::default()).expect("valid");
    assert_eq!(config.storage.database, Some(Database::Sqlite(PathBuf::from("/file/stela.db"))));
    // Single keys: the file's database stays when only the data directory changes.
    let from_env = env(&[("STELA_DATA_DIR", "/env/data")]);
    let config = load(Some(file), &from_env, &Flags::default()).expect("valid");
    assert_eq!(config.storage.database, Some(Database::Sqlite(PathBuf::from("/file/stela.db"))));
    let from_env = env(&[("STELA_DATABASE", "postgres://env@env.example/stela")]);
    let config = load(Some(file), &from_env, &Flags::default()).expect("valid");
    assert_eq!(
        config.storage.database.expect("a database").to_string(),
        "postgres://env@env.example/stela"
    );
    let flags = Flags { database: Some("/flag/stela.db".to_owned()), ..Flags::default() };
    let config = load(Some(file), &from_env, &flags).expect("valid");
    assert_eq!(config.storage.database, Some(Database::Sqlite(PathBuf::from("/flag/stela.db"))));
    // An empty variable counts as unset: the file's value stays.
    let config =
        load(Some(file), &env(&[("STELA_DATABASE", "")]), &Flags::default()).expect("valid");
    assert_eq!(config.storage.database, Some(Database::Sqlite(PathBuf::from("/file/stela.db"))));
}

#[test]
fn bad_database_names_its_source() {
    check_error(
        Some("version = 1\n[storage]\ndatabase = \"\"\n"),
        &HashMap::new(),
        &Flags::default(),
        "storage.database (config file): must not be empty",
    );
    let flags = Flags { database: Some(" ".to_owned()), ..Flags::default() };
    check_error(None, &HashMap::new(), &flags, "--database: must not be empty");
    check_error(
        None,
        &env(&[("STELA_DATABASE", "mysql://root@db.example/stela")]),
        &Flags::default(),
        "STELA_DATABASE: unsupported database 'mysql://root@db.example/stela' (expected \
         postgres://USER@HOST:PORT/DB, postgresql://..., sqlite://PATH or a file path)",
    );
    let flags = Flags { database: Some("sqlite://".to_owned()), ..Flags::default() };
    check_error(
        None,
        &HashMap::new(),
        &flags,
        "--database: 'sqlite://' names no file (expected sqlite://PATH, e.g. sqlite://./stela.db)",
    );
    check_error(
        Some("version = 1\n[storage]\ndatabase = \"postgres:///stela\"\n"),
        &HashMap::new(),
        &Flags::default(),
        "storage.database (config file): 'postgres:///stela' names no host (expected \
         postgres://USER@HOST:PORT/DB, postgresql://..., sqlite://PATH or a file path)",
    );
    let error = load(
        None,
        &env(&[("STELA_DATABASE", "postgres://stela:s3cret@db.example:port/stela")]),
        &Flags::default(),
    )
    .expect_err("a port must be a number");
    let message = error.to_string();
    assert!(
        message.starts_with(
            "STELA_DATABASE: invalid PostgreSQL URL 'postgres://stela@db.example:port/stela': "
        ),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
}

#[test]
fn database_passwords_are_not_printed() {
    for (url, shown) in [
        ("postgres://stela:s3cret@db.example:5432/stela", "postgres://stela@db.example:5432/stela"),
        // A password with an unencoded `@`, and one in the query.
        ("postgres://stela:s3@cret@db.example/stela", "postgres://stela@db.example/stela"),
        ("postgres://stela@db.example/stela?password=s3cret", "postgres://stela@db.example/stela"),
    ] {
        let config = load(None, &env(&[("STELA_DATABASE", url)]), &Flags::default())
            .unwrap_or_else(|error| panic!("{url}: {error}"));
        let database = config.storage.database.as_ref().expect("a database");
        assert_eq!(database.to_string(), shown);
        assert_eq!(database.store_setting(), url);
        assert!(!format!("{config:?}").contains("s3cret"), "{config:?}");
    }
    let error =
        load(None, &env(&[("STELA_DATABASE", "mysql://root:s3cret@db/x")]), &Flags::default())
            .expect_err("not a supported scheme");
    assert!(!error.to_string().contains("s3cret"), "{error}");
}
