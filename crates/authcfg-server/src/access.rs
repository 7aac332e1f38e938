//! Access control: the in-memory index of API token hashes and the
//! [`Caller`] extractor that every `/v1` handler takes.
//!
//! A presented token is hashed with SHA-256 and looked up in a hash map, so
//! checking a token touches neither SQLite nor a slow password hash. Tokens are
//! random 256-bit values, so an unsalted fast hash is enough: there is nothing
//! to guess. Last-used times are kept in atomics and written to the store in
//! batches by the background refresher.
//!
//! The index is a copy: a token that the command line creates while `serve`
//! runs is in the store before it is in the index. A request whose token is
//! not in the index therefore requests an early pass of the refresher and
//! waits for it, at most two seconds, before it gets 401. Such passes run at
//! most ten times a second, so unknown tokens cost the store little.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use authcfg_model::{ApiTokenInfo, Role};
use futures_util::future::{Either, LocalBoxFuture};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// One active API token in the index.
#[derive(Debug)]
pub struct TokenEntry {
    /// The token's metadata.
    pub info: ApiTokenInfo,
    /// Unix time of the last use seen by this process, 0 when unused.
    last_used: AtomicI64,
    /// Unix time of the last use written to the store.
    flushed: AtomicI64,
}

type TokenMap = HashMap<[u8; 32], Arc<TokenEntry>>;

/// The active API tokens by the SHA-256 hash of their value.
#[derive(Debug, Default)]
pub struct TokenIndex {
    tokens: RwLock<Arc<TokenMap>>,
}

/// Returns the SHA-256 hash of a presented token value, as the store keeps it.
pub fn hash_token(presented: &str) -> [u8; 32] {
    Sha256::digest(presented.as_bytes()).into()
}

impl TokenIndex {
    /// Replaces the index with `hashes`, keeping the usage times of tokens that stay.
    pub fn replace(&self, hashes: Vec<([u8; 32], ApiTokenInfo)>) {
        let current = self.current();
        let mut next = TokenMap::with_capacity(hashes.len());
        for (hash, info) in hashes {
            let (last_used, flushed) = current.get(&hash).map_or((0, 0), |entry| {
                (
                    entry.last_used.load(Ordering::Relaxed),
                    entry.flushed.load(Ordering::Relaxed),
                )
            });
            next.insert(
                hash,
                Arc::new(TokenEntry {
                    info,
                    last_used: AtomicI64::new(last_used),
                    flushed: AtomicI64::new(flushed),
                }),
            );
        }
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
    }

    fn current(&self) -> Arc<TokenMap> {
        Arc::clone(&self.tokens.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Looks up a presented token and marks it used.
    pub fn authenticate(&self, presented: &str) -> Option<Arc<TokenEntry>> {
        let hash = hash_token(presented);
        let entry = {
            let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
            tokens.get(&hash).cloned()
        }?;
        entry.last_used.store(
            OffsetDateTime::now_utc().unix_timestamp(),
            Ordering::Relaxed,
        );
        Some(entry)
    }

    /// Returns the tokens used since the last call, with their last use, and
    /// marks those times as written.
    pub fn take_usage(&self) -> Vec<(String, OffsetDateTime)> {
        let mut used = Vec::new();
        for entry in self.current().values() {
            let last_used = entry.last_used.load(Ordering::Relaxed);
            if last_used > entry.flushed.swap(last_used, Ordering::Relaxed) {
                if let Ok(at) = OffsetDateTime::from_unix_timestamp(last_used) {
                    used.push((entry.info.id.clone(), at));
                }
            }
        }
        used
    }

    /// Returns the number of active tokens.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// Returns true when no token is active.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The authenticated caller of a `/v1` request.
#[derive(Debug, Clone)]
pub struct Caller {
    entry: Arc<TokenEntry>,
}

impl Caller {
    /// Returns the id of the caller's API token, the actor of audit events.
    pub fn token_id(&self) -> &str {
        &self.entry.info.id
    }

    /// Returns the caller's role.
    pub fn role(&self) -> Role {
        self.entry.info.role
    }

    /// Returns true when the caller may read the data source and fetch its headers.
    pub fn may_use(&self, datasource: &str) -> bool {
        match self.entry.info.role {
            Role::Admin => true,
            Role::Consumer => self
                .entry
                .info
                .datasources
                .iter()
                .any(|name| name == datasource),
        }
    }

    /// Fails unless the caller is an admin.
    ///
    /// # Errors
    ///
    /// Returns a 403 problem for a consumer token.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.entry.info.role {
            Role::Admin => Ok(()),
            Role::Consumer => Err(ApiError::new(
                ProblemKind::Forbidden,
                format!(
                    "API token {:?} has the consumer role, which may only read and fetch headers of its data sources: use an admin token",
                    self.entry.info.id
                ),
            )),
        }
    }

    /// Fails unless the caller may use `datasource`.
    ///
    /// # Errors
    ///
    /// Returns a 403 problem for a consumer token that does not list the data source.
    pub fn require_datasource(&self, datasource: &str) -> Result<(), ApiError> {
        if self.may_use(datasource) {
            Ok(())
        } else {
            Err(ApiError::new(
                ProblemKind::Forbidden,
                format!(
                    "API token {:?} is not allowed to use data source {datasource:?}: create a consumer token that lists it",
                    self.entry.info.id
                ),
            ))
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future =
        Either<Ready<Result<Self, ApiError>>, LocalBoxFuture<'static, Result<Self, ApiError>>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        match authenticate(request) {
            Err(Unknown::Token) => {
                let request = request.clone();
                Either::Right(Box::pin(async move {
                    authenticate_after_recheck(&request).await
                }))
            }
            result => Either::Left(ready(result.map_err(ApiError::from))),
        }
    }
}

/// Authenticates `request`, and when its API token is not in the index,
/// waits for the refresher to look for new tokens and tries once more. A token
/// that the command line created a moment ago then works at once.
///
/// # Errors
///
/// Returns 401 when the header is missing or malformed, or the token is
/// unknown after the recheck.
pub(crate) async fn authenticate_after_recheck(request: &HttpRequest) -> Result<Caller, ApiError> {
    match authenticate(request) {
        Err(Unknown::Token) => {
            if let Some(state) = request.app_data::<web::Data<AppState>>() {
                state.recheck_tokens().await;
            }
            authenticate(request).map_err(ApiError::from)
        }
        result => result.map_err(ApiError::from),
    }
}

/// The reason [`authenticate`] found no caller.
#[derive(Debug)]
pub(crate) enum Unknown {
    /// The request has no valid `Authorization` header, or the server has no
    /// state. A recheck of the token index cannot help.
    Request(ApiError),
    /// The token is not in the index: invalid, revoked, or created by
    /// another process since the index was loaded.
    Token,
}

impl From<Unknown> for ApiError {
    fn from(unknown: Unknown) -> Self {
        match unknown {
            Unknown::Request(error) => error,
            Unknown::Token => ApiError::new(
                ProblemKind::Unauthorized,
                "the API token is invalid or revoked: create one with `authcfg api-token create`",
            ),
        }
    }
}

/// Authenticates `request` against the token index, without waiting.
pub(crate) fn authenticate(request: &HttpRequest) -> Result<Caller, Unknown> {
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return Err(Unknown::Request(ApiError::internal(
            "the application state is not configured",
        )));
    };

