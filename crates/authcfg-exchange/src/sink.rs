//! The seam through which a new refresh token leaves the exchange: the
//! server implements [`RefreshTokenSink`] with the store.

use std::future::Future;
use std::pin::Pin;

use authcfg_model::{DataSourceId, SecretString};

use crate::BoxError;

/// Persists a new refresh token from a token response: a rotated one, or one
/// issued to a `password` data source, which renews its later tokens with it.
/// The server implements it with the store.
pub trait RefreshTokenSink: Send + Sync {
    /// Stores `token` as the refresh token of `datasource` if its credentials
    /// are still at `expected_credentials_version`, and returns the new
    /// credentials version.
    ///
    /// The new access token is handed out only after this returns `Ok`.
    ///
    /// # Errors
    ///
    /// Returns the store's error, such as a version conflict; the exchange then
    /// fails with [`Error::Persist`](crate::Error::Persist).
    ///
    /// # Security
    ///
    /// `token` is a live refresh token: store it sealed and never log it.
    fn persist_refresh_token<'a>(
        &'a self,
        datasource: DataSourceId,
        expected_credentials_version: u64,
        token: &'a SecretString,
    ) -> Pin<Box<dyn Future<Output = Result<u64, BoxError>> + Send + 'a>>;
}

/// A sink that accepts no refresh token, for deployments and tests without
/// refresh tokens. Persisting fails, so a new refresh token is never lost
/// silently. With it, a data source whose token endpoint issues refresh
/// tokens, including to the password grant, gets [`Error::Persist`](crate::Error::Persist).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRotation;

impl RefreshTokenSink for NoRotation {
    fn persist_refresh_token<'a>(
        &'a self,
        _datasource: DataSourceId,
        _expected_credentials_version: u64,
        _token: &'a SecretString,
    ) -> Pin<Box<dyn Future<Output = Result<u64, BoxError>> + Send + 'a>> {
        Box::pin(async {
            Err(BoxError::from(
                "the token endpoint issued a new refresh token but no refresh token sink is configured",
            ))
        })
    }
}
