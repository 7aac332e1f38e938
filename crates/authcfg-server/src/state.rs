//! The shared state of the HTTP service and the background tasks that keep
//! its in-memory copies in step with the store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use authcfg_exchange::{BoxError, Exchange, ExchangeConfig, RefreshTokenSink};
use authcfg_model::{AuditOutcome, DataSourceId, SecretString};
use authcfg_store::Store;

use crate::access::TokenIndex;
use crate::audit::{self, AuditQueue};
use crate::config::Settings;
use crate::metrics::HttpMetrics;
use crate::snapshot::{self, Snapshot};

/// How often the refresher checks the store's change counter.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// How often token last-used times are written to the store.
const TOUCH_INTERVAL: Duration = Duration::from_secs(30);

/// Everything a handler needs, shared by all workers.
#[derive(Debug)]
pub struct AppState {
    /// The validated configuration.
    pub settings: Arc<Settings>,
    /// The database.
    pub store: Store,
    /// The token exchange and its cache.
    pub exchange: Exchange,
    /// The active API tokens.
    pub tokens: Arc<TokenIndex>,
    /// The data sources and their credentials versions.
    pub snapshot: Arc<Snapshot>,
    /// Request counters.
    pub http_metrics: HttpMetrics,
    /// The audit queue.
    pub audit: AuditQueue,
}

/// Persists refresh tokens that the provider rotated, and records the new
/// credentials version in the snapshot.
#[derive(Debug)]
pub struct StoreRefreshTokenSink {
    store: Store,
    snapshot: Arc<Snapshot>,
    audit: AuditQueue,
}

impl StoreRefreshTokenSink {
    /// Creates a sink that writes through `store`.
    pub fn new(store: Store, snapshot: Arc<Snapshot>, audit: AuditQueue) -> Self {
        Self {
            store,
            snapshot,
            audit,
        }
    }
}

impl RefreshTokenSink for StoreRefreshTokenSink {
    fn persist_refresh_token<'a>(
        &'a self,
        datasource: DataSourceId,
        expected_credentials_version: u64,
        token: &'a SecretString,
    ) -> Pin<Box<dyn Future<Output = Result<u64, BoxError>> + Send + 'a>> {
        let store = self.store.clone();
        let token = token.duplicate();
        Box::pin(async move {
            let version = tokio::task::spawn_blocking(move || {
                store.rotate_refresh_token(datasource, expected_credentials_version, &token)
            })
            .await
            .map_err(BoxError::from)?
            .map_err(BoxError::from)?;

            self.snapshot.set_credentials_version(datasource, version);
            self.audit.record(audit::event(
                "system",
                "credentials.rotate_refresh_token",
                None,
                AuditOutcome::Success,
                Some(serde_json::json!({
                    "datasource_id": datasource.to_string(),
                    "credentials_version": version,
                })),
            ));
            tracing::info!(datasource_id = %datasource, credentials_version = version, "stored a rotated refresh token");
            Ok(version)
        })
    }
}

/// Returns the exchange settings that the configuration selects.
pub fn exchange_config(settings: &Settings) -> ExchangeConfig {
    ExchangeConfig {
        connect_timeout: settings.token_connect_timeout,
        request_timeout: settings.token_request_timeout,
        refresh_margin: settings.refresh_margin,
        default_lifetime: settings.default_token_lifetime,
        ..ExchangeConfig::default()
    }
}

impl AppState {
    /// Loads the token index and the snapshot, and builds the exchange.
    ///
    /// Returns the state and the audit writer future, which the caller spawns.
    ///
    /// # Errors
    ///
    /// Returns the store's error, or the exchange's when its HTTP client cannot be built.
    pub fn build(
        settings: Arc<Settings>,
        store: Store,
    ) -> anyhow::Result<(Self, impl Future<Output = ()>)> {
        let (audit, writer) = AuditQueue::new(store.clone());

        let snapshot = Arc::new(Snapshot::default());
        let generation = snapshot.generation();
        let _ = snapshot.replace_if_unchanged(generation, snapshot::load_entries(&store)?);

        let tokens = Arc::new(TokenIndex::default());
        tokens.replace(store.api_token_hashes()?);

        let sink = StoreRefreshTokenSink::new(store.clone(), Arc::clone(&snapshot), audit.clone());
        let exchange = Exchange::new(exchange_config(&settings), Arc::new(sink))?;

        let state = Self {
            settings,
            store,
            exchange,
            tokens,
            snapshot,
            http_metrics: HttpMetrics::default(),
            audit,
        };
        Ok((state, writer))
    }

    /// Reloads the token index and the snapshot when the store changed, and
    /// invalidates the cached tokens of data sources that changed.
    ///
    /// `seen` is the change counter of the last reload; returns the new one.
    pub async fn refresh_if_changed(&self, seen: Option<u64>) -> Option<u64> {
        let store = self.store.clone();
        let counter = match tokio::task::spawn_blocking(move || store.change_counter()).await {
            Ok(Ok(counter)) => counter,
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "cannot read the store's change counter; retrying");
                return seen;
            }
            Err(error) => {
                tracing::warn!(error = %error, "the change counter task failed; retrying");
                return seen;
            }
        };
        if seen == Some(counter) {
            return seen;
        }

        let generation = self.snapshot.generation();
        let store = self.store.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let hashes = store.api_token_hashes()?;
            let entries = snapshot::load_entries(&store)?;
            Ok::<_, authcfg_store::Error>((hashes, entries))
        })
        .await;
        let (hashes, entries) = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "cannot reload data sources and API tokens; retrying");
                return seen;
            }
            Err(error) => {
                tracing::warn!(error = %error, "the reload task failed; retrying");
                return seen;
            }
        };

        self.tokens.replace(hashes);
        match self.snapshot.replace_if_unchanged(generation, entries) {
            Some(changed) => {
                for id in &changed {
                    self.exchange.invalidate(*id);
                }
                tracing::debug!(
                    change_counter = counter,
                    changed = changed.len(),
                    "reloaded data sources and API tokens"
                );
                Some(counter)
            }
            // A write through this process raced with the reload; try again
            // on the next tick so that the newer data wins.
            None => seen,
        }
    }

    /// Runs the refresher until the process stops: every second it reloads
    /// what changed, and every 30 seconds it writes token last-used times.
    pub async fn run_refresher(self: Arc<Self>) {
        let mut seen = self.refresh_if_changed(None).await;
        let mut ticker = tokio::time::interval(REFRESH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_touch = tokio::time::Instant::now();
        loop {
            ticker.tick().await;
            seen = self.refresh_if_changed(seen).await;

            if last_touch.elapsed() >= TOUCH_INTERVAL {
                last_touch = tokio::time::Instant::now();
                self.touch_tokens().await;
            }
        }
    }

    /// Writes the last-used times of the tokens used since the previous call.
    pub async fn touch_tokens(&self) {
        let used = self.tokens.take_usage();
        if used.is_empty() {
            return;
        }
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.touch_api_tokens(&used)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(error = %error, "cannot record API token use"),
            Err(error) => tracing::warn!(error = %error, "the token use task failed"),
        }
    }
}
