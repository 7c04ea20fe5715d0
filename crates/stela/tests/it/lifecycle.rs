//! Process lifecycle: clean exit on signals, clear failures on a taken port or bad settings,
//! settings from the environment reaching the running server.

use std::net::TcpListener;

use serde_json::json;

use crate::support::{Server, http_client, run_to_exit, serve_command, stela_command};

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