    let mut values = request.headers().get_all(header::AUTHORIZATION);
    let Some(value) = values.next() else {
        return Err(Unknown::Request(ApiError::new(
            ProblemKind::Unauthorized,
            "missing API token: send the header \"Authorization: Bearer <api token>\"",
        )));
    };
    // Authorization is not a list field in RFC 9110, so a request carries at
    // most one. With two, the one that counts would depend on the proxies in
    // between.
    if values.next().is_some() {
        return Err(Unknown::Request(ApiError::new(
            ProblemKind::Unauthorized,
            "the request has more than one Authorization header: send one \"Authorization: Bearer <api token>\"",
        )));
    }
    let text = value.to_str().unwrap_or_default().trim();
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Unknown::Request(ApiError::new(
            ProblemKind::Unauthorized,
            "the Authorization header is not a Bearer token: send \"Authorization: Bearer <api token>\"",
        )));
    }
    let presented = token.trim();
    if presented.is_empty() {
        return Err(Unknown::Request(ApiError::new(
            ProblemKind::Unauthorized,
            "the Authorization header has no token after Bearer: send \"Authorization: Bearer <api token>\"",
        )));
    }

    match state.tokens.authenticate(presented) {
        Some(entry) => Ok(Caller { entry }),
        None => Err(Unknown::Token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, role: Role, datasources: &[&str]) -> ApiTokenInfo {
        ApiTokenInfo {
            id: id.to_owned(),
            label: "test".to_owned(),
            role,
            datasources: datasources.iter().map(|name| (*name).to_owned()).collect(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn index_finds_token_by_value() {
        let index = TokenIndex::default();
        index.replace(vec![(hash_token("secret-a"), info("a", Role::Admin, &[]))]);

        assert_eq!(index.authenticate("secret-a").unwrap().info.id, "a");
        assert!(index.authenticate("secret-b").is_none());
        assert!(index.authenticate("").is_none());
    }

    #[test]
    fn replace_drops_revoked_tokens() {
        let index = TokenIndex::default();
        index.replace(vec![(hash_token("secret-a"), info("a", Role::Admin, &[]))]);

        index.replace(Vec::new());

        assert!(index.authenticate("secret-a").is_none());
        assert!(index.is_empty());
    }

    #[test]
    fn usage_is_reported_once() {
        let index = TokenIndex::default();
        index.replace(vec![(hash_token("secret-a"), info("a", Role::Admin, &[]))]);
        index.authenticate("secret-a");

        let first = index.take_usage();
        let second = index.take_usage();

        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, "a");
        assert!(second.is_empty());
    }

    #[test]
    fn consumer_may_use_listed_datasources_only() {
        let index = TokenIndex::default();
        index.replace(vec![(
            hash_token("secret-c"),
            info("c", Role::Consumer, &["crm-prod"]),
        )]);
        let caller = Caller {
            entry: index.authenticate("secret-c").unwrap(),
        };

        assert!(caller.may_use("crm-prod"));
        assert!(!caller.may_use("erp"));
        assert!(caller.require_admin().is_err());
        assert!(caller.require_datasource("erp").is_err());
    }
}
