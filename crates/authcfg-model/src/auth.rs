//! The auth config of a data source: how to authenticate, not with what.
//!
//! Field names and values match the reference auth config table: `method`,
//! `token_url`, `grant_type` and `scope`. Two extensions, `client_auth` and
//! `token_params`, are left out of the JSON when unset so that a reference
//! client reads our documents unchanged.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{escape_pointer_token, quote, Collector};
use crate::ValidationErrors;

/// The authentication method of requests to the data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic (RFC 7617) with the client id as user-id and the client
    /// secret as password.
    Basic,
    /// A Bearer access token (RFC 6750) obtained from `token_url`.
    Bearer,
}

impl AuthMethod {
    /// Returns the wire name, such as `basic`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Basic => "basic",
            AuthMethod::Bearer => "bearer",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The OAuth 2.0 grant used at the token endpoint (RFC 6749 section 1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// Client credentials grant (RFC 6749 section 4.4): the client acts on its own behalf.
    ClientCredentials,
    /// Resource owner password credentials grant (RFC 6749 section 4.3), with the
    /// stored username and password.
    Password,
    /// Authorization code grant (RFC 6749 section 4.1). authcfg has no consent
    /// flow, so such a data source uses its stored refresh token.
    AuthorizationCode,
    /// Refresh token grant (RFC 6749 section 6), with the stored refresh token.
    RefreshToken,
    /// Implicit grant (RFC 6749 section 4.2). Rejected by validation: it needs a
    /// browser redirect and cannot be performed by a server.
    Implicit,
}

impl GrantType {
    /// Returns the wire name, such as `client_credentials`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::Password => "password",
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::Implicit => "implicit",
        }
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The client authentication method at the token endpoint (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP Basic with the form-urlencoded client id and secret. The default.
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` as parameters of the request body.
    ClientSecretPost,
}

impl ClientAuthMethod {
    /// Returns the wire name, such as `client_secret_basic`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::ClientSecretBasic => "client_secret_basic",
            ClientAuthMethod::ClientSecretPost => "client_secret_post",
        }
    }
}

impl fmt::Display for ClientAuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Form parameters that the token request itself sets; `token_params` may not
/// override them.
pub const RESERVED_TOKEN_PARAMS: &[&str] = &[
    "grant_type",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "username",
    "password",
    "refresh_token",
    "code",
    "code_verifier",
    "redirect_uri",
    "assertion",
    "state",
    "response_type",
];

/// Maximum number of entries in `token_params`.
pub const MAX_TOKEN_PARAMS: usize = 32;

/// Longest accepted `token_url`, in bytes.
const MAX_URL_LEN: usize = 2048;
/// Longest accepted `scope`, in bytes.
const MAX_SCOPE_LEN: usize = 2048;
/// Longest accepted `token_params` key or value, in bytes.
const MAX_PARAM_LEN: usize = 2048;

/// The auth config of a data source: the method, and for bearer the OAuth 2.0
/// token endpoint, grant and scope.
///
/// The credentials themselves (client id and secret) are not part of the
/// config; they are stored sealed, apart from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Authentication method: `basic` or `bearer`.
    pub method: AuthMethod,
    /// OAuth token endpoint URL (required for bearer auth). An absolute `http`
    /// or `https` URL without user info or fragment. Unused by `basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable, example = "https://api.example.com/oauth/token")
    )]
    pub token_url: Option<String>,
    /// OAuth grant type (required for bearer auth). Unused by `basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub grant_type: Option<GrantType>,
    /// OAuth scope - space-separated list (optional). Leave it out to use the
    /// server's default scope. Unused by `basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable, example = "api.read api.write"))]
    pub scope: Option<String>,
    /// Client authentication method at the token endpoint, `client_secret_basic`
    /// when unset. Unused by `basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub client_auth: Option<ClientAuthMethod>,
    /// Extra form parameters of the token request, such as `audience` or
    /// `resource` (RFC 8707). They may not set a parameter that the protocol
    /// owns, such as `grant_type` or `client_secret`. Unused by `basic`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(
        feature = "openapi",
        schema(example = json!({"audience": "https://api.example.com"}))
    )]
    pub token_params: BTreeMap<String, String>,
}

