//! The `authcfg` command line: `serve` and the administration commands that
//! work on the same data directory, safe to run while `serve` runs (SQLite
//! serializes the writes, and the service picks up changes within a second).
//!
//! Secrets are never taken from arguments, which other users can read in the
//! process list: they come from standard input or from a file.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use authcfg_exchange::{AuthorizeRequest, Exchange, LoadedCredentials};
use authcfg_model::{
    AuditOutcome, AuthConfig, AuthMethod, ClientAuthMethod, CreateDataSource, Credentials,
    GrantType, Role, SecretString,
};
use authcfg_store::{MasterKey, Store};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit;
use crate::bootstrap;
use crate::config::Settings;
use crate::snapshot::Snapshot;
use crate::state::{exchange_config, StoreRefreshTokenSink};

/// Actor name of audit events written by the command line.
const CLI_ACTOR: &str = "cli";

/// A credentials broker: stores auth configs and sealed credentials of data
/// sources and hands out ready Authorization headers.
#[derive(Debug, Parser)]
#[command(name = "authcfg", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Without it, ./authcfg.toml is read when it exists.
    #[arg(long, global = true, env = "AUTHCFG_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve,
    /// Manage data sources.
    #[command(subcommand)]
    Datasource(DatasourceCommand),
    /// Manage the credentials of data sources.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// Print an Authorization header for a data source (for debugging).
    Token {
        /// The data source name.
        #[arg(long)]
        datasource: String,
        /// Request a new token even when a cached one would do.
        #[arg(long)]
        force_refresh: bool,
    },
    /// Inspect and rotate the encryption keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage API tokens.
    #[command(subcommand, name = "api-token")]
    ApiToken(ApiTokenCommand),
    /// Copy the database to a new file with the SQLite online backup API.
    Backup {
        /// The destination file; it must not exist.
        path: PathBuf,
    },
}

/// `authcfg datasource ...`
#[derive(Debug, Subcommand)]
pub enum DatasourceCommand {
    /// List data sources.
    List,
    /// Show one data source and its credentials summary as JSON.
    Show {
        /// The data source name.
        name: String,
    },
    /// Create a data source.
    Create(CreateArgs),
    /// Delete a data source and its credentials.
    Delete {
        /// The data source name.
        name: String,
    },
}

/// Arguments of `authcfg datasource create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The data source name, such as crm-prod.
    pub name: String,
    /// Authentication method.
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// OAuth token endpoint URL (bearer).
    #[arg(long)]
    pub token_url: Option<String>,
    /// OAuth grant type (bearer).
    #[arg(long, value_enum)]
    pub grant_type: Option<GrantArg>,
    /// OAuth scope, space-separated (bearer).
    #[arg(long)]
    pub scope: Option<String>,
    /// Client authentication method at the token endpoint (bearer).
    #[arg(long, value_enum)]
    pub client_auth: Option<ClientAuthArg>,
    /// Free text for operators.
    #[arg(long)]
    pub description: Option<String>,
    /// Base URL of the data source's API.
    #[arg(long)]
    pub base_url: Option<String>,
}

/// `--method` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MethodArg {
    /// HTTP Basic with the client id and secret.
    Basic,
    /// An OAuth 2.0 access token.
    Bearer,
}

/// `--grant-type` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GrantArg {
    /// Client credentials grant.
    ClientCredentials,
    /// Resource owner password grant.
    Password,
    /// Authorization code grant, with a stored refresh token.
    AuthorizationCode,
    /// Refresh token grant.
    RefreshToken,
}

/// `--client-auth` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ClientAuthArg {
    /// HTTP Basic at the token endpoint.
    ClientSecretBasic,
    /// Client id and secret in the request body.
    ClientSecretPost,
}

/// `authcfg credentials ...`
#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Store credentials; the client secret is read from standard input unless
    /// --client-secret-file names a file.
    Set(SetCredentialsArgs),
    /// Delete the credentials of a data source.
    Delete {
        /// The data source name.
        name: String,
    },
    /// Import credentials from the AUTHCFG_DS_* variables of this process.
    ImportEnv,
}

