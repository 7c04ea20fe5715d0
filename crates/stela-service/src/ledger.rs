//! The verifiable log seen from the service: the node's signing key, signed checkpoints,
//! proofs, tiles, receipts and the audit.
//!
//! ```text
//!   every write ─► store: entry + Merkle nodes in the write's transaction
//!   checkpoint loop (every interval, when the tree grew) ─► root ─► C2SP checkpoint
//!                 ─► signed note (Ed25519, the node key) ─► log_checkpoints
//!   receipt(entity) ─► its entries ─► inclusion proofs against a checkpoint covering them
//! ```

use std::path::Path;

use stela_log::{
    Checkpoint, Hash, Receipt, ReceiptEntry, SignerKey, TileId, TilePath, VerifierKey,
};
use stela_model::EntityType;
use stela_store::{AuditReport, Store, StoreError};

use crate::{Service, ServiceError};

/// The file in the data directory holding the node's log signing key (C2SP signer key form).
pub const KEY_FILE: &str = "log-signer.key";

/// Loads the node's signing key, creating it on first start; a key made for another origin is
/// refused.
pub(crate) fn load_or_create_key(data_dir: &Path, origin: &str) -> Result<SignerKey, ServiceError> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = SignerKey::parse(text.trim()).map_err(|e| {
                ServiceError::Internal(format!("the log key {} is invalid: {e}", path.display()))
            })?;
            if key.name() != origin {
                return Err(ServiceError::Internal(format!(
                    "the log key in {} belongs to origin '{}', not '{origin}'; keep the origin \
                     or move the key away",
                    path.display(),
                    key.name()
                )));
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| {
                ServiceError::Internal(format!("no randomness for the log key: {e}"))
            })?;
            let key = SignerKey::from_seed(origin, &seed).map_err(|e| {
                ServiceError::Internal(format!(
                    "log origin '{origin}' is not a valid key name: {e}"
                ))
            })?;
            write_private(&path, &key.to_private_key_string()).map_err(|e| {
                ServiceError::Internal(format!("cannot write the log key {}: {e}", path.display()))
            })?;
            tracing::info!(path = %path.display(), verifier = %key.verifier_key(), "created the log signing key");
            Ok(key)
        }
        Err(e) => {
            Err(ServiceError::Internal(format!("cannot read the log key {}: {e}", path.display())))
        }
    }
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Reads the verifier key of the log in a data directory, without opening the store.
pub fn verifier_key_in(data_dir: &Path) -> Result<VerifierKey, ServiceError> {
    let path = data_dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ServiceError::NotFound(format!("no log key at {}: {e}", path.display())))?;
    let key = SignerKey::parse(text.trim())
        .map_err(|e| ServiceError::Internal(format!("invalid log key: {e}")))?;
    Ok(key.verifier_key())
}

/// Signs a checkpoint of the current tree when it is larger than the newest signed one.
/// Returns the newest checkpoint's size and note.
pub(crate) fn sign_if_grown(
    store: &Store,
    signer: &SignerKey,
    origin: &str,
) -> Result<(u64, String), StoreError> {
    let (size, root, latest) = store.read(|rx| {
        let size = rx.log_size()?;
        let latest = rx.latest_checkpoint()?;
        let root = rx.log_root(size)?;
        Ok((size, root, latest))
    })?;
    if let Some((signed, note)) = latest
        && signed >= size
    {
        return Ok((signed, note));
    }
    let body = Checkpoint { origin: origin.to_owned(), size, root, extensions: Vec::new() }
        .to_text()
        .map_err(|e| StoreError::Corrupt(format!("checkpoint: {e}")))?;
    let note = stela_log::sign_note(&body, &[signer])
        .map_err(|e| StoreError::Corrupt(format!("signing: {e}")))?;
    store.store_checkpoint(size, &note)?;
    Ok((size, note))
}

fn b64(hash: &Hash) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(hash)
}

/// A proof answered over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// Base64 hashes, nearest the leaf (or the old tree) first.
    pub hashes: Vec<String>,
}

impl Service {
    /// The verifier key of this node's log (`<name>+<id>+<key>`).
    pub fn log_verifier_key(&self) -> String {
        self.inner.signer.verifier_key().to_string()
    }

    /// Signs a checkpoint now if the log grew since the last one; returns the newest note.
    pub async fn checkpoint(&self) -> Result<String, ServiceError> {
        self.blocking(|inner| {
            Ok(sign_if_grown(&inner.store, &inner.signer, &inner.options.log_origin)?.1)
        })
        .await
    }