impl AuthConfig {
    /// Creates a `basic` config.
    pub fn basic() -> Self {
        Self {
            method: AuthMethod::Basic,
            token_url: None,
            grant_type: None,
            scope: None,
            client_auth: None,
            token_params: BTreeMap::new(),
        }
    }

    /// Creates a `bearer` config for `token_url` and `grant_type`.
    pub fn bearer(token_url: impl Into<String>, grant_type: GrantType) -> Self {
        Self {
            method: AuthMethod::Bearer,
            token_url: Some(token_url.into()),
            grant_type: Some(grant_type),
            ..Self::basic()
        }
    }

    /// Returns the client authentication method, with the default applied.
    pub fn client_auth_or_default(&self) -> ClientAuthMethod {
        self.client_auth.unwrap_or_default()
    }

    /// Returns the scope tokens, in configured order; empty when no scope is set.
    pub fn scope_tokens(&self) -> Vec<&str> {
        self.scope
            .as_deref()
            .map(|scope| scope.split(' ').filter(|token| !token.is_empty()).collect())
            .unwrap_or_default()
    }

    /// Checks every rule and returns all problems at once, with pointers
    /// relative to this object (`/token_url`).
    ///
    /// # Errors
    ///
    /// Returns the list of problems when any rule is broken.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut collector = Collector::default();
        self.validate_into("", &mut collector);
        collector.finish()
    }

    /// Checks every rule, reporting problems under `base`, such as `/auth`.
    pub(crate) fn validate_into(&self, base: &str, errors: &mut Collector) {
        let bearer = self.method == AuthMethod::Bearer;

        match &self.token_url {
            Some(url) => {
                if let Err(detail) =
                    check_http_url("token_url", url, "https://login.example.com/oauth/token")
                {
                    errors.push(format!("{base}/token_url"), detail);
                }
            }
            None if bearer => errors.push(
                format!("{base}/token_url"),
                "token_url is required for the bearer method: set the OAuth token endpoint URL, \
                 such as \"https://login.example.com/oauth/token\"",
            ),
            None => {}
        }

        match self.grant_type {
            Some(GrantType::Implicit) => errors.push(
                format!("{base}/grant_type"),
                "grant_type \"implicit\" is not supported: it needs a browser redirect and cannot be \
                 performed by a server; use \"client_credentials\", or \"authorization_code\" with a \
                 stored refresh token",
            ),
            Some(_) => {}
            None if bearer => errors.push(
                format!("{base}/grant_type"),
                "grant_type is required for the bearer method: use \"client_credentials\", \
                 \"password\", \"authorization_code\" or \"refresh_token\"",
            ),
            None => {}
        }

        if let Some(scope) = &self.scope {
            if let Err(detail) = check_scope(scope) {
                errors.push(format!("{base}/scope"), detail);
            }
        }

        if self.token_params.len() > MAX_TOKEN_PARAMS {
            errors.push(
                format!("{base}/token_params"),
                format!(
                    "token_params has {} entries; the maximum is {MAX_TOKEN_PARAMS}",
                    self.token_params.len()
                ),
            );
        }
        for (key, value) in &self.token_params {
            let pointer = format!("{base}/token_params/{}", escape_pointer_token(key));
            if let Err(detail) = check_token_param(key, value) {
                errors.push(pointer, detail);
            }
        }
    }
}