/// Arguments of `authcfg credentials set`.
#[derive(Debug, Args)]
pub struct SetCredentialsArgs {
    /// The data source name.
    pub name: String,
    /// The client id (not secret).
    #[arg(long)]
    pub client_id: String,
    /// File holding the client secret; `-` or absent reads standard input.
    #[arg(long, value_name = "PATH")]
    pub client_secret_file: Option<PathBuf>,
    /// The username, for the password grant (not secret).
    #[arg(long)]
    pub username: Option<String>,
    /// File holding the password, for the password grant.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// File holding the refresh token.
    #[arg(long, value_name = "PATH")]
    pub refresh_token_file: Option<PathBuf>,
}

/// `authcfg keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show the data keys, the rows they seal and the Argon2id parameters.
    Status,
    /// Re-wrap the data keys under a new master key read from a file.
    RotateMaster {
        /// File holding the new master key.
        #[arg(long, value_name = "PATH")]
        new_key_file: PathBuf,
        /// Generate a random key into --new-key-file (mode 0600) first; the file must not exist.
        #[arg(long)]
        generate: bool,
    },
    /// Create a new data key and re-encrypt every sealed value with it.
    RotateDataKey,
}

/// `authcfg api-token ...`
#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// Create a token and print its value once.
    Create {
        /// A label, such as the pipeline that uses the token.
        #[arg(long)]
        label: String,
        /// The token's role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A data source the consumer token may use; repeat for several.
        #[arg(long = "datasource", value_name = "NAME")]
        datasources: Vec<String>,
    },
    /// List tokens (never their values).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token id, as `api-token list` prints it.
        id: String,
    },
}

/// `--role` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Every route.
    Admin,
    /// Reading and fetching headers of the listed data sources.
    Consumer,
}

/// Parses the arguments, runs the command and returns the exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let report = crate::problem::join_causes(error.chain().map(ToString::to_string));
            let _ = writeln!(std::io::stderr().lock(), "error: {report}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line.
///
/// # Errors
///
/// Returns the first error, with its causes.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    crate::telemetry::init_logging(settings.log_format, &settings.log_level)
        .map_err(|error| anyhow::anyhow!("cannot set up logging: {error}"))?;
    for unknown in &settings.unknown_env_vars {
        // Only the name is logged: the value may be a secret.
        match &unknown.did_you_mean {
            Some(known) => tracing::warn!(
                variable = %unknown.name,
                did_you_mean = %known,
                "ignoring an AUTHCFG_ variable that sets no configuration key: rename it to the variable in did_you_mean, or remove it"
            ),
            None => tracing::warn!(
                variable = %unknown.name,
                "ignoring an AUTHCFG_ variable that sets no configuration key: see docs/configuration.md for the keys, or remove it"
            ),
        }
    }

    match cli.command {
        Command::Serve => crate::serve::serve(settings),
        Command::Datasource(command) => datasource(&settings, command),
        Command::Credentials(command) => credentials(&settings, command),
        Command::Token {
            datasource,
            force_refresh,
        } => token(&settings, &datasource, force_refresh),
        Command::Keys(command) => keys(&settings, command),
        Command::ApiToken(command) => api_token(&settings, command),
        Command::Backup { path } => {
            let store = bootstrap::open_existing_store(&settings)?;
            store
                .backup(&path)
                .with_context(|| format!("cannot back up to {}", path.display()))?;
            audit_cli(&store, "store.backup", None, None);
            print_line(&format!("backup written to {}", path.display()))
        }
    }
}

fn print_line(text: &str) -> anyhow::Result<()> {
    writeln!(std::io::stdout().lock(), "{text}").context("cannot write to standard output")
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    print_line(&text)
}

/// Records an audit event of the command line; a failure is logged, not fatal,
/// because the change itself is already made.
fn audit_cli(
    store: &Store,
    action: &str,
    datasource: Option<&str>,
    detail: Option<serde_json::Value>,
) {
    let event = audit::event(CLI_ACTOR, action, datasource, AuditOutcome::Success, detail);
    if let Err(error) = store.record_audit(&event) {
        tracing::error!(action, error = %error, "failed to write an audit event");
    }
}