    /// Signs checkpoints every `interval` while the log grows, until the service is dropped.
    pub async fn run_checkpoints(self, interval: std::time::Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(error) = self.checkpoint().await {
                tracing::error!(%error, "signing a log checkpoint failed");
            }
        }
    }

    /// The inclusion proof of entry `index` in the tree of `size` entries.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Proof, ServiceError> {
        self.blocking(move |inner| {
            let proof = inner.store.read(|rx| {
                check_size(rx.log_size()?, size)?;
                rx.inclusion_proof(index, size)
            })?;
            Ok(Proof { hashes: proof.iter().map(b64).collect() })
        })
        .await
    }

    /// The consistency proof between the trees of `from` and `to` entries.
    pub async fn consistency_proof(&self, from: u64, to: u64) -> Result<Proof, ServiceError> {
        self.blocking(move |inner| {
            let proof = inner.store.read(|rx| {
                check_size(rx.log_size()?, to)?;
                rx.consistency_proof(from, to)
            })?;
            Ok(Proof { hashes: proof.iter().map(b64).collect() })
        })
        .await
    }

    /// A tile or entry bundle of the C2SP tlog-tiles layout, by its path below `tile/`.
    /// Returns the bytes and whether the tile is full (and so immutable).
    pub async fn log_tile(&self, path: String) -> Result<(Vec<u8>, bool), ServiceError> {
        let parsed = stela_log::parse_tile_path(&path)
            .map_err(|e| ServiceError::NotFound(format!("{e}")))?;
        self.blocking(move |inner| {
            Ok(inner.store.read(|rx| {
                let size = rx.log_size()?;
                match parsed {
                    TilePath::Hashes(tile) => {
                        if !tile_within(&tile, size) {
                            return Err(StoreError::NotFound(format!(
                                "tile {path} is beyond the log of {size} entries"
                            )));
                        }
                        Ok((rx.log_tile(&tile)?, tile.is_full()))
                    }
                    TilePath::Entries(bundle) => {
                        let start = bundle.index.saturating_mul(256);
                        let width = u64::from(bundle.width);
                        if start.saturating_add(width) > size {
                            return Err(StoreError::NotFound(format!(
                                "bundle {path} is beyond the log of {size} entries"
                            )));
                        }
                        let entries = rx.log_entries(start, width)?;
                        let bytes = stela_log::encode_entry_bundle(&entries)
                            .map_err(|e| StoreError::Corrupt(format!("entry bundle: {e}")))?;
                        Ok((bytes, bundle.width == 256))
                    }
                }
            })?)
        })
        .await
    }

    /// The receipt of an entity: its whole history in the log, each entry with its inclusion
    /// proof against a signed checkpoint that covers it. Works for deleted entities too.
    pub async fn receipt(&self, ty: EntityType, id: i64) -> Result<Receipt, ServiceError> {
        self.blocking(move |inner| {
            let entries = inner.store.read(|rx| rx.entity_log(ty, id))?;
            let Some(last) = entries.last() else {
                return Err(ServiceError::NotFound(format!("the log has no entry for {ty}({id})")));
            };
            let (size, note) =
                sign_if_grown(&inner.store, &inner.signer, &inner.options.log_origin)?;
            if last.0 >= size {
                return Err(ServiceError::Internal(
                    "the newest checkpoint does not cover the entity".into(),
                ));
            }
            let receipt_entries = inner.store.read(|rx| {
                entries
                    .iter()
                    .map(|(index, text)| {
                        let proof = rx.inclusion_proof(*index, size)?;
                        Ok(ReceiptEntry::new(*index, text.clone(), &proof))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })?;
            Ok(Receipt { entries: receipt_entries, tree_size: size, checkpoint: note })
        })
        .await
    }

    /// Re-hashes every entry, recomputes the tree, checks every signed checkpoint against it
    /// and every current entity against its newest entry.
    pub async fn audit(&self) -> Result<AuditReport, ServiceError> {
        self.blocking(|inner| {
            let verifier = inner.signer.verifier_key();
            Ok(inner.store.read(|rx| rx.audit_log(&verifier))?)
        })
        .await
    }
}

fn check_size(log_size: u64, size: u64) -> Result<(), StoreError> {
    if size > log_size {
        Err(StoreError::NotFound(format!("the log has {log_size} entries, not {size}")))
    } else {
        Ok(())
    }
}

/// Whether every hash of a tile exists in a tree of `size` leaves.
fn tile_within(tile: &TileId, size: u64) -> bool {
    let level_bits = u32::from(tile.level) * 8;
    let Some(span) = 1u64.checked_shl(level_bits) else { return false };
    let Some(first) = tile.index.checked_mul(256) else { return false };
    let Some(end) = first.checked_add(u64::from(tile.width)) else { return false };
    end.checked_mul(span).is_some_and(|leaves| leaves <= size)
}
