//! The `hearback` command line.

mod flows;
mod import;
mod users;

use crate::auth::api_key::ApiKeyToken;
use crate::config::{Config, ConfigError, ConfigSource};
use crate::lang::Lang;
use crate::server::{self, ServeError};
use crate::sms;
use crate::storage::{Actor, NewApiKey, StorageError};
use crate::telemetry;
use crate::time::Timestamp;
use crate::understand;
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
    /// Check, try and test survey flows (YAML files in the flows folder).
    #[command(subcommand)]
    Flows(FlowsCommand),
    /// Take in a file of customer events (CSV with a header, or JSON lines), streamed, with a
    /// report per row. Prints {"import","rows","accepted","rejected"}; running the same file
    /// again sends nothing new.
    Import {
        /// The file: .csv (columns event_id, flow, phone, and optionally locale, unit, channel,
        /// event_time; every other column is a variable of the flow) or .jsonl (one invitation
        /// request per line, as POST /api/v1/invitations takes it).
        file: PathBuf,
        /// csv or jsonl, when the file's extension does not say.
        #[arg(long)]
        format: Option<String>,
        /// Who sends these events: event ids are unique per source.
        #[arg(long, default_value = "import")]
        source: String,
        /// Write every row's outcome here, as CSV: line, event_id, status, reason, message,
        /// invitation_id.
        #[arg(long, value_name = "PATH")]
        report: Option<PathBuf>,
    },
    /// The organisation tree.
    #[command(subcommand)]
    Units(UnitsCommand),
    /// The people who handle cases.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Print, as one JSON line, how a reply is understood, e.g. {"kind":"nps","value":9}.
    Understand {
        /// What the reply answers: nps, csat, ces, yesno, or keyword (STOP, HELP, START…).
        #[arg(long)]
        kind: understand::Kind,
        /// The language of the conversation.
        #[arg(long, default_value = "fr")]
        lang: Lang,
        /// The customer's SMS.
        text: String,
    },
    /// Print how an SMS travels: {"encoding":"GSM-7"|"UCS-2","segments":N,"units":N}.
    Segments {
        /// The message text.
        text: String,
    },
}

#[derive(Debug, Subcommand)]
enum FlowsCommand {
    /// Validate flows and report every message's encoding, segments and estimated cost.
    Lint {
        /// Flow files or folders (default: the configured flows folder).
        paths: Vec<PathBuf>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Estimated price of one SMS segment, in your currency.
        #[arg(long, default_value_t = 0.05, value_name = "PRICE")]
        cost_per_segment: f64,
    },
    /// Hold a conversation with a flow in the terminal (/reminder, /expiry, /quit).
    Simulate {
        /// A flow id from the flows folder, or a path to a flow file.
        flow: String,
        #[arg(long, default_value = "fr")]
        lang: Lang,
        /// A variable of the invitation, e.g. --var first_name=Léa (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_variable)]
        variables: Vec<(String, String)>,
    },
    /// Replay the transcript tests (<flow>.test.yaml) beside the flows.
    Test {
        /// Transcript files or folders (default: the configured flows folder).
        paths: Vec<PathBuf>,
    },
}

fn parse_variable(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("'{raw}' is not NAME=VALUE"))
}