/// Checks an absolute `http` or `https` URL with a host and without user info
/// or fragment, as RFC 6749 section 3.2 requires of a token endpoint.
/// `example` is a well-formed value for the field, quoted in the fix.
pub(crate) fn check_http_url(field: &str, raw: &str, example: &str) -> Result<(), String> {
    if raw.is_empty() {
        return Err(format!(
            "{field} is empty: set an absolute https URL such as \"{example}\", or leave the field out"
        ));
    }
    if raw.trim() != raw {
        return Err(format!(
            "{field} {} has leading or trailing whitespace: remove it",
            quote(raw)
        ));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(format!(
            "{field} is {} bytes long; the maximum is {MAX_URL_LEN}",
            raw.len()
        ));
    }

    let url = url::Url::parse(raw).map_err(|error| {
        format!(
            "{field} {} is not an absolute URL ({error}): use a form such as \"{example}\"",
            quote(raw)
        )
    })?;

    if raw.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "{field} {} contains a space or control character: percent-encode it (a space is %20)",
            quote(raw)
        ));
    }
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!(
            "{field} {} uses the scheme {}: use https",
            quote(raw),
            quote(url.scheme())
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{field} {} has no host: add one", quote(raw)));
    }

    if !url.username().is_empty() || url.password().is_some() {
        // The value itself is not quoted: the user info may hold a password.
        return Err(format!(
            "{field} contains user info (user:password@): remove it and store the client id and secret as credentials"
        ));
    }
    if url.fragment().is_some() {
        return Err(format!(
            "{field} {} has a fragment (#...): remove it, an endpoint URL must not include one",
            quote(raw)
        ));
    }
    if let Some((name, _)) = url
        .query_pairs()
        .find(|(name, _)| URL_SECRET_PARAMS.contains(&name.as_ref()))
    {
        // The value is not quoted: the query may hold the secret itself.
        return Err(format!(
            "{field} carries the query parameter {}: remove it, credentials are stored apart \
             from the config and never sent in a URL",
            quote(&name)
        ));
    }
    Ok(())
}

/// Query parameters that would put a credential into a URL, where proxies and
/// access logs record it (RFC 6749 section 2.3.1 forbids client credentials
/// in the request URI).
const URL_SECRET_PARAMS: &[&str] = &[
    "client_secret",
    "password",
    "refresh_token",
    "access_token",
    "client_assertion",
];

/// Checks the scope grammar of RFC 6749 section 3.3: scope tokens of the
/// characters %x21 / %x23-5B / %x5D-7E, separated by single spaces.
fn check_scope(scope: &str) -> Result<(), String> {
    if scope.trim().is_empty() {
        return Err(format!(
            "scope {} is empty: omit scope to use the server's default",
            quote(scope)
        ));
    }
    if scope.len() > MAX_SCOPE_LEN {
        return Err(format!(
            "scope is {} bytes long; the maximum is {MAX_SCOPE_LEN}",
            scope.len()
        ));
    }
    if scope.starts_with(' ') || scope.ends_with(' ') || scope.contains("  ") {
        return Err(format!(
            "scope {} must be scope tokens separated by single spaces, with no leading or trailing space",
            quote(scope)
        ));
    }
    if let Some(bad) = scope.chars().find(|&c| {
        !(c == ' '
            || c == '\x21'
            || ('\x23'..='\x5b').contains(&c)
            || ('\x5d'..='\x7e').contains(&c))
    }) {
        return Err(format!(
            "scope {} contains {}, which a scope token may not contain (RFC 6749 section 3.3 allows \
             printable ASCII except '\"' and '\\'): separate scope tokens with single spaces",
            quote(scope),
            quote(&bad.to_string())
        ));
    }
    Ok(())
}

fn check_token_param(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("token_params has an empty parameter name: remove it".to_owned());
    }
    if key.len() > MAX_PARAM_LEN || value.len() > MAX_PARAM_LEN {
        return Err(format!(
            "token_params entry {} is too long; names and values may have at most {MAX_PARAM_LEN} bytes",
            quote(key)
        ));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        return Err(format!(
            "token_params name {} may only contain ASCII letters, digits, '_', '-', '.' and ':'",
            quote(key)
        ));
    }
    if RESERVED_TOKEN_PARAMS.contains(&key) {
        return Err(format!(
            "token_params may not set {}: authcfg sets it from the auth config and credentials",
            quote(key)
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "token_params value of {} contains a control character: remove it",
            quote(key)
        ));
    }
    if key == "resource" {
        check_resource(value)?;
    }
    Ok(())
}

/// Checks a resource indicator: an absolute URI without a fragment (RFC 8707
/// section 2).
fn check_resource(value: &str) -> Result<(), String> {
    let url = url::Url::parse(value).map_err(|error| {
        format!(
            "token_params resource {} is not an absolute URI ({error}): use a form such as \"https://api.example.com\"",
            quote(value)
        )
    })?;
    if url.fragment().is_some() {
        return Err(format!(
            "token_params resource {} has a fragment (#...): remove it, RFC 8707 forbids one",
            quote(value)
        ));
    }
    if value.trim() != value {
        return Err(format!(
            "token_params resource {} has leading or trailing whitespace: remove it",
            quote(value)
        ));
    }
    Ok(())
}