fn datasource(settings: &Settings, command: DatasourceCommand) -> anyhow::Result<()> {
    let store = bootstrap::open_existing_store(settings)?;
    match command {
        DatasourceCommand::List => {
            let mut cursor: Option<String> = None;
            loop {
                let page = store.list_datasources(cursor.as_deref(), 500)?;
                for datasource in &page.items {
                    let credentials = store.credentials_summary(&datasource.name)?;
                    print_line(&format!(
                        "{}\t{}\t{}",
                        datasource.name,
                        datasource.auth.method,
                        if credentials.is_some() {
                            "credentials set"
                        } else {
                            "no credentials"
                        }
                    ))?;
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            Ok(())
        }
        DatasourceCommand::Show { name } => {
            let datasource = store.get_datasource(&name)?;
            let credentials = store.credentials_summary(&name)?;
            print_json(&crate::api::DataSourceView {
                datasource,
                credentials,
            })
        }
        DatasourceCommand::Create(args) => {
            let auth = AuthConfig {
                method: match args.method {
                    MethodArg::Basic => AuthMethod::Basic,
                    MethodArg::Bearer => AuthMethod::Bearer,
                },
                token_url: args.token_url,
                grant_type: args.grant_type.map(|grant| match grant {
                    GrantArg::ClientCredentials => GrantType::ClientCredentials,
                    GrantArg::Password => GrantType::Password,
                    GrantArg::AuthorizationCode => GrantType::AuthorizationCode,
                    GrantArg::RefreshToken => GrantType::RefreshToken,
                }),
                scope: args.scope,
                client_auth: args.client_auth.map(|method| match method {
                    ClientAuthArg::ClientSecretBasic => ClientAuthMethod::ClientSecretBasic,
                    ClientAuthArg::ClientSecretPost => ClientAuthMethod::ClientSecretPost,
                }),
                token_params: Default::default(),
            };
            let request = CreateDataSource {
                name: args.name,
                description: args.description,
                base_url: args.base_url,
                auth,
            };
            request.validate()?;
            if let Some(token_url) = &request.auth.token_url {
                settings
                    .token_url_policy()
                    .check(token_url)
                    .map_err(|detail| anyhow::anyhow!(detail))?;
            }
            let datasource = crate::create::create_datasource(&store, &request)?;
            audit_cli(&store, "datasource.create", Some(&datasource.name), None);
            let prefix = crate::env_import::env_var_prefix(&datasource.name);
            print_line(&format!(
                "created data source {}; provide credentials with {prefix}CLIENT_ID and {prefix}CLIENT_SECRET, or `authcfg credentials set {}`",
                datasource.name, datasource.name
            ))
        }
        DatasourceCommand::Delete { name } => {
            store.delete_datasource(&name)?;
            audit_cli(&store, "datasource.delete", Some(&name), None);
            print_line(&format!("deleted data source {name}"))
        }
    }
}

/// Reads a secret from a file, or from standard input for `-` or `None`,
/// stripping one trailing newline.
///
/// Empty standard input is an error: it is more often a pipe whose producer
/// failed than an empty secret on purpose, which an empty file still gives.
fn read_secret(
    path: Option<&Path>,
    secret_name: &str,
    option: &str,
) -> anyhow::Result<SecretString> {
    let mut text = String::new();
    match path {
        Some(path) if path != Path::new("-") => {
            text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the {secret_name} from {}", path.display())
            })?;
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut text)
                .with_context(|| format!("cannot read the {secret_name} from standard input"))?;
            anyhow::ensure!(
                !text.is_empty(),
                "standard input was empty, so no {secret_name} was read and nothing was stored: \
                 pipe the {secret_name} into the command, or pass an empty file with {option} \
                 to store an empty {secret_name} on purpose"
            );
        }
    }
    let secret = SecretString::new(
        text.strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text),
    );
    zeroize_string(&mut text);
    Ok(secret)
}

fn zeroize_string(text: &mut String) {
    // SecretString zeroes its own copy on drop; wipe the read buffer too.
    drop(SecretString::new(std::mem::take(text)));
}

