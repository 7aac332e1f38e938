//! `authcfg serve`: start-up, the HTTP server and graceful shutdown.
//!
//! Start-up runs in order: open the store (generating the master key on first
//! start), ensure an admin API token, apply the provisioning file, import
//! credentials from the environment, load the in-memory copies, then bind. SIGTERM
//! and SIGINT stop accepting connections and give in-flight requests
//! `shutdown_timeout_secs` to finish; queued audit events are written before
//! the process exits. The signals are handled here rather than by actix-web,
//! because actix-web stops at once on SIGINT; a second SIGINT or SIGTERM
//! during the graceful stop closes the remaining connections at once.

use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use authcfg_model::AuditOutcome;
use authcfg_store::Store;

use crate::audit;
use crate::bootstrap;
use crate::config::Settings;
use crate::state::AppState;

/// Imports credentials from the `AUTHCFG_DS_*` variables of this process,
/// logs and audits the report (variable names only), and returns it.
///
/// # Errors
///
/// Returns the import error, such as two data sources mapping to the same
/// variable prefix.
pub fn import_environment(
    store: &Store,
    actor: &str,
) -> anyhow::Result<crate::env_import::ImportReport> {
    let vars: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| name.starts_with("AUTHCFG_DS_"))
        .collect();
    let report = crate::env_import::import_env(store, &vars)
        .context("cannot import credentials from the environment")?;
    drop(vars);

    tracing::info!(
        imported = ?report.imported,
        unchanged = report.unchanged.len(),
        "imported credentials from the environment"
    );
    if !report.kept_stored.is_empty() {
        // A token endpoint that rotates refresh tokens revokes the old one,
        // so importing the variable again would break the next exchange.
        tracing::warn!(
            variables = ?report.kept_stored,
            "ignored refresh token variables that differ from the stored refresh tokens, which the token endpoint may have rotated: to replace a stored refresh token, use `authcfg credentials set` or PUT /v1/datasources/<name>/credentials, or change the client id or secret together with it"
        );
    }
    if !report.unmatched.is_empty() {
        tracing::warn!(
            variables = ?report.unmatched,
            "environment variables match no data source: check the names or create the data sources"
        );
    }
    if !report.without_credentials.is_empty() {
        tracing::warn!(
            datasources = ?report.without_credentials,
            "data sources still have no credentials: set AUTHCFG_DS_<NAME>_CLIENT_ID and _CLIENT_SECRET"
        );
    }
    if !report.missing.is_empty() {
        tracing::warn!(
            variables = ?report.missing,
            "data sources lack credentials their grant needs: set these variables"
        );
    }
    for changed in &report.changed {
        store.record_audit(&audit::event(
            actor,
            "credentials.import_env",
            Some(&changed.name),
            AuditOutcome::Success,
            Some(serde_json::json!({ "credentials_version": changed.credentials_version })),
        ))?;
    }
    Ok(report)
}

/// Applies the provisioning file, if one is configured, logs and audits the
/// report, and returns the ids of the data sources it changed.
///
/// # Errors
///
/// Returns the provisioning error.
pub fn apply_provisioning(
    settings: &Settings,
    store: &Store,
) -> anyhow::Result<Vec<authcfg_model::DataSourceId>> {
    let Some(path) = &settings.provisioning_file else {
        return Ok(Vec::new());
    };
    let options = crate::provisioning::ProvisionOptions {
        token_url: settings.token_url_policy(),
    };
    let report = crate::provisioning::apply_provisioning_with(store, path, options)
        .with_context(|| format!("cannot apply the provisioning file {}", path.display()))?;

    tracing::info!(
        path = %path.display(),
        created = ?report.created,
        updated = ?report.updated,
        deleted = ?report.deleted,
        unchanged = report.unchanged.len(),
        kept = ?report.kept,
        "applied the provisioning file"
    );
    for (action, names) in [
        ("datasource.create", &report.created),
        ("datasource.update", &report.updated),
        ("datasource.delete", &report.deleted),
    ] {
        for name in names {
            store.record_audit(&audit::event(
                "provisioning",
                action,
                Some(name),
                AuditOutcome::Success,
                None,
            ))?;
        }
    }
    Ok(report.changed_ids)
}

