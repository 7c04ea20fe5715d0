//! `stela migrate`: moves a whole store from SQLite to PostgreSQL.
//!
//! ```text
//!   stela migrate --from sqlite://DATA/stela.db --to postgres://USER@HOST:PORT/DB
//!     ─► stela_store::copy_sqlite_to_postgres (one transaction, checked before it commits)
//!        progress: one bar per table, rows copied / rows
//!     ─► summary: rows per table, the log's size and root (the same on both)
//! ```
//!
//! The copy blocks (the synchronous PostgreSQL client), so it runs on a blocking thread, away
//! from the async runtime.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use stela_store::{CopyProgress, CopyReport};

/// `stela migrate …`
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The SQLite store to copy: `sqlite://PATH` or a path (e.g. ./stela-data/stela.db)
    #[arg(long, value_name = "SQLITE")]
    pub from: String,
    /// The PostgreSQL database to copy into (`postgres://USER@HOST:PORT/DB`); its schema is
    /// created, and it must hold no data
    #[arg(long, value_name = "URL")]
    pub to: String,
}

pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || migrate_blocking(&args))
        .await
        .context("the migration thread failed")?
}

fn migrate_blocking(args: &MigrateArgs) -> anyhow::Result<()> {
    let from = sqlite_path(&args.from)?;
    let target = describe_postgres(&args.to)?;
    eprintln!("copying {} to {target}", from.display());
    let mut bars = TableBars::default();
    let copied = stela_store::copy_sqlite_to_postgres(&from, &args.to, &mut |progress| {
        bars.show(progress);
    });
    bars.finish();
    let report = copied.with_context(|| format!("cannot copy {} to {target}", from.display()))?;
    print!("{}", summary(&report, &target));
    Ok(())
}

/// `sqlite://PATH` or a plain path; a URL of another scheme is refused.
fn sqlite_path(from: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = from.strip_prefix("sqlite://") {
        return Ok(PathBuf::from(path));
    }
    if from.starts_with("postgres://") || from.starts_with("postgresql://") {
        bail!("--from must name an SQLite store (sqlite://PATH or a path), not PostgreSQL");
    }
    if from.contains("://") {
        bail!("--from must be sqlite://PATH or a path");
    }
    Ok(PathBuf::from(from))
}

/// `user@host:port/db` of a PostgreSQL URL, without its password, for messages.
fn describe_postgres(url: &str) -> anyhow::Result<String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!("--to must be a PostgreSQL URL (postgres://USER@HOST:PORT/DB)");
    }
    let _: postgres::Config = url.parse().context("--to is not a valid PostgreSQL URL")?;
    Ok(crate::config::redact_url(url))
}

/// One progress bar per table, on standard error, each left in place when its table is done.
#[derive(Debug, Default)]
struct TableBars {
    current: Option<(String, ProgressBar)>,
}

impl TableBars {
    fn show(&mut self, progress: CopyProgress<'_>) {
        let same_table = self.current.as_ref().is_some_and(|(table, _)| table == progress.table);
        if !same_table {
            self.finish();
            let bar = ProgressBar::new(progress.total).with_style(
                ProgressStyle::with_template(
                    "{msg:<40} [{bar:30}] {human_pos:>11}/{human_len:<11} {per_sec:>12}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(progress.table.to_owned());
            self.current = Some((progress.table.to_owned(), bar));
        }
        if let Some((_, bar)) = &self.current {
            bar.set_position(progress.copied);
        }
    }

    fn finish(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish();
        }
    }
}

fn summary(report: &CopyReport, target: &str) -> String {
    let mut text = format!("copied to {target}, checked:\n");
    const ALL: &str = "(all tables)";
    let width = report.tables.iter().map(|t| t.table.len()).chain([ALL.len()]).max().unwrap_or(0);
    for table in &report.tables {
        text.push_str(&format!("  {:<width$}  {:>12} rows\n", table.table, table.rows));
    }
    let total: u64 = report.tables.iter().map(|t| t.rows).sum();
    text.push_str(&format!("  {ALL:<width$}  {total:>12} rows\n"));
    let root = base64::engine::general_purpose::STANDARD.encode(report.log_root);
    text.push_str(&format!(
        "log: {} entries, root {root} (the same on both stores)\n",
        report.log_size
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_takes_an_sqlite_url_or_a_path() {
        assert_eq!(sqlite_path("sqlite://data/stela.db").unwrap(), PathBuf::from("data/stela.db"));
        assert_eq!(sqlite_path("/srv/stela.db").unwrap(), PathBuf::from("/srv/stela.db"));
        assert!(sqlite_path("postgres://u@h/db").is_err());
        assert!(sqlite_path("mysql://u@h/db").is_err());
    }

    #[test]
    fn the_target_is_described_without_its_password() {
        assert_eq!(
            describe_postgres("postgres://stela:secret@db.example:5433/iot").unwrap(),
            "postgres://stela@db.example:5433/iot"
        );
        assert!(describe_postgres("sqlite://x.db").is_err());
    }

    #[test]
    fn the_summary_lists_tables_and_the_log() {
        let report = CopyReport {
            tables: vec![
                stela_store::TableCopied { table: "things".into(), rows: 2 },
                stela_store::TableCopied { table: "log_entries".into(), rows: 7 },
            ],
            log_size: 7,
            log_root: [0; 32],
        };
        assert_eq!(
            summary(&report, "postgres://u@h:5432/db"),
            "copied to postgres://u@h:5432/db, checked:\n\
             \x20 things                   2 rows\n\
             \x20 log_entries              7 rows\n\
             \x20 (all tables)             9 rows\n\
             log: 7 entries, root AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= (the same on both stores)\n"
        );
    }
}
