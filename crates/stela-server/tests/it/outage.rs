//! A PostgreSQL outage in the middle of a write load: requests during the outage get 503 with a
//! clear message, the server keeps running and recovers when the database accepts connections
//! again, and every write it acknowledged is there afterwards.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use stela_server::ServerOptions;
use stela_service::ServiceOptions;
use stela_store::test_database::TestDatabase;
use tokio::sync::Mutex;

use crate::support::TestServer;

/// Runs a statement on the admin connection, off the async runtime (the client blocks).
async fn admin(url: String, sql: String) {
    tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("admin");
        client.batch_execute(&sql).expect("admin statement");
    })
    .await
    .expect("admin task");
}

#[derive(Default)]
struct Outcomes {
    created: Vec<i64>,
    unavailable: Vec<String>,
    other: Vec<(StatusCode, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_gives_503_and_the_server_recovers_without_losing_acknowledged_writes() {
    let Some(server_url) = TestDatabase::server() else { return };
    let database = TestDatabase::create(&server_url).expect("test database");
    let name = database.name().to_owned();
    let server = Arc::new(
        TestServer::start_on(Some(database), ServiceOptions::default(), ServerOptions::default())
            .await,
    );
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let (server, outcomes, stop) = (server.clone(), outcomes.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let body = json!({"name": format!("w{writer}-{n}"), "description": "load"});
                let reply = server.post("Things", body).await;
                let mut outcomes = outcomes.lock().await;
                match reply.status {
                    StatusCode::CREATED => {
                        let id = reply.json["@iot.id"].as_i64().expect("id");
                        outcomes.created.push(id);
                    }
                    StatusCode::SERVICE_UNAVAILABLE => {
                        outcomes
                            .unavailable
                            .push(reply.json["message"].as_str().unwrap_or("").into());
                    }
                    status => outcomes.other.push((status, reply.text)),
                }
                drop(outcomes);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = outcomes.lock().await.created.len();
    assert!(before > 0, "no write went through before the outage");

    // The outage: no new connections to the database, and every open one terminated.
    admin(
        server_url.clone(),
        format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = outcomes.lock().await.unavailable.len();
    // Reads fail the same way.
    let read = server.get("Things?$top=1").await;
    assert_eq!(read.status, StatusCode::SERVICE_UNAVAILABLE, "{}", read.text);

    // The database comes back.
    admin(server_url.clone(), format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer");
    }
    let outcomes = outcomes.lock().await;
    assert!(during > 0, "no request saw the outage");
    assert!(
        outcomes.other.is_empty(),
        "{} answers other than 201 and 503, the first: {:?}",
        outcomes.other.len(),
        outcomes.other.first()
    );
    for message in &outcomes.unavailable {
        assert!(
            message.starts_with("the database is unavailable")
                || message.starts_with("the database became unavailable while committing"),
            "{message}"
        );
    }
    assert!(outcomes.created.len() > before, "no write went through after the database came back");
    // Every acknowledged write is there, and the log accounts for each of them.
    let count = server.get_ok("Things?$count=true&$top=0").await["@iot.count"].as_i64();
    let stored = count.expect("count") as usize;
    assert!(
        stored >= outcomes.created.len(),
        "{stored} stored, {} acknowledged",
        outcomes.created.len()
    );
    for id in &outcomes.created {
        let reply = server.get(&format!("Things({id})")).await;
        assert_eq!(reply.status, StatusCode::OK, "acknowledged Thing {id} is missing");
        let receipt = server.get(&format!("Things({id})/$receipt")).await;
        assert_eq!(receipt.status, StatusCode::OK, "Thing {id} has no receipt: {}", receipt.text);
    }
}
