//! The shared state of the HTTP service and the background tasks that keep
//! its in-memory copies in step with the store.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
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
use crate::token_url::TokenUrlPolicy;

/// How often the refresher checks the store's change counter.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest time between two passes of the refresher that requests with
/// an unknown API token ask for, so that such requests cost the store at most
/// ten extra reads of its change marker per second.
const RECHECK_GAP: Duration = Duration::from_millis(100);

/// How long a request with an unknown API token waits for the refresher's
/// next pass before it is rejected.
const RECHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How often token last-used times are written to the store.
const TOUCH_INTERVAL: Duration = Duration::from_secs(30);

/// Everything a handler needs, shared by all workers.
#[derive(Debug)]
pub struct AppState {
    /// The validated configuration.
    pub settings: Arc<Settings>,
    /// The database.
    pub store: Store,
    /// The rules every token URL must follow, checked again before each
    /// token request because a data source may predate them.
    pub token_url_policy: TokenUrlPolicy,
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
    /// The store's change counter read before the snapshot and the token
    /// index were first loaded.
    loaded_change_counter: u64,
    /// The store's external change marker read before the first load.
    loaded_change_marker: u64,
    /// Requests for an early pass of the refresher.
    recheck: Recheck,
}

/// The refresher's passes, counted so that a request with an unknown API
/// token can ask for a pass and wait until one that started after its request
/// has reloaded the token index.
#[derive(Debug)]
struct Recheck {
    /// Asks the refresher for a pass now, at most one per [`RECHECK_GAP`].
    requested: tokio::sync::Notify,
    /// The number of passes started.
    started: AtomicU64,
    /// The number of the last pass that finished with the token index.
    tokens_checked: tokio::sync::watch::Sender<u64>,
}

