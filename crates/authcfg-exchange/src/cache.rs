//! The token cache: one slot per data source, keyed by everything that shapes
//! a token, with single flight and back-off state.
//!
//! A slot is found by data source id, then its [`CacheKey`] is compared with
//! the request field by field without allocating. A slot whose key differs is
//! replaced, so two configs that differ only in scope or audience never share a
//! token. Locks are held only for a few field reads: no lock is held across
//! an await.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use authcfg_model::{
    AuthConfig, AuthMethod, ClientAuthMethod, DataSourceId, GrantType, SecretString,
};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::{Authorization, Error};

/// The part of the auth config that shapes a token. Slots with equal configs
/// share one copy of it (see [`Cache::share_config`]).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConfigKey {
    method: AuthMethod,
    token_url: Option<Box<str>>,
    grant_type: Option<GrantType>,
    client_auth: ClientAuthMethod,
    /// Scope tokens, sorted and without duplicates: a scope is a set.
    scope: Box<[Box<str>]>,
    token_params: BTreeMap<String, String>,
}

impl ConfigKey {
    fn new(auth: &AuthConfig) -> Self {
        let mut scope: Vec<Box<str>> = auth.scope_tokens().into_iter().map(Box::from).collect();
        scope.sort_unstable();
        scope.dedup();
        Self {
            method: auth.method,
            token_url: auth.token_url.as_deref().map(Box::from),
            grant_type: auth.grant_type,
            client_auth: auth.client_auth_or_default(),
            scope: scope.into_boxed_slice(),
            token_params: auth.token_params.clone(),
        }
    }

    /// Compares the key with `auth` without allocating.
    fn matches(&self, auth: &AuthConfig) -> bool {
        self.method == auth.method
            && self.token_url.as_deref() == auth.token_url.as_deref()
            && self.grant_type == auth.grant_type
            && self.client_auth == auth.client_auth_or_default()
            && self.token_params == auth.token_params
            && self.scope_matches(auth.scope.as_deref().unwrap_or(""))
    }

    /// Compares the scope as a set: every configured token is in the key, and
    /// every key token is configured.
    fn scope_matches(&self, configured: &str) -> bool {
        let mut tokens = configured.split(' ').filter(|token| !token.is_empty());
        if !tokens.all(|token| {
            self.scope
                .binary_search_by(|key| (**key).cmp(token))
                .is_ok()
        }) {
            return false;
        }
        self.scope
            .iter()
            .all(|key| configured.split(' ').any(|token| token == &**key))
    }
}

/// Everything that shapes a token: two requests share a token only when all of
/// it is equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheKey {
    config: Arc<ConfigKey>,
    /// A hash of the client id with a random key of this process, which
    /// takes 8 bytes instead of an allocation per data source. The credentials
    /// version changes with every change of the credentials, so the hash
    /// only guards against a caller that reuses a version. Two client ids
    /// have the same hash with a probability of about 2^-64.
    client_id_hash: u64,
    credentials_version: u64,
}

impl CacheKey {
    pub(crate) fn new(auth: &AuthConfig, client_id: &str, credentials_version: u64) -> Self {
        Self {
            config: Arc::new(ConfigKey::new(auth)),
            client_id_hash: hash_client_id(client_id),
            credentials_version,
        }
    }

    /// Compares the config part of the key with `auth` and `client_id`
    /// without allocating.
    fn matches_config(&self, auth: &AuthConfig, client_id: &str) -> bool {
        self.client_id_hash == hash_client_id(client_id) && self.config.matches(auth)
    }
}

/// Returns the hash of `client_id` under this process's random key (SipHash).
fn hash_client_id(client_id: &str) -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new).hash_one(client_id)
}

/// The authentication scheme of a header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// RFC 7617 Basic.
    Basic,
    /// RFC 6750 Bearer.
    Bearer,
}

impl Scheme {
    /// Returns the scheme name as the header writes it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Basic => "Basic",
            Scheme::Bearer => "Bearer",
        }
    }
}

