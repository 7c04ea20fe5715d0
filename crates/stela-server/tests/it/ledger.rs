//! The verifiable log over HTTP: checkpoints, proofs, tiles and receipts, checked with the
//! independent verifier of `stela-log`.

use std::collections::HashMap;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::json;
use stela_log::{Checkpoint, Hash, Receipt, VerifierKey};

use crate::support::{TestServer, seed_graph};

fn decode_hashes(json: &serde_json::Value) -> Vec<Hash> {
    json.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

async fn checkpoint(server: &TestServer, key: &VerifierKey) -> Checkpoint {
    let (status, bytes, _) = server.get_bytes("/log/checkpoint").await;
    assert_eq!(status, StatusCode::OK);
    let note = String::from_utf8(bytes).unwrap();
    let opened = stela_log::open_note(&note, std::slice::from_ref(key))
        .expect("a checkpoint signed by the node key");
    Checkpoint::parse(&opened.text).unwrap()
}

async fn key(server: &TestServer) -> VerifierKey {
    let (status, bytes, _) = server.get_bytes("/log/key").await;
    assert_eq!(status, StatusCode::OK);
    VerifierKey::parse(String::from_utf8(bytes).unwrap().trim()).unwrap()
}

#[tokio::test]
async fn every_write_is_an_entry_and_receipts_prove_an_entitys_history() {
    let server = TestServer::start().await;
    let key = key(&server).await;
    let g = seed_graph(&server, "log").await;
    // Thing, Location, HistoricalLocation, Thing (moved), Sensor, ObservedProperty, Datastream.
    let size_after_seed = checkpoint(&server, &key).await.size;
    assert_eq!(size_after_seed, 7);
    // A failed request writes nothing, not even a log entry.
    let reply = server.post("Things", json!({"name": "no description"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(checkpoint(&server, &key).await.size, 7);

    let obs = server
        .create(&format!("Datastreams({})/Observations", g.datastream), json!({"result": 1}))
        .await;
    assert_eq!(
        server.patch(&format!("Observations({obs})"), json!({"result": 2})).await.status,
        StatusCode::OK
    );
    assert_eq!(server.delete(&format!("Observations({obs})")).await.status, StatusCode::OK);

    let reply = server.get(&format!("Observations({obs})/$receipt")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let receipt: Receipt = serde_json::from_value(reply.json.clone()).unwrap();
    let verified = stela_log::verify_receipt(&receipt, &key).expect("the receipt verifies offline");
    let ops: Vec<String> = verified.entries.iter().map(|e| format!("{:?}", e.entry.op)).collect();
    assert_eq!(ops, ["Create", "Update", "Delete"]);
    assert_eq!(verified.entries[1].entry.body["result"], json!(2));
    assert_eq!(verified.entries[1].entry.body["Datastream"], json!({"@iot.id": g.datastream}));

    // A forged entry fails verification.
    let mut forged = receipt.clone();
    forged.entries[1].entry = forged.entries[1].entry.replace("\"result\":2", "\"result\":3");
    assert!(stela_log::verify_receipt(&forged, &key).is_err());
    // A receipt of an entity without entries is 404.
    assert_eq!(server.get("Things(424242)/$receipt").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn proofs_and_tiles_agree_with_the_checkpoints() {
    let server = TestServer::start().await;
    let key = key(&server).await;
    let g = seed_graph(&server, "tiles").await;
    let old = checkpoint(&server, &key).await;
    for i in 0..300 {
        server
            .create(&format!("Datastreams({})/Observations", g.datastream), json!({"result": i}))
            .await;
    }
    let new = checkpoint(&server, &key).await;
    // 300 Observations and the FeatureOfInterest generated for the first.
    assert_eq!(new.size, old.size + 301);

    let reply = server
        .get(&format!(
            "{}/log/proof/consistency?from={}&to={}",
            server.root.trim_end_matches("/v1.1"),
            old.size,
            new.size
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let proof = decode_hashes(&reply.json["proof"]);
    stela_log::verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
        .expect("consistent");

    let index = 100;
    let reply = server
        .get(&format!(
            "{}/log/proof/inclusion?index={index}&size={}",
            server.root.trim_end_matches("/v1.1"),
            new.size
        ))
        .await;
    let proof = decode_hashes(&reply.json["proof"]);
    let (_, bundle, cache) = server.get_bytes("/log/tile/entries/000").await;
    assert!(cache.unwrap().contains("immutable"), "full bundles are immutable");
    let entries = stela_log::decode_entry_bundle(&bundle).unwrap();
    assert_eq!(entries.len(), 256);
    let leaf = stela_log::leaf_hash(&entries[index as usize]);
    stela_log::verify_inclusion(&leaf, index, new.size, &proof, &new.root).expect("included");

    // Recompute the root from the tiles alone, as a third party would.
    let mut tiles = HashMap::new();
    for tile in stela_log::tiles_for_growth(0, new.size) {
        let (status, bytes, _) = server.get_bytes(&format!("/log/{}", tile.path())).await;
        assert_eq!(status, StatusCode::OK, "{}", tile.path());
        tiles.insert(tile, bytes);
    }
    let root =
        stela_log::root_from_tiles(new.size, |tile| tiles.get(tile).cloned().ok_or("missing tile"))
            .unwrap();
    assert_eq!(root, new.root);

    // Out of range and malformed requests are client errors.
    let base = server.root.trim_end_matches("/v1.1").to_owned();
    assert_eq!(
        server.get(&format!("{base}/log/proof/inclusion?index=5&size=999999")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.get(&format!("{base}/log/proof/inclusion?index=x&size=3")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        server.get(&format!("{base}/log/proof/consistency?from=9&to=3")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(server.get_bytes("/log/tile/0/999").await.0, StatusCode::NOT_FOUND);
    assert_eq!(server.get_bytes("/log/tile/0/0").await.0, StatusCode::NOT_FOUND);
}
