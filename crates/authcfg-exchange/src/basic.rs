//! HTTP Basic authentication (RFC 7617): a pure computation, cached like a
//! token that never expires.

use authcfg_model::{Credentials, SecretString};
use base64::Engine as _;

use crate::cache::{CachedToken, Deadline, Scheme, WallTime};
use crate::Error;

/// Builds `Basic base64(user-id ":" password)` per RFC 7617. An empty password
/// keeps the colon.
///
/// # Security
///
/// The result contains the password, merely encoded.
pub fn basic_header(user_id: &str, password: &str) -> SecretString {
    let encoded = basic_token68(user_id, password);
    SecretString::new(format!("Basic {}", encoded.expose_secret()))
}

/// Returns `base64(user-id ":" password)`, the part of the header after `Basic `.
fn basic_token68(user_id: &str, password: &str) -> SecretString {
    let plain = SecretString::new(format!("{user_id}:{password}"));
    SecretString::new(base64::engine::general_purpose::STANDARD.encode(plain.expose_secret()))
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
        token: basic_token68(
            &credentials.client_id,
            credentials.client_secret.expose_secret(),
        ),
        valid_until: Deadline::NEVER,
        expires_at: WallTime::NONE,
        scope: None,
        refresh_lead_secs: 0,
        scheme: Scheme::Basic,
        lifetime_assumed: false,
        cacheable: true,
    })
}
