//! HTTP Basic authentication (RFC 7617): a pure computation, cached like a
//! token that never expires.

use std::sync::Arc;

use authcfg_model::{Credentials, SecretString};
use base64::Engine as _;

use crate::cache::CachedToken;
use crate::Error;

/// Builds `Basic base64(user-id ":" password)` per RFC 7617. An empty password
/// keeps the colon.
///
/// # Security
///
/// The result contains the password, merely encoded.
pub fn basic_header(user_id: &str, password: &str) -> SecretString {
    let plain = SecretString::new(format!("{user_id}:{password}"));
    let encoded =
        SecretString::new(base64::engine::general_purpose::STANDARD.encode(plain.expose_secret()));
    SecretString::new(format!("Basic {}", encoded.expose_secret()))
}

/// Builds the never-expiring Basic token of `credentials`.
pub(crate) fn basic_token(credentials: &Credentials) -> Result<CachedToken, Error> {
    if credentials.client_id.contains(':') {
        return Err(Error::InvalidConfig {
            reason: format!(
                "client_id {:?} contains ':', which Basic authentication cannot carry (RFC 7617 section 2): use a user-id without ':'",
                credentials.client_id
            ),
        });
    }
    Ok(CachedToken {
        header: Arc::new(basic_header(
            &credentials.client_id,
            credentials.client_secret.expose_secret(),
        )),
        token_type: "Basic",
        scope: None,
        lifetime_assumed: false,
        valid_until: None,
        refresh_from: None,
        expires_at: None,
        cacheable: true,
    })
}
