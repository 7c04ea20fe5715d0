//! `stela migrate`: a store written by `stela serve` on SQLite, copied to PostgreSQL
//! (`STELA_TEST_PG_URL`), is served from there with the same entities, ids and log; a second
//! copy is refused; bad arguments are refused before anything is touched.

use serde_json::{Value as Json, json};
use stela_store::test_database::{TestDatabase, thing_with_datastream};

use crate::support::{Server, http_client, run_to_exit, serve_command, stela_command};

#[tokio::test]
async fn a_store_served_on_sqlite_is_served_the_same_after_the_migration() {
    let Some(pg_server) = TestDatabase::server() else { return };
    let database = TestDatabase::create(&pg_server).expect("test database");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let client = http_client();

    let server = Server::start(data_dir.path());
    let thing = thing_with_datastream(json!([8, 50]));
    let posted = client.post(server.url("/v1.1/Things")).json(&thing).send().await.unwrap();
    assert_eq!(posted.status().as_u16(), 201);
    for result in [json!("a \"string\""), json!(true), json!(1.5), json!({"k": [1]})] {
        let body = json!({"result": result, "Datastream": {"@iot.id": 1}});
        let posted =
            client.post(server.url("/v1.1/Observations")).json(&body).send().await.unwrap();
        assert_eq!(posted.status().as_u16(), 201);
    }
    // The body with the server's address taken out (each server has a port of its own).
    let read = |server: &Server, path: &str| {
        let request = client.get(server.url(path));
        let base = server.base_url.clone();
        async move { request.send().await.unwrap().text().await.unwrap().replace(&base, "") }
    };
    let observations = read(&server, "/v1.1/Observations?$expand=FeatureOfInterest").await;
    let receipt = read(&server, "/v1.1/Observations(2)/$receipt").await;
    drop(server);

    let sqlite = format!("sqlite://{}", data_dir.path().join("stela.db").display());
    let migrate = || {
        let mut command = stela_command();
        command.args(["migrate", "--from", &sqlite, "--to", database.url()]);
        run_to_exit(command)
    };
    let done = migrate();
    assert!(done.status.success(), "stderr:\n{}", done.stderr);
    assert!(done.stdout.contains("observations"), "stdout:\n{}", done.stdout);
    assert!(done.stdout.contains("log: "), "stdout:\n{}", done.stdout);

    let server =
        Server::start_with(serve_command(data_dir.path(), &["--database", database.url()]));
    assert_eq!(read(&server, "/v1.1/Observations?$expand=FeatureOfInterest").await, observations);
    // The same entries at the same indexes, and the receipt verifies offline with the data
    // directory's key (its checkpoint is whichever was signed last, before or after the move).
    let entries = |receipt: &str| {
        let receipt: Json = serde_json::from_str(receipt).unwrap();
        let entries = receipt["entries"].as_array().unwrap().iter();
        entries.map(|e| (e["leaf_index"].clone(), e["entry"].clone())).collect::<Vec<_>>()
    };
    let copied_receipt = read(&server, "/v1.1/Observations(2)/$receipt").await;
    assert_eq!(entries(&copied_receipt), entries(&receipt));
    let mut command = stela_command();
    command.args(["log", "key", "--data-dir"]).arg(data_dir.path());
    let key = run_to_exit(command).stdout.trim().to_owned();
    let receipt_file = data_dir.path().join("receipt.json");
    std::fs::write(&receipt_file, &copied_receipt).unwrap();
    let mut command = stela_command();
    command.arg("verify").arg(&receipt_file).args(["--key", &key]);
    let verified = run_to_exit(command);
    assert!(verified.status.success(), "{copied_receipt}\nstderr:\n{}", verified.stderr);
    let body = json!({"result": 5, "Datastream": {"@iot.id": 1}});
    let posted = client.post(server.url("/v1.1/Observations")).json(&body).send().await.unwrap();
    assert_eq!(posted.headers()["location"].to_str().unwrap(), server.url("/v1.1/Observations(5)"));
    drop(server);

    let again = migrate();
    assert!(!again.status.success());
    assert!(again.stderr.contains("already holds data"), "stderr:\n{}", again.stderr);
}

#[test]
fn arguments_that_name_no_sqlite_source_or_no_postgres_target_are_refused() {
    for (from, to, message) in [
        ("store.db", "sqlite://other.db", "--to must be a PostgreSQL URL"),
        ("postgres://u@h/db", "postgres://u@h/db", "--from must name an SQLite store"),
    ] {
        let mut command = stela_command();
        command.args(["migrate", "--from", from, "--to", to]);
        let done = run_to_exit(command);
        assert!(!done.status.success());
        assert!(done.stderr.contains(message), "stderr:\n{}", done.stderr);
    }
}