/// A granted scope, shared by the tokens that were granted the same one.
///
/// A thin pointer, so that a [`CachedToken`] fits 48 bytes.
pub(crate) type SharedScope = Arc<Box<str>>;

/// A shared scope in the set of [`Cache::share_scope`], looked up by its text.
struct ScopeKey(SharedScope);

impl PartialEq for ScopeKey {
    fn eq(&self, other: &Self) -> bool {
        **self.0 == **other.0
    }
}

impl Eq for ScopeKey {}

impl std::hash::Hash for ScopeKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Hashes as the `str`, which `Borrow` requires.
        (**self.0).hash(state);
    }
}

impl std::borrow::Borrow<str> for ScopeKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A cached header value with its validity. Every [`Authorization`] handed
/// out shares it, so that a cache hit copies no secret.
///
/// The header value is kept without its scheme, so that a token of a common
/// length such as 1024 bytes fills an allocation of that size exactly. The
/// rest fits 48 bytes (a test checks it), because a server keeps one per
/// data source: both instants take 8 bytes instead of 16.
#[derive(Debug)]
pub(crate) struct CachedToken {
    /// The part of the header value after the scheme and a space: the access
    /// token, or the Base64 user-id and password.
    pub(crate) token: SecretString,
    /// The last instant the token is handed out; [`Deadline::NEVER`] for a
    /// token that does not expire (Basic).
    pub(crate) valid_until: Deadline,
    /// The wall-clock time the token expires, for callers to see.
    pub(crate) expires_at: WallTime,
    pub(crate) scope: Option<SharedScope>,
    /// How long before `valid_until` one caller starts refreshing the token,
    /// in whole seconds, rounded up (see [`CachedToken::lead_secs`]).
    pub(crate) refresh_lead_secs: u32,
    pub(crate) scheme: Scheme,
    pub(crate) lifetime_assumed: bool,
    /// False for a token that is used once and never cached (`expires_in` 0).
    pub(crate) cacheable: bool,
}

impl CachedToken {
    /// Returns true when the token is still valid for `min_valid_for` after `now`.
    pub(crate) fn valid_for(&self, now: Instant, min_valid_for: Duration) -> bool {
        if self.valid_until == Deadline::NEVER {
            return true;
        }
        now.checked_add(min_valid_for)
            .is_some_and(|needed| Deadline::from_instant(needed) < self.valid_until)
    }

    /// Returns true once the token should be refreshed ahead of expiry.
    pub(crate) fn wants_refresh(&self, now: Instant) -> bool {
        if self.valid_until == Deadline::NEVER {
            return false;
        }
        let lead_nanos = i64::from(self.refresh_lead_secs) * 1_000_000_000;
        Deadline::from_instant(now).0 >= self.valid_until.0.saturating_sub(lead_nanos)
    }

    /// Returns the last instant the token is handed out, or `None` when it
    /// does not expire.
    pub(crate) fn valid_until(&self) -> Option<Instant> {
        self.valid_until.to_instant()
    }

    /// Converts a refresh lead into whole seconds, rounded up, so that the
    /// refresh starts at most a second early and never late. A `u32` covers
    /// 136 years, far beyond the longest lifetime the exchange accepts.
    pub(crate) fn lead_secs(lead: Duration) -> u32 {
        let secs = lead
            .as_secs()
            .saturating_add(u64::from(lead.subsec_nanos() > 0));
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    pub(crate) fn to_authorization(self: &Arc<Self>) -> Authorization {
        Authorization::new(Arc::clone(self))
    }
}

/// A monotonic instant in 8 bytes: signed nanoseconds from an instant of
/// this process, which covers 292 years either side of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline(i64);

impl Deadline {
    /// A deadline that never passes.
    pub(crate) const NEVER: Deadline = Deadline(i64::MAX);

