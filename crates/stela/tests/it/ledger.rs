//! `stela log key`, `stela verify` and `stela audit` against a running server's log.

use serde_json::json;

use stela_store::test_database::TestDatabase;

use crate::support::{Server, http_client, run_to_exit, serve_command, stela_command};

async fn post(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let response = client.post(server.url(path)).json(&body).send().await.expect("POST");
    assert_eq!(response.status(), 201, "POST {path}");
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn receipts_and_the_log_verify_with_the_cli_and_tampering_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = http_client();
    let thing =
        post(&client, &server, "/v1.1/Things", json!({"name": "t", "description": "d"})).await;
    let id = thing["@iot.id"].as_i64().unwrap();

    // The key printed by `stela log key` is the one the server serves.
    let printed = run_to_exit({
        let mut c = stela_command();
        c.args(["log", "key", "--data-dir"]).arg(dir.path());
        c
    });
    assert!(printed.status.success(), "{}", printed.stderr);
    let key = printed.stdout.trim().to_owned();
    let served = client.get(server.url("/log/key")).send().await.unwrap().text().await.unwrap();
    assert_eq!(served.trim(), key);

    // A receipt verifies offline; a tampered one does not.
    let receipt = client
        .get(server.url(&format!("/v1.1/Things({id})/$receipt")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let receipt_path = dir.path().join("receipt.json");
    std::fs::write(&receipt_path, &receipt).unwrap();
    let verified = run_to_exit({
        let mut c = stela_command();
        c.arg("verify").arg(&receipt_path).args(["--key", &key]);
        c
    });
    assert!(verified.status.success(), "{}{}", verified.stdout, verified.stderr);
    assert!(verified.stdout.contains("receipt verified"), "{}", verified.stdout);
    std::fs::write(
        &receipt_path,
        receipt.replace("\\\"name\\\":\\\"t\\\"", "\\\"name\\\":\\\"x\\\""),
    )
    .unwrap();
    let forged = run_to_exit({
        let mut c = stela_command();
        c.arg("verify").arg(&receipt_path).args(["--key", &key]);
        c
    });
    assert!(!forged.status.success(), "a forged receipt must fail: {}", forged.stdout);

    // The log grows consistently with a checkpoint saved earlier; its tiles give its root.
    let saved = dir.path().join("checkpoint");
    std::fs::write(
        &saved,
        client.get(server.url("/log/checkpoint")).send().await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    for i in 0..5 {
        post(
            &client,
            &server,
            "/v1.1/Things",
            json!({"name": format!("t{i}"), "description": "d"}),
        )
        .await;
    }
    let online = run_to_exit({
        let mut c = stela_command();
        c.args(["verify", "--log", &server.base_url, "--key", &key, "--since"]).arg(&saved);
        c
    });
    assert!(online.status.success(), "{}{}", online.stdout, online.stderr);
    assert!(online.stdout.contains("consistent with the saved checkpoint"), "{}", online.stdout);
    assert!(online.stdout.contains("matches the checkpoint"), "{}", online.stdout);

    // An independent check with Python's hashlib recomputes the same root from the tiles.
    let python = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/log/verify_tiles.py"))
        .arg(&server.base_url)
        .output()
        .expect("run python3");
    assert!(
        python.status.success(),
        "{}{}",
        String::from_utf8_lossy(&python.stdout),
        String::from_utf8_lossy(&python.stderr)
    );

    // The audit passes, then finds an entity changed behind the log's back.
    let audit = || {
        let mut c = stela_command();
        c.args(["audit", "--data-dir"]).arg(dir.path());
        run_to_exit(c)
    };
    let clean = audit();
    assert!(clean.status.success(), "{}{}", clean.stdout, clean.stderr);
    assert!(clean.stdout.contains("no problems found"), "{}", clean.stdout);
    let db = rusqlite::Connection::open(dir.path().join("stela.db")).unwrap();
    db.execute("UPDATE things SET name = 'rewritten' WHERE id = ?1", [id]).unwrap();
    drop(db);
    let tampered = audit();
    assert!(!tampered.status.success(), "{}", tampered.stdout);
    assert!(
        tampered.stdout.contains(&format!("Thing({id}) differs from its newest log entry")),
        "{}",
        tampered.stdout
    );
    assert_eq!(
        tampered.stdout.matches("PROBLEM").count(),
        1,
        "only the tampered entity: {}",
        tampered.stdout
    );

    // A row deleted behind the server's back is found; the log itself cannot be edited.
    let db = rusqlite::Connection::open(dir.path().join("stela.db")).unwrap();
    let other: i64 = db.query_row("SELECT MAX(id) FROM things", [], |r| r.get(0)).unwrap();
    db.execute("DELETE FROM things WHERE id = ?1", [other]).unwrap();
    let refused = db.execute("UPDATE log_bundles SET entries_lz4 = x'00' WHERE first = 0", []);
    assert!(refused.unwrap_err().to_string().contains("append-only"));
    for table in ["log_bundles", "log_creates"] {
        assert!(db.execute(&format!("DELETE FROM {table}"), []).is_err(), "{table}");
    }
    drop(db);
    let report = audit();
    assert!(
        report.stdout.contains(&format!("Thing({other}) is in the log but missing from the store")),
        "{}",
        report.stdout
    );
}

#[tokio::test]
async fn the_audit_checks_a_postgres_store_and_finds_tampering() {
    let Some(pg_server) = TestDatabase::server() else { return };
    let database = TestDatabase::create(&pg_server).expect("test database");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(serve_command(dir.path(), &["--database", database.url()]));
    let client = http_client();
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let thing =
            post(&client, &server, "/v1.1/Things", json!({"name": name, "description": "d"})).await;
        ids.push(thing["@iot.id"].as_i64().unwrap());
    }
    server.signal("TERM");
    assert!(server.wait_for_exit().success());
    let audit = || {
        let mut c = stela_command();
        c.args(["audit", "--data-dir"]).arg(dir.path()).args(["--database", database.url()]);
        run_to_exit(c)
    };
    let clean = audit();
    assert!(clean.status.success(), "{}{}", clean.stdout, clean.stderr);
    assert!(clean.stdout.contains("no problems found"), "{}", clean.stdout);

    // The synchronous client blocks: off the test's runtime.
    let (url, first) = (database.url().to_owned(), ids[0]);
    let refused = tokio::task::spawn_blocking(move || {
        let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        db.execute("UPDATE things SET name = 'rewritten' WHERE id = $1", &[&first]).unwrap();
        // The log refuses to be edited on PostgreSQL too.
        format!("{:?}", db.batch_execute("DELETE FROM log_nodes").unwrap_err())
    })
    .await
    .unwrap();
    assert!(refused.contains("append-only"), "{refused}");
    let tampered = audit();
    assert!(!tampered.status.success(), "{}", tampered.stdout);
    let expected = format!("Thing({}) differs from its newest log entry", ids[0]);
    assert!(tampered.stdout.contains(&expected), "{}", tampered.stdout);
    assert_eq!(tampered.stdout.matches("PROBLEM").count(), 1, "{}", tampered.stdout);
}

#[tokio::test]
async fn after_kill_9_the_log_and_the_data_agree_and_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = http_client();
    let thing = post(&client, &server, "/v1.1/Things", json!({"name": "t", "description": "d",
        "Locations": [{"name": "l", "description": "d", "encodingType": "application/geo+json", "location": {"type": "Point", "coordinates": [1, 2]}}],
        "Datastreams": [{"name": "ds", "description": "d", "observationType": "x", "unitOfMeasurement": {},
            "Sensor": {"name": "s", "description": "d", "encodingType": "x", "metadata": "x"},
            "ObservedProperty": {"name": "op", "definition": "x", "description": "d"}}]})).await;
    let thing_id = thing["@iot.id"].as_i64().unwrap();
    let datastreams: serde_json::Value = client
        .get(server.url(&format!("/v1.1/Things({thing_id})/Datastreams")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let datastream = datastreams["value"][0]["@iot.id"].as_i64().unwrap();
    let key = client
        .get(server.url("/log/key"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .trim()
        .to_owned();
    let before =
        client.get(server.url("/log/checkpoint")).send().await.unwrap().text().await.unwrap();
    // Writers in flight when the process dies.
    let mut writers = Vec::new();
    for w in 0..4 {
        let client = client.clone();
        let url = server.url(&format!("/v1.1/Datastreams({datastream})/Observations"));
        writers.push(tokio::spawn(async move {
            for i in 0..10_000 {
                if client.post(&url).json(&json!({"result": w * 100_000 + i})).send().await.is_err()
                {
                    break;
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    server.kill_hard();
    for writer in writers {
        let _ = writer.await;
    }
    let saved = dir.path().join("before");
    std::fs::write(&saved, before).unwrap();
    let server = Server::start(dir.path());
    let audit = run_to_exit({
        let mut c = stela_command();
        c.args(["audit", "--data-dir"]).arg(dir.path());
        c
    });
    assert!(audit.status.success(), "{}{}", audit.stdout, audit.stderr);
    let online = run_to_exit({
        let mut c = stela_command();
        c.args(["verify", "--log", &server.base_url, "--key", &key, "--since"]).arg(&saved);
        c
    });
    assert!(online.status.success(), "{}{}", online.stdout, online.stderr);
}

async fn get_text(client: &reqwest::Client, server: &Server, path: &str) -> String {
    let response = client.get(server.url(path)).send().await.expect("GET");
    assert_eq!(response.status(), 200, "GET {path}");
    response.text().await.expect("text")
}

#[tokio::test]
async fn ledger_origin_names_the_key_and_the_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(serve_command(
        dir.path(),
        &[
            "--ledger-origin",
            "example.org/mylog",
            "--checkpoint-interval-ms",
            "50",
            "--query-timeout-ms",
            "5000",
        ],
    ));
    let client = http_client();
    post(&client, &server, "/v1.1/Things", json!({"name": "t", "description": "d"})).await;

    let key = get_text(&client, &server, "/log/key").await;
    assert!(key.starts_with("example.org/mylog+"), "key: {key}");
    let checkpoint = get_text(&client, &server, "/log/checkpoint").await;
    assert_eq!(checkpoint.lines().next(), Some("example.org/mylog"), "checkpoint: {checkpoint}");

    // The key file in the data directory carries the origin as its name.
    let printed = run_to_exit({
        let mut c = stela_command();
        c.args(["log", "key", "--data-dir"]).arg(dir.path());
        c
    });
    assert!(printed.status.success(), "{}", printed.stderr);
    assert_eq!(printed.stdout.trim(), key.trim());

    // `stela audit` checks the log under the key's own origin, not the default one.
    drop(server);
    let audit = run_to_exit({
        let mut c = stela_command();
        c.args(["audit", "--data-dir"]).arg(dir.path());
        c
    });
    assert!(audit.status.success(), "{}{}", audit.stdout, audit.stderr);
    assert!(audit.stdout.contains("no problems found"), "{}", audit.stdout);
}

#[tokio::test]
async fn a_data_dir_refuses_an_origin_other_than_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("log-signer.key");
    let mut server =
        Server::start_with(serve_command(dir.path(), &["--ledger-origin", "example.org/mylog"]));
    let client = http_client();
    let key = get_text(&client, &server, "/log/key").await;
    server.signal("TERM");
    assert!(server.wait_for_exit().success(), "{}", server.stderr());
    assert!(key_file.is_file(), "no key file at {}", key_file.display());

    // Started again with the default origin: refused, naming both origins and the key file.
    let refused = run_to_exit(serve_command(dir.path(), &[]));
    assert!(!refused.status.success(), "started with another origin: {}", refused.stdout);
    assert!(!refused.stdout.contains("stela listening on"), "announced anyway: {}", refused.stdout);
    let expected = format!(
        "the log key in {} belongs to origin 'example.org/mylog', not 'stela.localhost/log'; \
         keep the origin or move the key away",
        key_file.display()
    );
    assert!(refused.stderr.contains(&expected), "unexpected message:\n{}", refused.stderr);

    // With its own origin (here from the environment) the data directory serves its key again.
    let mut command = serve_command(dir.path(), &[]);
    command.env("STELA_LEDGER_ORIGIN", "example.org/mylog");
    let server = Server::start_with(command);
    assert_eq!(get_text(&client, &server, "/log/key").await, key);
}
