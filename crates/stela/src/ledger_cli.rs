//! `stela log key`, `stela verify` and `stela audit`: the verifiable log from the command line.
//!
//! ```text
//!   stela log key --data-dir DIR            the verifier key (<name>+<id>+<key>)
//!   stela verify receipt.json --key KEY     offline: signature, entries, inclusion proofs
//!   stela verify --log URL --key KEY --since OLD_CHECKPOINT
//!                                            online: new checkpoint, consistency with OLD,
//!                                            root recomputed from the tiles
//!   stela audit --data-dir DIR              re-hash everything; exit 1 on any problem
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use stela_log::{Checkpoint, Hash, Receipt, VerifierKey};
use stela_service::{Service, ServiceOptions};

/// `stela log …`
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Print the verifier key of the log in a data directory (C2SP note verifier key form)
    Key {
        /// The server's data directory
        #[arg(long, value_name = "DIR", default_value = "./stela-data")]
        data_dir: PathBuf,
    },
}

/// `stela verify …`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A receipt (from GET …/Set(id)/$receipt) to verify offline
    #[arg(value_name = "RECEIPT", conflicts_with = "log")]
    pub receipt: Option<PathBuf>,
    /// The verifier key, or a file holding it (from `stela log key` or GET /log/key)
    #[arg(long, value_name = "KEY")]
    pub key: String,
    /// Base URL of a Stela server whose log to check (e.g. http://localhost:8080)
    #[arg(long, value_name = "URL", requires = "since")]
    pub log: Option<String>,
    /// A checkpoint of the same log saved earlier; the current one must be consistent with it
    #[arg(long, value_name = "FILE")]
    pub since: Option<PathBuf>,
    /// Save the verified current checkpoint here (for the next `--since`)
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
}

/// `stela audit …`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The server's data directory
    #[arg(long, value_name = "DIR", default_value = "./stela-data")]
    pub data_dir: PathBuf,
    /// The database when it is not `<DIR>/stela.db`: a PostgreSQL URL or an SQLite file (as
    /// `stela serve --database`)
    #[arg(long, value_name = "URL", env = "STELA_DATABASE")]
    pub database: Option<String>,
}

pub fn log_command(command: LogCommand) -> anyhow::Result<()> {
    match command {
        LogCommand::Key { data_dir } => {
            let key = stela_service::verifier_key_in(&data_dir).with_context(|| {
                format!("no log key in {} (start `stela serve` there once)", data_dir.display())
            })?;
            println!("{key}");
            Ok(())
        }
    }
}

fn read_key(text: &str) -> anyhow::Result<VerifierKey> {
    let text = if Path::new(text).is_file() {
        std::fs::read_to_string(text).with_context(|| format!("cannot read the key file {text}"))?
    } else {
        text.to_owned()
    };
    VerifierKey::parse(text.trim()).map_err(|e| anyhow::anyhow!("invalid verifier key: {e}"))
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let key = read_key(&args.key)?;
    match (&args.receipt, &args.log) {
        (Some(path), None) => verify_receipt(path, &key),
        (None, Some(url)) => {
            verify_log(url, &key, args.since.as_deref(), args.save.as_deref()).await
        }
        _ => bail!("give a receipt file, or --log URL with --since FILE"),
    }
}

fn verify_receipt(path: &Path, key: &VerifierKey) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let receipt: Receipt = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a receipt", path.display()))?;
    let verified = stela_log::verify_receipt(&receipt, key)
        .map_err(|e| anyhow::anyhow!("receipt NOT verified: {e}"))?;
    println!(
        "receipt verified: checkpoint of {} (size {}) signed by {}",
        verified.checkpoint.origin,
        verified.checkpoint.size,
        key.name()
    );
    for entry in &verified.entries {
        println!(
            "  entry {}: {:?} {}({}) at {}",
            entry.leaf_index,
            entry.entry.op,
            entry.entry.entity_type,
            entry.entry.entity_id,
            entry.entry.committed_at
        );
    }
    Ok(())
}

