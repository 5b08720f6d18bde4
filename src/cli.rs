//! The `hearback` command line.

use crate::auth::api_key::ApiKeyToken;
use crate::config::{Config, ConfigError, ConfigSource};
use crate::server::{self, ServeError};
use crate::storage::{Actor, NewApiKey, StorageError};
use crate::telemetry;
use crate::time::Timestamp;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "hearback",
    version,
    about = "SMS-first conversational feedback gateway",
    long_about = "hearback texts customers a short survey after a transaction, understands their replies, \
                  alerts a human when they are unhappy, and pushes every result to your CRM.\n\n\
                  With no configuration it runs on an embedded SQLite file (./hearback.db) and \
                  listens on 127.0.0.1:8080."
)]
pub struct Cli {
    /// Configuration file (TOML). Every key can also be set as HEARBACK_<SECTION>__<KEY>.
    #[arg(long, global = true, env = "HEARBACK_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server and the background job workers until SIGTERM or SIGINT.
    Serve {
        /// Address to listen on, overriding `[server] listen` (port 0 picks a free port).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Apply pending PostgreSQL migrations before serving (SQLite always migrates).
        #[arg(long)]
        migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create, list and revoke the API keys that integrations use.
    #[command(subcommand)]
    ApiKeys(ApiKeysCommand),
}

#[derive(Debug, Subcommand)]
enum ApiKeysCommand {
    /// Create a key and print it once; only its hash is stored.
    Create {
        /// What the key is for, e.g. "crm" (unique among active keys).
        #[arg(long)]
        name: String,
    },
    /// List every key: id, name, creation and revocation times (never the secret).
    List,
    /// Revoke a key by its id; requests made with it are refused from now on.
    Revoke {
        /// The key's id, as `api-keys list` shows it.
        id: String,
    },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Parses the command line, runs the command, and reports a failure as one line on stderr.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = e.to_string().replace('\n', " ");
            eprintln!("hearback: error: {line}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> Result<(), CliError> {
    let config = Config::load(&ConfigSource::from_cli(cli.config))?;
    telemetry::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { listen, migrate } => {
                let mut config = config;
                if let Some(listen) = listen {
                    config.server.listen = listen;
                }
                server::serve(config, migrate).await?;
            }
            Command::Migrate => {
                let storage = crate::storage::Storage::connect(&config.database).await?;
                let applied = storage.migrate().await?;
                let status = storage.schema_status().await?;
                println!(
                    "applied {applied} migration(s); schema at version {}",
                    status.current.unwrap_or(0)
                );
                storage.close().await;
            }
            Command::ApiKeys(command) => api_keys(&config, command).await?,
        }
        Ok(())
    })
}

async fn api_keys(config: &Config, command: ApiKeysCommand) -> Result<(), CliError> {
    let storage = server::open_storage(config, false).await?;
    let now = Timestamp::now();
    match command {
        ApiKeysCommand::Create { name } => {
            let name = name.trim().to_string();
            if name.is_empty() {
                return Err(CliError::Usage("--name must not be empty".into()));
            }
            let token = ApiKeyToken::generate();
            let new = NewApiKey {
                id: token.id().to_string(),
                name,
                secret_hash: token.secret_hash(),
            };
            let record = storage.create_api_key(&new, &Actor::Cli, now).await?;
            eprintln!(
                "Created API key {} ({}). Store it now: it cannot be shown again.",
                record.id, record.name
            );
            println!("{}", token.reveal());
        }
        ApiKeysCommand::List => {
            println!("{:<18} {:<24} {:<26} revoked", "id", "name", "created");
            for key in storage.api_keys().await? {
                let revoked = key
                    .revoked_at
                    .map_or_else(|| "-".to_string(), |at| at.to_string());
                println!(
                    "{:<18} {:<24} {:<26} {revoked}",
                    key.id,
                    key.name,
                    key.created_at.to_string()
                );
            }
        }
        ApiKeysCommand::Revoke { id } => {
            let record = storage.revoke_api_key(&id, &Actor::Cli, now).await?;
            println!("revoked {} ({})", record.id, record.name);
        }
    }
    storage.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
