//! `stela log key`, `stela verify` and `stela audit` against a running server's log.

use serde_json::json;

use crate::support::{Server, http_client, run_to_exit, stela_command};

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
    let refused = db.execute("UPDATE log_entries SET entry = 'x' WHERE idx = 0", []);
    assert!(refused.unwrap_err().to_string().contains("append-only"));
    assert!(db.execute("DELETE FROM log_entries", []).is_err());
    drop(db);
    let report = audit();
    assert!(
        report.stdout.contains(&format!("Thing({other}) is in the log but missing from the store")),
        "{}",
        report.stdout
    );
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