fn credentials(settings: &Settings, command: CredentialsCommand) -> anyhow::Result<()> {
    let store = bootstrap::open_existing_store(settings)?;
    match command {
        CredentialsCommand::Set(args) => {
            let datasource = store.get_datasource(&args.name)?;
            let client_secret = read_secret(
                args.client_secret_file.as_deref(),
                "client secret",
                "--client-secret-file",
            )?;
            let password = args
                .password_file
                .as_deref()
                .map(|path| read_secret(Some(path), "password", "--password-file"))
                .transpose()?;
            let refresh_token = args
                .refresh_token_file
                .as_deref()
                .map(|path| read_secret(Some(path), "refresh token", "--refresh-token-file"))
                .transpose()?;
            let credentials = Credentials {
                client_id: args.client_id,
                client_secret,
                username: args.username,
                password,
                refresh_token,
            };
            credentials.validate(datasource.auth.method)?;
            let summary = store.put_credentials(&args.name, &credentials)?;
            audit_cli(
                &store,
                "credentials.put",
                Some(&args.name),
                Some(serde_json::json!({ "credentials_version": summary.version })),
            );
            print_line(&format!(
                "stored credentials of {} (version {}, fingerprint {})",
                args.name, summary.version, summary.fingerprint
            ))
        }
        CredentialsCommand::Delete { name } => {
            store.delete_credentials(&name)?;
            audit_cli(&store, "credentials.delete", Some(&name), None);
            print_line(&format!("deleted the credentials of {name}"))
        }
        CredentialsCommand::ImportEnv => {
            // A running `serve` notices the new credentials versions through
            // the store's change counter and drops the stale cached tokens.
            let report = crate::serve::import_environment(&store, CLI_ACTOR)?;
            for (label, names) in [
                ("imported", &report.imported),
                ("unchanged", &report.unchanged),
                (
                    "ignored, the stored refresh token was kept",
                    &report.kept_stored,
                ),
                ("unmatched", &report.unmatched),
                ("missing", &report.missing),
                ("without credentials", &report.without_credentials),
            ] {
                if !names.is_empty() {
                    print_line(&format!("{label}: {}", names.join(", ")))?;
                }
            }
            Ok(())
        }
    }
}

fn token(settings: &Settings, name: &str, force_refresh: bool) -> anyhow::Result<()> {
    let store = bootstrap::open_existing_store(settings)?;
    let datasource = store.get_datasource(name)?;
    let Some(summary) = store.credentials_summary(name)? else {
        let prefix = crate::env_import::env_var_prefix(name);
        bail!("data source {name:?} has no credentials: set {prefix}CLIENT_ID and {prefix}CLIENT_SECRET and run `authcfg credentials import-env`, or run `authcfg credentials set {name}`");
    };
    // The same policy as the server's, checked before anything is sent.
    if let Some(token_url) = &datasource.auth.token_url {
        if let Err(detail) = settings.token_url_policy().check(token_url) {
            bail!("data source {name:?} cannot request a token: {detail}; change the data source's token_url with PATCH /v1/datasources/{name} or the provisioning file");
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (audit_queue, writer) = audit::AuditQueue::new(store.clone());
    let sink = StoreRefreshTokenSink::new(
        store.clone(),
        Arc::new(Snapshot::default()),
        audit_queue.clone(),
    );
    let exchange = Exchange::new(exchange_config(settings), Arc::new(sink))?;

    let authorization = runtime.block_on(async {
        let writer = tokio::spawn(writer);
        let request = AuthorizeRequest {
            datasource: datasource.id,
            auth: &datasource.auth,
            client_id: &summary.client_id,
            credentials_version: summary.version,
            min_valid_for: Duration::ZERO,
            force_refresh,
        };
        let loader_store = store.clone();
        let loader_name = name.to_owned();
        let result = exchange
            .authorize(&request, move || async move {
                let unsealed = loader_store
                    .unseal_credentials(&loader_name)?
                    .ok_or("the credentials were deleted meanwhile")?;
                Ok::<_, authcfg_exchange::BoxError>(LoadedCredentials {
                    credentials: unsealed.credentials,
                    version: unsealed.version,
                })
            })
            .await;
        // The exchange's sink keeps a sender alive, so the writer is stopped
        // after the flush instead of waiting for the queue to close.
        audit_queue.flush().await;
        writer.abort();
        result
    });
    let authorization = authorization
        .map_err(|error| anyhow::anyhow!("cannot get a header for {name:?}: {error}"))?;

    audit_cli(&store, "authorization.issue", Some(name), None);
    print_line(&format!(
        "Authorization: {}",
        authorization.header_value().expose_secret()
    ))
}

fn keys(settings: &Settings, command: KeysCommand) -> anyhow::Result<()> {
    let store = bootstrap::open_existing_store(settings)?;
    match command {
        KeysCommand::Status => print_json(&store.key_status()?),
        KeysCommand::RotateMaster {
            new_key_file,
            generate,
        } => {
            if generate {
                bootstrap::generate_key_file(&new_key_file)?;
            }
            let old = bootstrap::master_key(settings)?;
            let new = MasterKey::KeyFile(new_key_file.clone());
            store.rotate_master_key(&old, &new)?;
            audit_cli(&store, "keys.rotate_master", None, None);
            print_line(&format!(
                "the store is now locked by {}: set master_key_file (AUTHCFG_MASTER_KEY_FILE) to it before the next start, and restart a running `authcfg serve`",
                new_key_file.display()
            ))
        }
        KeysCommand::RotateDataKey => {
            let report = store.rotate_data_key(&mut |progress| {
                tracing::info!(
                    done = progress.done,
                    total = progress.total,
                    "re-encrypting credentials"
                );
            })?;
            audit_cli(
                &store,
                "keys.rotate_data_key",
                None,
                Some(serde_json::json!({
                    "new_key_id": report.new_key_id,
                    "reencrypted": report.reencrypted,
                })),
            );
            print_json(&report)
        }
    }
}

fn api_token(settings: &Settings, command: ApiTokenCommand) -> anyhow::Result<()> {
    let store = bootstrap::open_existing_store(settings)?;
    match command {
        ApiTokenCommand::Create {
            label,
            role,
            datasources,
        } => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Consumer => Role::Consumer,
            };
            if role == Role::Consumer && datasources.is_empty() {
                bail!("a consumer token needs at least one --datasource NAME");
            }
            // A token may be made before its data sources exist, so a missing
            // one is a warning, not an error: it catches a typo in the name.
            let missing = missing_datasources(&store, &datasources)?;
            let (info, value) = store.create_api_token(&label, role, &datasources)?;
            audit_cli(
                &store,
                "api_token.create",
                None,
                Some(
                    serde_json::json!({ "token_id": info.id, "role": role.as_str(), "datasources": info.datasources }),
                ),
            );
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(
                stderr,
                "created API token {} ({}); it is printed once on standard output",
                info.id, info.role
            );
            if !missing.is_empty() {
                let _ = writeln!(stderr, "{}", missing_datasources_warning(&missing));
            }
            print_line(value.expose_secret())
        }
        ApiTokenCommand::List => print_json(&store.list_api_tokens()?),
        ApiTokenCommand::Revoke { id } => {
            if !store.revoke_api_token(&id)? {
                return print_line(&format!(
                    "API token {id} was already revoked; nothing changed"
                ));
            }
            audit_cli(
                &store,
                "api_token.revoke",
                None,
                Some(serde_json::json!({ "token_id": id })),
            );
            print_line(&format!("revoked API token {id}"))
        }
    }
}