impl Default for Recheck {
    fn default() -> Self {
        Self {
            requested: tokio::sync::Notify::new(),
            started: AtomicU64::new(0),
            tokens_checked: tokio::sync::watch::channel(0).0,
        }
    }
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

/// Logs a warning for each stored data source whose token URL the policy
/// rejects, such as one created before `token_hosts` was set. Its token
/// requests fail until the data source or the setting changes.
fn warn_of_rejected_token_urls(policy: &TokenUrlPolicy, entries: &snapshot::Entries) {
    for (name, entry) in entries.iter() {
        if let Some(token_url) = &entry.auth().token_url {
            if let Err(detail) = policy.check(token_url) {
                tracing::warn!(
                    datasource = name,
                    "token requests of this data source will be rejected: {detail}"
                );
            }
        }
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
        let loaded_change_counter = store.change_counter()?;
        let loaded_change_marker = store.external_change_marker()?;

        let token_url_policy = settings.token_url_policy();
        let entries = snapshot::load_entries(&store)?;
        warn_of_rejected_token_urls(&token_url_policy, &entries);
        let snapshot = Arc::new(Snapshot::default());
        let generation = snapshot.generation();
        let _ = snapshot.replace_if_unchanged(generation, entries);

        let tokens = Arc::new(TokenIndex::default());
        tokens.replace(store.api_token_hashes()?);

        let sink = StoreRefreshTokenSink::new(store.clone(), Arc::clone(&snapshot), audit.clone());
        let exchange = Exchange::new(exchange_config(&settings), Arc::new(sink))?;

        let state = Self {
            settings,
            store,
            token_url_policy,
            exchange,
            tokens,
            snapshot,
            http_metrics: HttpMetrics::default(),
            audit,
            loaded_change_counter,
            loaded_change_marker,
            recheck: Recheck::default(),
        };
        Ok((state, writer))
    }

    /// Reads the store's change counter, or logs why it cannot.
    async fn read_change_counter(&self) -> Option<u64> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.change_counter()).await {
            Ok(Ok(counter)) => Some(counter),
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "cannot read the store's change counter; retrying");
                None
            }
            Err(error) => {
                tracing::warn!(error = %error, "the change counter task failed; retrying");
                None
            }
        }
    }

    /// Reads the store's external change marker, or logs why it cannot.
    async fn read_change_marker(&self) -> Option<u64> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.external_change_marker()).await {
            Ok(Ok(marker)) => Some(marker),
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "cannot read the store's external change marker; retrying");
                None
            }
            Err(error) => {
                tracing::warn!(error = %error, "the external change marker task failed; retrying");
                None
            }
        }
    }

    /// Reloads the API token index. Returns false when the store failed.
    async fn reload_tokens(&self) -> bool {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.api_token_hashes()).await {
            Ok(Ok(hashes)) => {
                self.tokens.replace(hashes);
                true
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "cannot reload the API tokens; retrying");
                false
            }
            Err(error) => {
                tracing::warn!(error = %error, "the API token reload task failed; retrying");
                false
            }
        }
    }

    /// Reloads the snapshot and invalidates the cached tokens of data sources
    /// that changed. Returns false when the store failed or a write through
    /// this process raced with the reload, so that the caller tries again.
    async fn reload_datasources(&self) -> bool {
        let generation = self.snapshot.generation();
        let store = self.store.clone();
        let entries =
            match tokio::task::spawn_blocking(move || snapshot::load_entries(&store)).await {
                Ok(Ok(entries)) => entries,
                Ok(Err(error)) => {
                    tracing::warn!(error = %error, "cannot reload the data sources; retrying");
                    return false;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "the data source reload task failed; retrying");
                    return false;
                }
            };

        match self.snapshot.replace_if_unchanged(generation, entries) {
            Some(changed) => {
                for id in &changed {
                    self.exchange.invalidate(*id);
                }
                tracing::debug!(changed = changed.len(), "reloaded the data sources");
                true
            }
            None => false,
        }
    }

    /// Runs the refresher until the process stops.
    ///
    /// Writes through this process update the in-memory copies at once, so
    /// the refresher only looks for the writes of other processes, such as
    /// the command line. Every second it reads the store's external change
    /// marker, which those writes move and this process's own writes do not.
    /// When it moved, the refresher compares the store's change counter with
    /// the last one seen, and on a change reloads the API token index at
    /// once, so that a revocation by the command line takes effect within
    /// about a second. The data source snapshot is reloaded too, after a
    /// pause of four times the previous reload's duration. So a store with
    /// many data sources does not spend most of its time reloading while
    /// another process writes to it. Every 30 seconds the
    /// refresher writes the token last-used times.
    pub async fn run_refresher(self: Arc<Self>) {
        let mut tokens_seen = Some(self.loaded_change_counter);
        let mut datasources_seen = Some(self.loaded_change_counter);
        let mut marker_seen = Some(self.loaded_change_marker);
        // True while a change by another process is not reloaded yet.
        let mut pending = false;
        let mut next_datasource_reload = tokio::time::Instant::now();
        let mut last_touch = tokio::time::Instant::now();
        let mut ticker = tokio::time::interval(REFRESH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_pass = tokio::time::Instant::now();

        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = self.recheck.requested.notified() => {
                    tokio::time::sleep_until(last_pass + RECHECK_GAP).await;
                }
            }
            last_pass = tokio::time::Instant::now();
            let pass = self.recheck.started.fetch_add(1, Ordering::SeqCst) + 1;

            let marker = self.read_change_marker().await;
            if marker.is_none() || marker != marker_seen {
                marker_seen = marker;
                pending = true;
            }

            // The counter is read before the reloads, so that a change made
            // while they run moves it again and triggers the next reload.
            if !pending {
                self.recheck.tokens_checked.send_replace(pass);
            } else if let Some(counter) = self.read_change_counter().await {
                if tokens_seen != Some(counter) && self.reload_tokens().await {
                    tokens_seen = Some(counter);
                }
                // Waiting requests go on now, because a data source reload may take long.
                self.recheck.tokens_checked.send_replace(pass);

                let now = tokio::time::Instant::now();
                if datasources_seen != Some(counter) && now >= next_datasource_reload {
                    let started = std::time::Instant::now();
                    if self.reload_datasources().await {
                        datasources_seen = Some(counter);
                    }
                    next_datasource_reload = now + started.elapsed() * 4;
                }
                pending = tokens_seen != Some(counter) || datasources_seen != Some(counter);
            }

            if last_touch.elapsed() >= TOUCH_INTERVAL {
                last_touch = tokio::time::Instant::now();
                self.touch_tokens().await;
            }
        }
    }

    /// Waits until a pass of the refresher that starts after this call has
    /// looked for new API tokens, or until [`RECHECK_TIMEOUT`]. A token
    /// created by another process is then in the index, so that it works at
    /// once rather than after the next regular pass.
    pub async fn recheck_tokens(&self) {
        let mut checked = self.recheck.tokens_checked.subscribe();
        let pass = self.recheck.started.load(Ordering::SeqCst) + 1;
        self.recheck.requested.notify_one();
        let wait = checked.wait_for(|checked| *checked >= pass);
        if tokio::time::timeout(RECHECK_TIMEOUT, wait).await.is_err() {
            tracing::debug!("no pass of the refresher looked for new API tokens in time");
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
