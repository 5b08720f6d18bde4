//! `hearback import FILE` and `hearback units import FILE.csv`.

use super::CliError;
use crate::config::Config;
use crate::import::{self, Format, Progress, RowOutcome, RowReport};
use crate::intake::Intake;
use crate::server;
use crate::storage::{Actor, Storage};
use crate::time::Timestamp;
use crate::units::{ExistingUnits, UnitRow, plan_units};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `hearback import`'s SQLite page cache, at most: a million rows took 18.3 s and 58 MB with
/// it, 17.8 s and 115 MB with the default 64 MiB.
pub const IMPORT_SQLITE_CACHE_MIB: u32 = 16;

/// The format of `path`: as asked, else from its extension.
fn format_of(path: &Path, asked: Option<&str>) -> Result<Format, CliError> {
    let name = match asked {
        Some(name) => name.to_string(),
        None => path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_string(),
    };
    Format::parse(&name).ok_or_else(|| {
        CliError::Usage(format!(
            "cannot tell the format of {}: name it .csv or .jsonl, or pass --format csv|jsonl",
            path.display()
        ))
    })
}

/// Imports a file of events, with a progress bar on a terminal; prints a JSON summary and, with
/// `report`, writes every row's outcome as CSV.
pub async fn import_file(
    config: &Config,
    path: PathBuf,
    (format, source): (Option<String>, String),
    report: Option<PathBuf>,
) -> Result<(), CliError> {
    let format = format_of(&path, format.as_deref())?;
    let file = std::fs::File::open(&path)
        .map_err(|e| CliError::Failed(format!("cannot open {}: {e}", path.display())))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let flows = server::load_flows(config)?;
    // An import writes a long run of new pages and reads few twice: a cache past
    // IMPORT_SQLITE_CACHE_MIB gains it nothing and doubles its memory (docs/PERFORMANCE.md).
    let mut config = config.clone();
    config.database.sqlite_cache_mib = config
        .database
        .sqlite_cache_mib
        .min(IMPORT_SQLITE_CACHE_MIB);
    let config = &config;
    // Imported rows create contacts: a number erased after it opted out must stay blocked.
    let storage = server::open_storage(config, false).await?.with_privacy_key(
        crate::privacy::HashKey::from_config(config).map_err(server::ServeError::PrivacyKey)?,
    );
    let intake = Intake::new(config, Arc::new(flows.flows));
    let mut report = match report {
        None => None,
        Some(path) => {
            let mut writer = csv::Writer::from_path(&path)
                .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
            writer
                .write_record([
                    "line",
                    "event_id",
                    "status",
                    "reason",
                    "message",
                    "invitation_id",
                ])
                .map_err(|e| CliError::Failed(e.to_string()))?;
            Some(writer)
        }
    };
    let id = uuid::Uuid::now_v7().to_string();
    storage
        .create_import(&id, &source, format.as_str(), Timestamp::now())
        .await?;

    let progress = Arc::new(Progress::default());
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {msg} ({eta} left)",
        )
        .expect("the template is valid"),
    );
    let ticker = {
        let (bar, progress) = (bar.clone(), progress.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(progress.bytes.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "{} rows, {} accepted, {} rejected",
                    progress.rows.load(Ordering::Relaxed),
                    progress.accepted.load(Ordering::Relaxed),
                    progress.rejected.load(Ordering::Relaxed)
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let mut report_error = None;
    let outcome = import::run(
        &storage,
        &intake,
        (&id, &source),
        (format, Box::new(std::io::BufReader::new(file))),
        progress.clone(),
        |row| {
            if let Some(writer) = report.as_mut() {
                if let Err(e) = writer.write_record(report_line(row)) {
                    report_error.get_or_insert(e.to_string());
                }
            }
        },
    )
    .await;
    ticker.abort();
    bar.finish_and_clear();
    if let Some(writer) = report.as_mut() {
        if let Err(e) = writer.flush() {
            report_error.get_or_insert(e.to_string());
        }
    }
    storage.close().await;
    outcome.map_err(|e| CliError::Failed(format!("import {id} stopped: {e}")))?;
    println!(
        "{}",
        serde_json::json!({
            "import": id,
            "rows": progress.rows.load(Ordering::Relaxed),
            "accepted": progress.accepted.load(Ordering::Relaxed),
            "rejected": progress.rejected.load(Ordering::Relaxed),
        })
    );
    match report_error {
        Some(e) => Err(CliError::Failed(format!("the report is incomplete: {e}"))),
        None => Ok(()),
    }
}

fn report_line(row: &RowReport) -> [String; 6] {
    let line = row.line.to_string();
    let event_id = import::spreadsheet_safe(row.event_id.clone().unwrap_or_default());
    match &row.outcome {
        RowOutcome::Accepted { invitation_id } => [
            line,
            event_id,
            "accepted".into(),
            String::new(),
            String::new(),
            invitation_id.clone(),
        ],
        RowOutcome::Rejected(rejection) => [
            line,
            event_id,
            "rejected".into(),
            rejection.reason.clone(),
            import::spreadsheet_safe(rejection.message.clone()),
            rejection.invitation_id.clone().unwrap_or_default(),
        ],
    }
}

/// Adds the units of a CSV file (`code,name,parent`) to the organisation tree, all or nothing.
pub async fn import_units(config: &Config, path: PathBuf) -> Result<(), CliError> {
    let rows = read_units(&path)?;
    let storage = server::open_storage(config, false).await?;
    let outcome = create_planned_units(&storage, &rows).await;
    storage.close().await;
    let (created, unchanged) = outcome?;
    println!(
        "{}",
        serde_json::json!({ "created": created, "unchanged": unchanged })
    );
    Ok(())
}

async fn create_planned_units(
    storage: &Storage,
    rows: &[UnitRow],
) -> Result<(usize, usize), CliError> {
    let existing: ExistingUnits = storage
        .units()
        .await?
        .into_iter()
        .map(|unit| {
            (
                unit.code.to_string(),
                (unit.name, unit.parent.map(|p| p.to_string())),
            )
        })
        .collect();
    let plan = plan_units(rows, &existing).map_err(|problems| {
        CliError::Failed(format!(
            "nothing imported; {} problem(s): {}",
            problems.len(),
            problems.join("; ")
        ))
    })?;
    storage
        .create_units(&plan.create, &Actor::Cli, Timestamp::now())
        .await?;
    Ok((plan.create.len(), plan.unchanged))
}

fn read_units(path: &Path) -> Result<Vec<UnitRow>, CliError> {
    let failed = |e: &dyn std::fmt::Display| {
        CliError::Failed(format!("cannot read {}: {e}", path.display()))
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| failed(&e))?;
    let headers = reader.headers().map_err(|e| failed(&e))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
    };
    let (Some(code), Some(name)) = (column("code"), column("name")) else {
        return Err(CliError::Failed(format!(
            "{}: the header must name the columns code, name and (optionally) parent",
            path.display()
        )));
    };
    let parent = column("parent");
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| failed(&e))?;
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("").to_string();
        rows.push(UnitRow {
            line: record.position().map_or(0, |p| p.line()),
            code: cell(Some(code)),
            name: cell(Some(name)),
            parent: cell(parent),
        });
    }
    Ok(rows)
}