    /// Returns the instant that deadlines count from: the first time one is made.
    fn epoch() -> Instant {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    /// Converts `instant`, saturating 292 years from the epoch, so that a
    /// later instant becomes [`Deadline::NEVER`].
    pub(crate) fn from_instant(instant: Instant) -> Self {
        let epoch = Self::epoch();
        let saturate = |duration: Duration| i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX);
        match instant.checked_duration_since(epoch) {
            Some(after) => Deadline(saturate(after)),
            None => Deadline(-saturate(epoch.duration_since(instant))),
        }
    }

    /// Converts back to an instant; `None` for [`Deadline::NEVER`].
    pub(crate) fn to_instant(self) -> Option<Instant> {
        if self == Deadline::NEVER {
            return None;
        }
        let epoch = Self::epoch();
        let offset = Duration::from_nanos(self.0.unsigned_abs());
        if self.0 >= 0 {
            epoch.checked_add(offset)
        } else {
            epoch.checked_sub(offset)
        }
    }
}

/// A UTC wall-clock time in 8 bytes, as nanoseconds since the Unix epoch,
/// which cover the years 1678 to 2262.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WallTime(i64);

impl WallTime {
    /// No time.
    pub(crate) const NONE: WallTime = WallTime(i64::MIN);

    /// Converts `time`; a time outside the range becomes [`WallTime::NONE`].
    pub(crate) fn new(time: OffsetDateTime) -> Self {
        i64::try_from(time.unix_timestamp_nanos())
            .ok()
            .filter(|nanos| *nanos != i64::MIN)
            .map_or(WallTime::NONE, WallTime)
    }

    /// Converts back to a UTC date and time; `None` for [`WallTime::NONE`].
    pub(crate) fn get(self) -> Option<OffsetDateTime> {
        if self == WallTime::NONE {
            return None;
        }
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0)).ok()
    }
}

/// The result of a flight, shared by every caller that waited for it.
pub(crate) type FlightResult = Result<Arc<CachedToken>, Error>;

/// A token request in progress.
pub(crate) struct Flight {
    id: u64,
    receiver: watch::Receiver<Option<FlightResult>>,
}

/// The back-off after failed token requests.
pub(crate) struct Backoff {
    pub(crate) until: Instant,
    pub(crate) cause: Error,
    /// Failed token requests in a row, for the exponential back-off.
    pub(crate) failures: u32,
}

/// The mutable state of one slot.
#[derive(Default)]
pub(crate) struct SlotState {
    pub(crate) token: Option<Arc<CachedToken>>,
    /// The flight and the back-off, boxed together: both are rare, and a
    /// slot exists for every data source. `None` when both are.
    rare: Option<Box<RareState>>,
}

/// The parts of a slot's state that exist only around token requests.
#[derive(Default)]
struct RareState {
    flight: Option<Flight>,
    backoff: Option<Backoff>,
}

impl SlotState {
    /// Returns the token request in progress.
    pub(crate) fn flight(&self) -> Option<&Flight> {
        self.rare.as_ref()?.flight.as_ref()
    }

    /// Returns the back-off after the last failures, which may have ended.
    pub(crate) fn backoff(&self) -> Option<&Backoff> {
        self.rare.as_ref()?.backoff.as_ref()
    }

    /// Returns the number of failed token requests in a row.
    pub(crate) fn failures(&self) -> u32 {
        self.backoff().map_or(0, |backoff| backoff.failures)
    }

    pub(crate) fn set_flight(&mut self, flight: Option<Flight>) {
        self.update_rare(|rare| rare.flight = flight);
    }

    pub(crate) fn set_backoff(&mut self, backoff: Option<Backoff>) {
        self.update_rare(|rare| rare.backoff = backoff);
    }

    /// Changes the rare state, and frees its box when nothing is left in it.
    fn update_rare(&mut self, change: impl FnOnce(&mut RareState)) {
        let rare = self.rare.get_or_insert_with(Box::default);
        change(rare);
        if rare.flight.is_none() && rare.backoff.is_none() {
            self.rare = None;
        }
    }
}

/// The cache entry of one data source.
pub(crate) struct Slot {
    pub(crate) key: CacheKey,
    /// Cache hits take the read lock, which they share with each other. The
    /// lock is `parking_lot`'s, a word without a poison flag, so that a slot
    /// fits 48 bytes (a test checks it).
    state: parking_lot::RwLock<SlotState>,
}

