//! Process lifecycle: clean exit on signals, clear failures on a taken port, bad settings or an
//! unreachable database, settings from the environment reaching the running server, the
//! database setting (PostgreSQL only when `STELA_TEST_PG_URL` is set).

use std::net::TcpListener;

use serde_json::json;
use stela_store::test_database::TestDatabase;

use crate::support::{Server, created_key, http_client, run_to_exit, serve_command, stela_command};

#[test]
fn exits_zero_on_sigterm() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(data_dir.path());
    server.signal("TERM");
    let status = server.wait_for_exit();
    assert!(status.success(), "exit {status} after SIGTERM; stderr:\n{}", server.stderr());
}

#[test]
fn exits_zero_on_sigint() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(data_dir.path());
    server.signal("INT");
    let status = server.wait_for_exit();
    assert!(status.success(), "exit {status} after SIGINT; stderr:\n{}", server.stderr());
}

#[test]
fn creates_a_missing_data_dir() {
    let parent = tempfile::tempdir().expect("temp dir");
    let data_dir = parent.path().join("a").join("b");
    let mut server = Server::start(&data_dir);
    assert!(data_dir.is_dir(), "{} was not created", data_dir.display());
    server.signal("TERM");
    assert!(server.wait_for_exit().success());
}

#[test]
fn taken_port_fails_naming_the_listen_flag() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to hold");
    let addr = taken.local_addr().expect("local addr").to_string();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut command = stela_command();
    command.arg("serve").arg("--listen").arg(&addr).arg("--data-dir").arg(data_dir.path());

    let finished = run_to_exit(command);

    assert!(!finished.status.success(), "stela started on a taken port: {}", finished.stderr);
    assert!(finished.stderr.contains(&addr), "address not named:\n{}", finished.stderr);
    assert!(finished.stderr.contains("--listen"), "--listen not named:\n{}", finished.stderr);
    assert!(
        !finished.stdout.contains("stela listening on"),
        "announced anyway: {}",
        finished.stdout
    );
    drop(taken);
}

#[test]
fn invalid_setting_fails_naming_its_source() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut command = serve_command(data_dir.path(), &[]);
    command.env("STELA_MAX_TOP", "x");

    let finished = run_to_exit(command);

    assert!(!finished.status.success());
    assert!(
        finished.stderr.contains("STELA_MAX_TOP: invalid number 'x'"),
        "unexpected message:\n{}",
        finished.stderr
    );
}

#[test]
fn named_config_file_is_read() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config_path = data_dir.path().join("bad.toml");
    std::fs::write(&config_path, "version = 1\n[query]\nmax_top = 0\n").expect("write config");
    let mut command = serve_command(data_dir.path(), &[]);
    command.env("STELA_CONFIG", &config_path);

    let finished = run_to_exit(command);

    assert!(!finished.status.success());
    assert!(
        finished.stderr.contains("query.max_top (config file): must be at least 1"),
        "unexpected message:\n{}",
        finished.stderr
    );
}

#[tokio::test]
async fn batch_request_limit_from_the_environment_is_enforced() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut command = serve_command(data_dir.path(), &[]);
    command.env("STELA_MAX_BATCH_REQUESTS", "2");
    let server = Server::start_with(command);
    let client = http_client();
    let batch_of = |count: usize| {
        let requests: Vec<_> = (0..count)
            .map(|i| json!({"id": i.to_string(), "method": "get", "url": "Things"}))
            .collect();
        json!({ "requests": requests })
    };

    let response = client
        .post(server.url("/v1.1/$batch"))
        .json(&batch_of(3))
        .send()
        .await
        .expect("POST $batch of 3");
    assert_eq!(response.status().as_u16(), 413, "batch of 3: {response:?}");
    let body = response.text().await.expect("error body");
    assert!(body.contains("the batch has 3 requests; at most 2"), "unexpected body: {body}");

    let response = client
        .post(server.url("/v1.1/$batch"))
        .json(&batch_of(2))
        .send()
        .await
        .expect("POST $batch of 2");
    assert_eq!(response.status().as_u16(), 200, "batch of 2: {response:?}");
}

#[test]
fn unreachable_postgres_fails_naming_the_database_but_not_the_password() {
    // A port nobody listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut command = serve_command(data_dir.path(), &[]);
    command.env("STELA_DATABASE", format!("postgres://stela:s3cret@127.0.0.1:{port}/stela_db"));

    let finished = run_to_exit(command);

    assert!(!finished.status.success(), "stela started without its database: {}", finished.stderr);
    let target = format!("127.0.0.1:{port}/stela_db");
    assert!(finished.stderr.contains(&target), "{target} not named:\n{}", finished.stderr);
    assert!(!finished.stderr.contains("s3cret"), "password printed:\n{}", finished.stderr);
    assert!(
        !finished.stdout.contains("stela listening on"),
        "announced anyway: {}",
        finished.stdout
    );
}

#[tokio::test]
async fn sqlite_database_setting_names_the_file() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = data_dir.path().join("elsewhere.db");
    let setting = format!("sqlite://{}", database.display());
    let mut server = Server::start_with(serve_command(data_dir.path(), &["--database", &setting]));

    post_and_get_a_thing(&server).await;

    assert!(database.is_file(), "{} was not created", database.display());
    assert!(!data_dir.path().join("stela.db").exists(), "the default database was used");
    server.signal("TERM");
    assert!(server.wait_for_exit().success());
}

#[tokio::test]
async fn serves_on_postgres_when_the_database_setting_names_it() {
    let Some(pg_server) = TestDatabase::server() else { return };
    let database = TestDatabase::create(&pg_server).expect("create a test database");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut server =
        Server::start_with(serve_command(data_dir.path(), &["--database", database.url()]));

    post_and_get_a_thing(&server).await;

    assert!(!data_dir.path().join("stela.db").exists(), "SQLite was used, not PostgreSQL");
    // The start-up log line, written before the listening line, names the database.
    let stderr = server.stderr();
    let names_the_database =
        |line: &str| line.contains("listening") && line.contains("database=postgres://");
    let line = stderr.lines().find(|line| names_the_database(line));
    assert!(line.is_some_and(|line| line.contains(database.name())), "stderr:\n{stderr}");
    // A clean stop closes the PostgreSQL connections too.
    server.signal("TERM");
    let status = server.wait_for_exit();
    assert!(status.success(), "exit {status} after SIGTERM; stderr:\n{}", server.stderr());
}

/// Creates a Thing and reads it back, by its key and in the collection.
async fn post_and_get_a_thing(server: &Server) {
    let client = http_client();
    let response = client
        .post(server.url("/v1.1/Things"))
        .json(&json!({"name": "weather station", "description": "on the roof"}))
        .send()
        .await
        .expect("POST a Thing");
    assert_eq!(response.status().as_u16(), 201, "POST: {response:?}");
    let key = created_key(&response);

    let thing: serde_json::Value = client
        .get(server.url(&format!("/v1.1/Things({key})")))
        .send()
        .await
        .expect("GET the Thing")
        .json()
        .await
        .expect("a Thing as JSON");
    assert_eq!(thing["name"], "weather station");
    let things: serde_json::Value = client
        .get(server.url("/v1.1/Things"))
        .send()
        .await
        .expect("GET Things")
        .json()
        .await
        .expect("Things as JSON");
    assert_eq!(things["value"].as_array().map(Vec::len), Some(1), "{things}");
}