fn open_checkpoint(note: &str, key: &VerifierKey, what: &str) -> anyhow::Result<Checkpoint> {
    let opened = stela_log::open_note(note, std::slice::from_ref(key))
        .map_err(|e| anyhow::anyhow!("{what}: signature NOT verified: {e}"))?;
    Checkpoint::parse(&opened.text).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

async fn fetch(client: &reqwest::Client, url: &str) -> anyhow::Result<Vec<u8>> {
    let response = client.get(url).send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let bytes = response.bytes().await.with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        bail!("{url}: {status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(bytes.to_vec())
}

async fn verify_log(
    url: &str,
    key: &VerifierKey,
    since: Option<&Path>,
    save: Option<&Path>,
) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/');
    let client = reqwest::Client::new();
    let note = String::from_utf8(fetch(&client, &format!("{base}/log/checkpoint")).await?)?;
    let new = open_checkpoint(&note, key, "current checkpoint")?;
    println!("current checkpoint verified: {} size {}", new.origin, new.size);
    if let Some(since) = since {
        let old_note = std::fs::read_to_string(since)
            .with_context(|| format!("cannot read {}", since.display()))?;
        let old = open_checkpoint(&old_note, key, "saved checkpoint")?;
        if old.origin != new.origin {
            bail!("the saved checkpoint is of another log ({} ≠ {})", old.origin, new.origin);
        }
        if old.size > new.size {
            bail!(
                "the log SHRANK from {} to {} entries: its history was rewritten",
                old.size,
                new.size
            );
        }
        let body = fetch(
            &client,
            &format!("{base}/log/proof/consistency?from={}&to={}", old.size, new.size),
        )
        .await?;
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        let proof = hashes(&json["proof"])?;
        stela_log::verify_consistency(old.size, new.size, &old.root, &new.root, &proof).map_err(
            |e| {
                anyhow::anyhow!(
                    "NOT consistent with the saved checkpoint of size {}: {e}",
                    old.size
                )
            },
        )?;
        println!(
            "consistent with the saved checkpoint of size {}: no entry was changed or removed",
            old.size
        );
    }
    let mut tiles = HashMap::new();
    for tile in stela_log::tiles_for_growth(0, new.size) {
        let bytes = fetch(&client, &format!("{base}/log/{}", tile.path())).await?;
        tiles.insert(tile, bytes);
    }
    let count = tiles.len();
    let root = stela_log::root_from_tiles(new.size, |tile| {
        tiles.get(tile).cloned().ok_or("tile not fetched")
    })
    .map_err(|e| anyhow::anyhow!("the tiles do not form a tree: {e}"))?;
    if root != new.root {
        bail!("the root recomputed from {count} tiles does NOT match the checkpoint");
    }
    println!("root recomputed from {count} tiles matches the checkpoint");
    if let Some(save) = save {
        std::fs::write(save, &note).with_context(|| format!("cannot write {}", save.display()))?;
        println!("saved the checkpoint to {}", save.display());
    }
    Ok(())
}

fn hashes(json: &serde_json::Value) -> anyhow::Result<Vec<Hash>> {
    let items = json.as_array().context("the proof is not an array")?;
    items
        .iter()
        .map(|item| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(item.as_str().context("a proof hash is not a string")?)
                .context("a proof hash is not base64")?;
            bytes.try_into().map_err(|_| anyhow::anyhow!("a proof hash is not 32 bytes"))
        })
        .collect()
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    // Audit the log under its own origin (the key's name), whatever `[ledger] origin` says.
    let mut options = ServiceOptions::default();
    if let Ok(key) = stela_service::verifier_key_in(&args.data_dir) {
        key.name().clone_into(&mut options.log_origin);
    }
    let service = match &args.database {
        Some(database) => {
            let shown = crate::config::redact_url(database);
            Service::open(database, &args.data_dir, options)
                .with_context(|| format!("cannot open the database {shown}"))?
        }
        None => {
            let database = args.data_dir.join("stela.db");
            if !database.is_file() {
                bail!("no database at {}", database.display());
            }
            Service::open_sqlite(&database, options)
                .with_context(|| format!("cannot open {}", database.display()))?
        }
    };
    let report = service.audit().await.context("the audit could not run")?;
    println!(
        "audited {} log entries, {} signed checkpoints, {} entities",
        report.entries, report.checkpoints, report.entities
    );
    if report.problems.is_empty() {
        println!("no problems found");
        Ok(())
    } else {
        for problem in &report.problems {
            println!("PROBLEM: {problem}");
        }
        bail!("{} problem(s) found", report.problems.len())
    }
}