impl Slot {
    pub(crate) fn new(key: CacheKey) -> Self {
        Self {
            key,
            state: parking_lot::RwLock::new(SlotState::default()),
        }
    }

    pub(crate) fn with_token(key: CacheKey, token: Arc<CachedToken>) -> Self {
        Self {
            key,
            state: parking_lot::RwLock::new(SlotState {
                token: Some(token),
                ..SlotState::default()
            }),
        }
    }

    /// Returns true when this slot's token may serve a request with this
    /// config, client id and credentials version.
    ///
    /// A slot of a newer credentials version serves a request that names an
    /// older one: versions only grow, so the request read a stale version, and
    /// the newer token (after a refresh token rotation, say) is the right one.
    fn serves(&self, auth: &AuthConfig, client_id: &str, credentials_version: u64) -> bool {
        self.key.credentials_version >= credentials_version
            && self.key.matches_config(auth, client_id)
    }

    /// Locks the state for a change.
    pub(crate) fn lock(&self) -> parking_lot::RwLockWriteGuard<'_, SlotState> {
        self.state.write()
    }

    /// Locks the state for reading, shared with other readers.
    pub(crate) fn read(&self) -> parking_lot::RwLockReadGuard<'_, SlotState> {
        self.state.read()
    }
}

/// The cache of all data sources.
#[derive(Default)]
pub(crate) struct Cache {
    slots: RwLock<HashMap<DataSourceId, Arc<Slot>>>,
    /// One copy of each distinct config that a slot uses. Locked after
    /// `slots`, never before.
    configs: Mutex<HashSet<Arc<ConfigKey>>>,
    /// One copy of each distinct granted scope. Held while no other lock
    /// of the cache is.
    scopes: Mutex<HashSet<ScopeKey>>,
    next_flight: AtomicU64,
}

impl Cache {
    /// Returns the slot of `datasource` if it exists and serves this config,
    /// client id and credentials version, without creating or replacing one.
    pub(crate) fn find(
        &self,
        datasource: DataSourceId,
        auth: &AuthConfig,
        client_id: &str,
        credentials_version: u64,
    ) -> Option<Arc<Slot>> {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        slots
            .get(&datasource)
            .filter(|slot| slot.serves(auth, client_id, credentials_version))
            .cloned()
    }

    /// Returns the slot of `datasource` for this config, client id and
    /// credentials version, replacing a slot that does not serve them.
    pub(crate) fn slot(
        &self,
        datasource: DataSourceId,
        auth: &AuthConfig,
        client_id: &str,
        credentials_version: u64,
    ) -> Arc<Slot> {
        let usable = |slot: &Slot| slot.serves(auth, client_id, credentials_version);

        {
            let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = slots.get(&datasource) {
                if usable(slot) {
                    return Arc::clone(slot);
                }
            }
        }

        let key = CacheKey::new(auth, client_id, credentials_version);
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        match slots.get(&datasource) {
            Some(slot) if usable(slot) => Arc::clone(slot),
            _ => {
                let key = self.share_config(key, slots.len());
                let slot = Arc::new(Slot::new(key));
                slots.insert(datasource, Arc::clone(&slot));
                slot
            }
        }
    }

    /// Installs `replacement` for `datasource` if `current` is still its slot.
    /// An invalidation or a config change in the meantime wins.
    ///
    /// NOTE: a caller that names the rotated credentials version before this
    /// runs replaces `current` with an empty slot, so the rotated token is not
    /// installed and that caller sends one more token request.
    pub(crate) fn replace(
        &self,
        datasource: DataSourceId,
        current: &Arc<Slot>,
        key: CacheKey,
        token: Arc<CachedToken>,
    ) {
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        if slots
            .get(&datasource)
            .is_some_and(|slot| Arc::ptr_eq(slot, current))
        {
            let key = self.share_config(key, slots.len());
            slots.insert(datasource, Arc::new(Slot::with_token(key, token)));
        }
    }