/// Returns the names among `names` that no data source has, in the given order.
///
/// # Errors
///
/// Returns the store's error other than "not found".
fn missing_datasources(store: &Store, names: &[String]) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    for name in names {
        match store.get_datasource(name) {
            Ok(_) => {}
            Err(authcfg_store::Error::NotFound { .. }) => missing.push(name.clone()),
            Err(error) => return Err(error.into()),
        }
    }
    Ok(missing)
}

/// Words the warning about data sources a new token names but that do not exist.
fn missing_datasources_warning(missing: &[String]) -> String {
    let names: Vec<String> = missing.iter().map(|name| format!("{name:?}")).collect();
    format!(
        "warning: no data source named {} exists yet; the token will work for it once it is created (check the spelling with `authcfg datasource list`)",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use authcfg_model::{AuthConfig, CreateDataSource};
    use clap::CommandFactory as _;

    #[test]
    fn api_token_create_warns_about_missing_datasources() {
        let (_dir, store) = crate::test_support::open_store();
        store
            .create_datasource(&CreateDataSource {
                name: "crm-prod".to_owned(),
                description: None,
                base_url: None,
                auth: AuthConfig::basic(),
            })
            .unwrap();
        let names = vec![
            "nope".to_owned(),
            "crm-prod".to_owned(),
            "ledger".to_owned(),
        ];

        let missing = missing_datasources(&store, &names).unwrap();
        let warning = missing_datasources_warning(&missing);

        assert_eq!(missing, vec!["nope".to_owned(), "ledger".to_owned()]);
        assert!(warning.contains("\"nope\", \"ledger\""), "{warning}");
        assert!(!warning.contains("crm-prod"), "{warning}");
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn secret_file_strips_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &str)] = &[
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret\n\n", "s3cret\n"),
            ("s3cret", "s3cret"),
        ];

        for (index, (contents, expected)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("secret-{index}"));
            std::fs::write(&path, contents).unwrap();

            let secret = read_secret(Some(&path), "client secret", "--client-secret-file").unwrap();

            assert_eq!(secret.expose_secret(), *expected, "{contents:?}");
        }
    }
}
