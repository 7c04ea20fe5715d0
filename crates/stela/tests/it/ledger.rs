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
}