    /// Returns `key` with the shared copy of its config, adding the config
    /// when no slot uses an equal one. `slots` is the number of slots, which
    /// bounds the number of configs in use: when the set contains more than
    /// twice as many, the configs no slot uses any more are dropped.
    fn share_config(&self, mut key: CacheKey, slots: usize) -> CacheKey {
        let mut configs = self.configs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = configs.get(&*key.config) {
            key.config = Arc::clone(shared);
            return key;
        }
        if configs.len() > 2 * slots + 16 {
            configs.retain(|config| Arc::strong_count(config) > 1);
        }
        configs.insert(Arc::clone(&key.config));
        key
    }

    /// Returns the shared copy of a granted scope, adding it when it is new.
    /// When the set contains more than `2 × slots + 16` scopes, the scopes no
    /// token uses any more are dropped first.
    ///
    /// NOTE: a scope that only one token has costs a shared allocation and a
    /// set entry, about 40 bytes more than a copy of its own would. Sharing
    /// pays off where data sources are granted the same scopes.
    pub(crate) fn share_scope(&self, scope: &str) -> SharedScope {
        // Read before `scopes` is locked, so that no two cache locks are
        // ever held together.
        let slots = self
            .slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        let mut scopes = self.scopes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = scopes.get(scope) {
            return Arc::clone(&shared.0);
        }
        if scopes.len() > 2 * slots + 16 {
            scopes.retain(|shared| Arc::strong_count(&shared.0) > 1);
        }
        let shared: SharedScope = Arc::new(Box::from(scope));
        scopes.insert(ScopeKey(Arc::clone(&shared)));
        shared
    }

    /// Drops the slot of `datasource`. A flight in progress still reports to
    /// its callers, but its result is not cached.
    pub(crate) fn remove(&self, datasource: DataSourceId) {
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        slots.remove(&datasource);
    }

    /// Starts a flight on `slot`, whose state the caller holds locked.
    pub(crate) fn start_flight(&self, slot: &Arc<Slot>, state: &mut SlotState) -> FlightGuard {
        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = watch::channel(None);
        state.set_flight(Some(Flight { id, receiver }));
        FlightGuard {
            slot: Arc::clone(slot),
            id,
            sender: Some(sender),
        }
    }
}

/// Returns a receiver of the flight in progress on `state`, if any.
pub(crate) fn join_flight(state: &SlotState) -> Option<watch::Receiver<Option<FlightResult>>> {
    state.flight().map(|flight| flight.receiver.clone())
}

/// Waits for a flight's result. `None` means its leader was cancelled before
/// it finished, and the caller should try again.
pub(crate) async fn wait_for_flight(
    mut receiver: watch::Receiver<Option<FlightResult>>,
) -> Option<FlightResult> {
    let result = receiver.wait_for(Option::is_some).await.ok()?;
    result.as_ref().cloned()
}

/// Ownership of a flight. Finishing it publishes the result; dropping it
/// unfinished (the leader's future was cancelled) clears the flight, so a
/// waiting caller takes over.
pub(crate) struct FlightGuard {
    slot: Arc<Slot>,
    id: u64,
    sender: Option<watch::Sender<Option<FlightResult>>>,
}

impl FlightGuard {
    /// Clears the flight from `state` and publishes `result` to the waiters.
    /// The caller holds `state` locked, so that a new caller sees the updated
    /// token and back-off together with the cleared flight.
    pub(crate) fn finish(mut self, state: &mut SlotState, result: FlightResult) {
        Self::clear(state, self.id);
        if let Some(sender) = self.sender.take() {
            // A send without receivers is fine, because the result is cached or
            // returned anyway.
            let _ = sender.send(Some(result));
        }
    }