/// Runs the service until SIGTERM or SIGINT.
///
/// # Errors
///
/// Returns an error when start-up fails: the store, the environment import,
/// the provisioning file, or binding the address.
pub fn serve(settings: Settings) -> anyhow::Result<()> {
    let settings = Arc::new(settings);

    let store = bootstrap::open_store(&settings)?;
    bootstrap::ensure_admin_token(&settings, &store)?;
    // Provisioning runs first so that the import finds the data sources it
    // creates. Both run before the exchange exists, so no cached token can be
    // stale yet.
    apply_provisioning(&settings, &store)?;
    import_environment(&store, "system")?;

    let system = actix_web::rt::System::new();
    system.block_on(run(settings, store))
}

async fn run(settings: Arc<Settings>, store: Store) -> anyhow::Result<()> {
    let (state, audit_writer) = AppState::build(Arc::clone(&settings), store)?;
    let state = web::Data::new(state);
    let audit_task = actix_web::rt::spawn(audit_writer);
    let refresher = actix_web::rt::spawn(state.clone().into_inner().run_refresher());

    let body_limit = settings.body_limit_bytes;
    let app_state = state.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .configure(|config| crate::api::configure(config, body_limit))
            .wrap(crate::api::shortcut::CacheHitShortcut)
            .wrap(crate::telemetry::RequestContext)
    })
    .disable_signals()
    .shutdown_timeout(settings.shutdown_timeout.as_secs());
    if settings.workers > 0 {
        server = server.workers(settings.workers);
    }
    let server = server
        .bind(settings.bind)
        .with_context(|| {
            format!(
                "cannot listen on {} (bind, AUTHCFG_BIND): choose a free address and port",
                settings.bind
            )
        })?
        .run();

    tracing::info!(
        bind = %settings.bind,
        data_dir = %settings.data_dir.display(),
        datasources = state.snapshot.len(),
        "authcfg is listening"
    );
    if let Some(hosts) = &settings.token_hosts {
        let listed: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        tracing::info!(
            token_hosts = %listed.join(", "),
            "token URLs may name only the listed hosts"
        );
    }
    // The graceful stop runs inside the server future, which handles no
    // further command until it ends. A forced stop therefore leaves that
    // future behind, and the worker threads end with the process.
    let forced = stop_on_signals(server.handle());
    tokio::select! {
        result = server => result.context("the HTTP server failed")?,
        () = forced => {}
    }

    tracing::info!("stopped accepting requests; writing queued audit events");
    refresher.abort();
    state.touch_tokens().await;
    state.audit.flush().await;
    drop(state);
    audit_task.abort();
    tracing::info!("authcfg stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT and starts the graceful stop of `server`.
/// Returns only when a second signal arrives, so that the caller stops at once.
async fn stop_on_signals(server: actix_web::dev::ServerHandle) {
    let mut signals = match ShutdownSignals::new() {
        Ok(signals) => signals,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM and SIGINT: stop the process with SIGKILL");
            return std::future::pending().await;
        }
    };

    let signal = signals.next().await;
    tracing::info!(
        signal,
        "stopping: no new connections; in-flight requests get shutdown_timeout_secs to finish (send the signal again to stop at once)"
    );
    actix_web::rt::spawn(async move { server.stop(true).await });

    let signal = signals.next().await;
    tracing::warn!(
        signal,
        "second signal: stopping now without waiting for in-flight requests"
    );
}

/// The SIGTERM and SIGINT streams (only SIGINT, through Ctrl-C, off Unix).
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    #[cfg(unix)]
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// Returns the name of the next signal received.
    #[cfg(unix)]
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    /// Returns the name of the next signal received.
    #[cfg(not(unix))]
    async fn next(&mut self) -> &'static str {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        "SIGINT"
    }
}