#[derive(Debug, Subcommand)]
enum UnitsCommand {
    /// Add the units of a CSV file with columns code, name, parent (empty for a root), in any
    /// order; all or nothing, every problem reported with its line. Units that exist as the
    /// file says are left alone, so the same file can be imported again.
    Import { file: PathBuf },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user. An agent or a manager sees and changes the cases of their unit and its
    /// sub-units; an admin, every case. Prints {"id","email","role"}.
    Create {
        #[arg(long)]
        email: String,
        /// admin, manager or agent.
        #[arg(long)]
        role: String,
        /// The unit's code (required but for an admin).
        #[arg(long)]
        unit: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Read a password (for the web inbox) from standard input; it is kept as an argon2id
        /// hash.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeysCommand {
    /// Create a key and print it once; only its hash is stored. A key for an integration
    /// (`--name`) acts for the whole organisation; a key for a user (`--user`) acts with that
    /// user's unit scope.
    #[command(group(clap::ArgGroup::new("owner").required(true).args(["name", "user"])))]
    Create {
        /// What the key is for, e.g. "crm" (unique among active keys).
        #[arg(long)]
        name: Option<String>,
        /// The e-mail of the user the key acts for (`hearback users create`).
        #[arg(long)]
        user: Option<String>,
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
    #[error("{0}")]
    Failed(String),
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
    // These read no configuration: a broken file must not stop a quick check.
    match &cli.command {
        Command::Understand { kind, lang, text } => {
            println!("{}", understand::describe(*kind, *lang, text));
            return Ok(());
        }
        Command::Segments { text } => {
            println!("{}", sms::describe(text));
            return Ok(());
        }
        _ => {}
    }
    let config = Config::load(&ConfigSource::from_cli(cli.config))?;
    if let Command::Flows(command) = cli.command {
        return flows_command(&config, command);
    }
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
            Command::Import {
                file,
                format,
                source,
                report,
            } => import::import_file(&config, file, (format, source), report).await?,
            Command::Units(UnitsCommand::Import { file }) => {
                import::import_units(&config, file).await?
            }
            Command::Users(UsersCommand::Create {
                email,
                role,
                unit,
                name,
                password_stdin,
            }) => {
                users::create_user(
                    &config,
                    users::UserArgs {
                        email,
                        role,
                        unit,
                        name,
                        password_stdin,
                    },
                )
                .await?
            }
            Command::Flows(_) | Command::Understand { .. } | Command::Segments { .. } => {
                unreachable!("handled before the runtime starts")
            }
        }
        Ok(())
    })
}

fn flows_command(config: &Config, command: FlowsCommand) -> Result<(), CliError> {
    let or_default = |paths: Vec<PathBuf>| {
        if paths.is_empty() {
            vec![config.flows.dir.clone()]
        } else {
            paths
        }
    };
    match command {
        FlowsCommand::Lint {
            paths,
            json,
            cost_per_segment,
        } => {
            let outcome = flows::lint(&or_default(paths), json, cost_per_segment);
            print!("{}", outcome.report);
            if json {
                println!();
            }
            if outcome.errors > 0 {
                return Err(CliError::Failed(format!(
                    "{} flow error(s)",
                    outcome.errors
                )));
            }
        }
        FlowsCommand::Test { paths } => {
            let outcome = flows::test(&or_default(paths));
            print!("{}", outcome.report);
            if outcome.failed > 0 {
                return Err(CliError::Failed(format!(
                    "{} transcript case(s) failed",
                    outcome.failed
                )));
            }
        }
        FlowsCommand::Simulate {
            flow,
            lang,
            variables,
        } => {
            let flow = flows::find_flow(&flow, &config.flows.dir).map_err(CliError::Usage)?;
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            flows::simulate(
                &flow,
                lang,
                variables.into_iter().collect(),
                &mut stdin.lock(),
                &mut stdout.lock(),
            )
            .map_err(|e| CliError::Failed(e.to_string()))?;
        }
    }
    Ok(())
}

async fn api_keys(config: &Config, command: ApiKeysCommand) -> Result<(), CliError> {
    let storage = server::open_storage(config, false).await?;
    let now = Timestamp::now();
    match command {
        ApiKeysCommand::Create { name, user } => {
            let user = match user {
                None => None,
                Some(email) => Some(storage.user_by_email(email.trim()).await?.ok_or_else(|| {
                    CliError::Usage(format!(
                        "no user has the e-mail '{email}'; create them with `hearback users create`"
                    ))
                })?),
            };
            // A user's key is named after them, unless told otherwise.
            let name = name
                .or_else(|| user.as_ref().map(|u| format!("user:{}", u.email)))
                .unwrap_or_default()
                .trim()
                .to_string();
            if name.is_empty() {
                return Err(CliError::Usage("--name must not be empty".into()));
            }
            let token = ApiKeyToken::generate();
            let new = NewApiKey {
                id: token.id().to_string(),
                name,
                secret_hash: token.secret_hash(),
                user_id: user.map(|u| u.id),
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