    pub(crate) fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }

    fn clear(state: &mut SlotState, id: u64) {
        if state.flight().is_some_and(|flight| flight.id == id) {
            state.set_flight(None);
        }
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if self.sender.is_some() {
            let mut state = self.slot.lock();
            Self::clear(&mut state, self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(scope: Option<&str>) -> AuthConfig {
        let mut auth = AuthConfig::bearer(
            "https://login.example.com/token",
            GrantType::ClientCredentials,
        );
        auth.scope = scope.map(str::to_owned);
        auth
    }

    #[test]
    fn equal_configs_share_one_copy() {
        let cache = Cache::default();
        let id = |n: u128| DataSourceId(uuid::Uuid::from_u128(n));

        let first = cache.slot(id(1), &auth(Some("a b")), "client-1", 1);
        let second = cache.slot(id(2), &auth(Some("b a")), "client-2", 1);
        let other = cache.slot(id(3), &auth(Some("c")), "client-1", 1);

        assert!(Arc::ptr_eq(&first.key.config, &second.key.config));
        assert!(!Arc::ptr_eq(&first.key.config, &other.key.config));
        assert_eq!(cache.configs.lock().unwrap().len(), 2);
    }

    #[test]
    fn unused_configs_are_dropped() {
        let cache = Cache::default();
        let id = |n: u128| DataSourceId(uuid::Uuid::from_u128(n));

        // One data source whose scope changes 100 times leaves one slot, and
        // the configs of the replaced slots are dropped as they pile up.
        for round in 0..100 {
            let slot = cache.slot(id(1), &auth(Some(&format!("scope-{round}"))), "demo", 1);
            drop(slot);
        }

        assert_eq!(cache.slots.read().unwrap().len(), 1);
        // At most twice the slots plus 16 before a purge, and the one added after it.
        assert!(cache.configs.lock().unwrap().len() <= 2 + 16 + 1);
    }

    #[test]
    fn key_matches_scope_as_set() {
        let key = CacheKey::new(&auth(Some("b a")), "demo", 1);
        let cases = [
            (Some("a b"), true),
            (Some("b a"), true),
            (Some("a  b"), true),
            (Some("a"), false),
            (Some("a b c"), false),
            (None, false),
        ];
        for (scope, expected) in cases {
            assert_eq!(
                key.matches_config(&auth(scope), "demo"),
                expected,
                "{scope:?}"
            );
        }
    }

    #[test]
    fn key_differs_by_params_and_client() {
        let key = CacheKey::new(&auth(None), "demo", 1);
        let mut with_audience = auth(None);
        with_audience
            .token_params
            .insert("audience".to_owned(), "https://a.example".to_owned());
        assert!(!key.matches_config(&with_audience, "demo"));
        assert!(!key.matches_config(&auth(None), "other"));
        assert!(key.matches_config(&auth(None), "demo"));
    }

    #[test]
    fn slot_is_replaced_when_config_changes() {
        let cache = Cache::default();
        let id = DataSourceId(uuid_from(7));
        let first = cache.slot(id, &auth(Some("a")), "demo", 1);
        let same = cache.slot(id, &auth(Some("a")), "demo", 1);
        let other_scope = cache.slot(id, &auth(Some("b")), "demo", 1);
        assert!(Arc::ptr_eq(&first, &same));
        assert!(!Arc::ptr_eq(&first, &other_scope));
    }

    #[test]
    fn newer_slot_serves_older_version() {
        let cache = Cache::default();
        let id = DataSourceId(uuid_from(8));
        let newer = cache.slot(id, &auth(None), "demo", 5);
        let older_request = cache.slot(id, &auth(None), "demo", 4);
        let newer_request = cache.slot(id, &auth(None), "demo", 6);
        assert!(Arc::ptr_eq(&newer, &older_request));
        assert!(!Arc::ptr_eq(&newer, &newer_request));
    }

    #[test]
    fn per_data_source_records_stay_small() {
        // A server keeps both for every data source with a cached token. With
        // the allocation's reference counts, each takes one 64-byte size class.
        assert!(std::mem::size_of::<CachedToken>() <= 48);
        assert!(std::mem::size_of::<Slot>() <= 48);
    }

    #[test]
    fn rare_state_is_freed_when_empty() {
        let cache = Cache::default();
        let slot = cache.slot(DataSourceId(uuid_from(9)), &auth(None), "demo", 1);
        let mut state = slot.lock();
        let guard = cache.start_flight(&slot, &mut state);
        assert!(state.flight().is_some());
        state.set_backoff(Some(Backoff {
            until: Instant::now(),
            cause: timeout(),
            failures: 2,
        }));
        assert_eq!(state.failures(), 2);
        guard.finish(&mut state, Err(timeout()));
        assert!(state.flight().is_none());
        assert!(state.rare.is_some(), "the back-off remains");
        state.set_backoff(None);
        assert_eq!(state.failures(), 0);
        assert!(state.rare.is_none());
    }

    #[test]
    fn scopes_are_shared_then_pruned() {
        let cache = Cache::default();
        let first = cache.share_scope("read write");
        let second = cache.share_scope("read write");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(&**first, "read write");

        // With no slot, the set drops its unused scopes once it contains more
        // than 16, and then adds the new one.
        drop((first, second));
        for index in 0..40 {
            drop(cache.share_scope(&format!("scope-{index}")));
        }
        let scope_count = cache.scopes.lock().unwrap().len();
        assert!(scope_count <= 18, "{scope_count} scopes kept");
    }

    #[test]
    fn refresh_starts_lead_before_end() {
        let now = Instant::now();
        let token = CachedToken {
            token: SecretString::new("t"),
            valid_until: Deadline::from_instant(now + Duration::from_secs(100)),
            expires_at: WallTime::NONE,
            scope: None,
            refresh_lead_secs: 30,
            scheme: Scheme::Bearer,
            lifetime_assumed: false,
            cacheable: true,
        };
        assert!(!token.wants_refresh(now + Duration::from_secs(69)));
        assert!(token.wants_refresh(now + Duration::from_secs(70)));
        let basic = CachedToken {
            valid_until: Deadline::NEVER,
            ..token
        };
        assert!(!basic.wants_refresh(now + Duration::from_secs(1_000_000)));
    }

    #[test]
    fn deadline_round_trips_instants() {
        let now = Instant::now();
        let later = now + Duration::from_secs(3_600);
        assert_eq!(Deadline::from_instant(later).to_instant(), Some(later));
        assert!(Deadline::from_instant(now) < Deadline::from_instant(later));

        // An instant before the epoch, as a clock created earlier gives.
        let earlier = Deadline::epoch().checked_sub(Duration::from_millis(5));
        if let Some(earlier) = earlier {
            let deadline = Deadline::from_instant(earlier);
            assert!(deadline.0 < 0);
            assert_eq!(deadline.to_instant(), Some(earlier));
        }
        assert_eq!(Deadline::NEVER.to_instant(), None);
    }

    #[test]
    fn wall_time_round_trips_exactly() {
        let time = time::macros::datetime!(2026-12-05 07:30:00.123_456_789 UTC);
        assert_eq!(WallTime::new(time).get(), Some(time));
        assert_eq!(WallTime::NONE.get(), None);
        let far = time::macros::datetime!(2300-01-01 00:00 UTC);
        assert_eq!(WallTime::new(far), WallTime::NONE);
    }

    #[test]
    fn lead_rounds_up_to_seconds() {
        assert_eq!(CachedToken::lead_secs(Duration::ZERO), 0);
        assert_eq!(CachedToken::lead_secs(Duration::from_millis(1)), 1);
        assert_eq!(CachedToken::lead_secs(Duration::from_secs(90)), 90);
        // A quarter of a 366-day lifetime, which milliseconds in a u32
        // could not hold.
        let quarter_year = Duration::from_secs(366 * 86_400 / 4);
        assert_eq!(CachedToken::lead_secs(quarter_year), 7_905_600);
        assert_eq!(CachedToken::lead_secs(Duration::MAX), u32::MAX);
    }

    fn timeout() -> Error {
        Error::Timeout {
            after: Duration::from_secs(1),
        }
    }

    fn uuid_from(value: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(value)
    }
}
