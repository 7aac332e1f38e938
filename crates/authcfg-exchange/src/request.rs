//! Building the token request: form body and client authentication.
//!
//! Everything here is a pure function of the auth config and credentials, so
//! the exact bytes on the wire are tested without a server.

use authcfg_model::{
    AuthConfig, AuthMethod, ClientAuthMethod, CredentialField, Credentials, GrantType,
    SecretString, RESERVED_TOKEN_PARAMS,
};
use base64::Engine as _;

use crate::Error;

/// A token request ready to send.
pub(crate) struct TokenRequest {
    /// The token endpoint URL.
    pub(crate) url: String,
    /// The `grant_type` in the body, such as `refresh_token` for an
    /// `authorization_code` data source.
    pub(crate) grant_type: &'static str,
    /// The `Authorization` header for `client_secret_basic`; `None` for
    /// `client_secret_post`.
    pub(crate) authorization: Option<SecretString>,
    /// The `application/x-www-form-urlencoded` body.
    pub(crate) body: SecretString,
    /// Every secret value sent, raw and encoded, so that error text from the
    /// endpoint can be scrubbed of them.
    pub(crate) secrets: Vec<SecretString>,
}

/// Builds the token request of the grant that `auth` configures, with `credentials`.
///
/// The body holds, in this order: `grant_type`, the grant's own parameters,
/// `scope` (only when configured), the `token_params`, and for
/// `client_secret_post` the `client_id` and `client_secret`.
pub(crate) fn build_token_request(
    auth: &AuthConfig,
    credentials: &Credentials,
) -> Result<TokenRequest, Error> {
    build(auth, credentials, None)
}

/// Builds a refresh_token grant request (RFC 6749 section 6) with the stored
/// refresh token, whatever grant `auth` configures. A `password` data source
/// uses it to renew its token without sending the password.
///
/// The credentials must still hold what the configured grant needs, so that
/// a rejected refresh token can fall back to that grant.
pub(crate) fn build_refresh_request(
    auth: &AuthConfig,
    credentials: &Credentials,
) -> Result<TokenRequest, Error> {
    build(auth, credentials, Some(GrantType::RefreshToken))
}

/// Builds a token request for `auth` that sends the grant `send`, or the
/// configured grant when `send` is `None`.
fn build(
    auth: &AuthConfig,
    credentials: &Credentials,
    send: Option<GrantType>,
) -> Result<TokenRequest, Error> {
    if auth.method != AuthMethod::Bearer {
        return Err(Error::InvalidConfig {
            reason: format!(
                "method {:?} does not use a token endpoint: use the bearer method",
                auth.method.as_str()
            ),
        });
    }
    let Some(url) = auth.token_url.as_deref() else {
        return Err(Error::InvalidConfig {
            reason: "token_url is missing: set the OAuth token endpoint URL".to_owned(),
        });
    };
    let Some(grant_type) = auth.grant_type else {
        return Err(Error::InvalidConfig {
            reason: "grant_type is missing: set client_credentials, password, refresh_token or authorization_code".to_owned(),
        });
    };
    if grant_type == GrantType::Implicit {
        return Err(Error::UnsupportedGrant {
            grant_type: grant_type.as_str().to_owned(),
        });
    }
    if let Some(key) = auth
        .token_params
        .keys()
        .find(|key| RESERVED_TOKEN_PARAMS.contains(&key.as_str()))
    {
        return Err(Error::InvalidConfig {
            reason: format!(
                "token_params may not set {key:?}: authcfg sets it from the auth config and credentials"
            ),
        });
    }
    let missing = credentials.missing_for(auth);
    if !missing.is_empty() {
        return Err(Error::MissingCredentials { fields: missing });
    }
    let grant_type = send.unwrap_or(grant_type);

    let mut secrets = Vec::new();
    let mut form = form_urlencoded::Serializer::new(String::new());

    // authorization_code data sources have no consent flow yet, so they use
    // their stored refresh token like the refresh_token grant.
    let sent_grant = match grant_type {
        GrantType::ClientCredentials => {
            form.append_pair("grant_type", "client_credentials");
            "client_credentials"
        }
        GrantType::Password => {
            let (Some(username), Some(password)) = (&credentials.username, &credentials.password)
            else {
                return Err(Error::MissingCredentials {
                    fields: credentials.missing_for(auth),
                });
            };
            form.append_pair("grant_type", "password");
            form.append_pair("username", username);
            form.append_pair("password", password.expose_secret());
            secrets.push(password.duplicate());
            "password"
        }
        GrantType::RefreshToken | GrantType::AuthorizationCode => {
            let Some(refresh_token) = &credentials.refresh_token else {
                return Err(Error::MissingCredentials {
                    fields: vec![CredentialField::RefreshToken],
                });
            };
            form.append_pair("grant_type", "refresh_token");
            form.append_pair("refresh_token", refresh_token.expose_secret());
            secrets.push(refresh_token.duplicate());
            "refresh_token"
        }
        GrantType::Implicit => {
            return Err(Error::UnsupportedGrant {
                grant_type: grant_type.as_str().to_owned(),
            })
        }
    };

    let scope = auth.scope_tokens();
    if !scope.is_empty() {
        form.append_pair("scope", &scope.join(" "));
    }
    for (key, value) in &auth.token_params {
        form.append_pair(key, value);
    }

    let client_secret = credentials.client_secret.expose_secret();
    if !client_secret.is_empty() {
        secrets.push(credentials.client_secret.duplicate());
    }
    let authorization = match auth.client_auth_or_default() {
        ClientAuthMethod::ClientSecretBasic => {
            let header = client_secret_basic(&credentials.client_id, client_secret);
            secrets.push(header.duplicate());
            Some(header)
        }
        ClientAuthMethod::ClientSecretPost => {
            form.append_pair("client_id", &credentials.client_id);
            form.append_pair("client_secret", client_secret);
            None
        }
    };

    // The form-encoded spellings of the secrets are what an endpoint that
    // echoes its input would show.
    let encoded: Vec<SecretString> = secrets
        .iter()
        .map(|secret| {
            SecretString::new(
                form_urlencoded::byte_serialize(secret.expose_secret().as_bytes())
                    .collect::<String>(),
            )
        })
        .collect();
    secrets.extend(encoded);
    secrets.retain(|secret| !secret.is_empty());

    Ok(TokenRequest {
        url: url.to_owned(),
        grant_type: sent_grant,
        authorization,
        body: SecretString::new(form.finish()),
        secrets,
    })
}

/// Builds the `client_secret_basic` header: the client id and secret are each
/// form-urlencoded (RFC 6749 Appendix B and section 2.3.1) before they are
/// joined with `:` and base64-encoded.
pub(crate) fn client_secret_basic(client_id: &str, client_secret: &str) -> SecretString {
    let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let secret = SecretString::new(
        form_urlencoded::byte_serialize(client_secret.as_bytes()).collect::<String>(),
    );
    let joined = SecretString::new(format!("{id}:{}", secret.expose_secret()));
    let encoded =
        SecretString::new(base64::engine::general_purpose::STANDARD.encode(joined.expose_secret()));
    SecretString::new(format!("Basic {}", encoded.expose_secret()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn bearer(grant_type: GrantType) -> AuthConfig {
        AuthConfig::bearer("https://login.example.com/token", grant_type)
    }

    fn body_of(auth: &AuthConfig, credentials: &Credentials) -> String {
        let request = build_token_request(auth, credentials).unwrap();
        request.body.expose_secret().to_owned()
    }

    #[test]
    fn client_secret_basic_encodes_before_base64() {
        let header = client_secret_basic("svc@corp", "p+ss/w:rd%=!");
        assert_eq!(
            header.expose_secret(),
            "Basic c3ZjJTQwY29ycDpwJTJCc3MlMkZ3JTNBcmQlMjUlM0QlMjE="
        );
    }

    #[test]
    fn client_secret_post_body_is_exact() {
        let mut auth = bearer(GrantType::ClientCredentials);
        auth.client_auth = Some(ClientAuthMethod::ClientSecretPost);
        let credentials = Credentials::new("demo", "s3cr&t");

        let request = build_token_request(&auth, &credentials).unwrap();

        assert_eq!(
            request.body.expose_secret(),
            "grant_type=client_credentials&client_id=demo&client_secret=s3cr%26t"
        );
        assert!(request.authorization.is_none());
    }

    #[test]
    fn client_secret_basic_keeps_secret_out_of_body() {
        let auth = bearer(GrantType::ClientCredentials);
        let credentials = Credentials::new("demo", "s3cr&t");

        let request = build_token_request(&auth, &credentials).unwrap();

        assert_eq!(
            request.body.expose_secret(),
            "grant_type=client_credentials"
        );
        assert!(request.authorization.is_some());
    }

    #[test]
    fn scope_is_encoded_once_and_omitted_when_unset() {
        let credentials = Credentials::new("demo", "secret");
        let cases = [
            (None, "grant_type=client_credentials"),
            (
                Some("https://graph.microsoft.com/.default"),
                "grant_type=client_credentials&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
            ),
            (
                Some("read write"),
                "grant_type=client_credentials&scope=read+write",
            ),
            (Some("a,b c"), "grant_type=client_credentials&scope=a%2Cb+c"),
        ];
        for (scope, expected) in cases {
            let mut auth = bearer(GrantType::ClientCredentials);
            auth.scope = scope.map(str::to_owned);
            assert_eq!(body_of(&auth, &credentials), expected, "scope {scope:?}");
        }
    }

    #[test]
    fn grants_send_their_parameters() {
        let mut credentials = Credentials::new("demo", "secret");
        credentials.username = Some("alice".to_owned());
        credentials.password = Some(SecretString::new("pa ss"));
        credentials.refresh_token = Some(SecretString::new("rt-1"));
        let cases = [
            (
                GrantType::ClientCredentials,
                "grant_type=client_credentials",
            ),
            (
                GrantType::Password,
                "grant_type=password&username=alice&password=pa+ss",
            ),
            (
                GrantType::RefreshToken,
                "grant_type=refresh_token&refresh_token=rt-1",
            ),
            (
                GrantType::AuthorizationCode,
                "grant_type=refresh_token&refresh_token=rt-1",
            ),
        ];
        for (grant_type, expected) in cases {
            assert_eq!(
                body_of(&bearer(grant_type), &credentials),
                expected,
                "grant {grant_type}"
            );
        }
    }

    #[test]
    fn refresh_request_of_password_source_sends_no_password() {
        let mut auth = bearer(GrantType::Password);
        auth.scope = Some("read".to_owned());
        let mut credentials = Credentials::new("demo", "secret");
        credentials.username = Some("alice".to_owned());
        credentials.password = Some(SecretString::new("pa ss"));
        credentials.refresh_token = Some(SecretString::new("rt-1"));

        let refresh = build_refresh_request(&auth, &credentials).unwrap();
        let password = build_token_request(&auth, &credentials).unwrap();

        assert_eq!(
            refresh.body.expose_secret(),
            "grant_type=refresh_token&refresh_token=rt-1&scope=read"
        );
        assert_eq!(refresh.grant_type, "refresh_token");
        assert_eq!(password.grant_type, "password");
    }

    #[test]
    fn refresh_request_needs_the_configured_grant_fields() {
        let mut credentials = Credentials::new("demo", "secret");
        credentials.refresh_token = Some(SecretString::new("rt-1"));
        let error = build_refresh_request(&bearer(GrantType::Password), &credentials)
            .err()
            .unwrap();
        match error {
            Error::MissingCredentials { fields } => assert_eq!(
                fields,
                vec![CredentialField::Username, CredentialField::Password]
            ),
            other => panic!("unexpected error {other:?}"),
        }

        let mut credentials = Credentials::new("demo", "secret");
        credentials.username = Some("alice".to_owned());
        credentials.password = Some(SecretString::new("pw"));
        let error = build_refresh_request(&bearer(GrantType::Password), &credentials)
            .err()
            .unwrap();
        match error {
            Error::MissingCredentials { fields } => {
                assert_eq!(fields, vec![CredentialField::RefreshToken]);
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn token_params_follow_scope() {
        let mut auth = bearer(GrantType::ClientCredentials);
        auth.scope = Some("read".to_owned());
        auth.token_params = BTreeMap::from([
            ("audience".to_owned(), "https://api.example.com".to_owned()),
            ("resource".to_owned(), "urn:x".to_owned()),
        ]);

        let body = body_of(&auth, &Credentials::new("demo", "secret"));

        assert_eq!(
            body,
            "grant_type=client_credentials&scope=read&audience=https%3A%2F%2Fapi.example.com&resource=urn%3Ax"
        );
    }

    #[test]
    fn implicit_grant_is_unsupported() {
        let error = build_token_request(
            &bearer(GrantType::Implicit),
            &Credentials::new("demo", "secret"),
        )
        .err()
        .unwrap();
        assert!(matches!(error, Error::UnsupportedGrant { .. }), "{error:?}");
    }

    #[test]
    fn missing_refresh_token_is_reported() {
        let error = build_token_request(
            &bearer(GrantType::RefreshToken),
            &Credentials::new("demo", "secret"),
        )
        .err()
        .unwrap();
        match error {
            Error::MissingCredentials { fields } => {
                assert_eq!(fields, vec![authcfg_model::CredentialField::RefreshToken]);
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn reserved_token_param_is_rejected() {
        let mut auth = bearer(GrantType::ClientCredentials);
        auth.token_params = BTreeMap::from([("client_secret".to_owned(), "x".to_owned())]);
        let error = build_token_request(&auth, &Credentials::new("demo", "secret"))
            .err()
            .unwrap();
        assert!(matches!(error, Error::InvalidConfig { .. }), "{error:?}");
    }

    #[test]
    fn secrets_include_encoded_forms() {
        let mut auth = bearer(GrantType::ClientCredentials);
        auth.client_auth = Some(ClientAuthMethod::ClientSecretPost);
        let request = build_token_request(&auth, &Credentials::new("demo", "s3cr&t")).unwrap();
        let secrets: Vec<&str> = request
            .secrets
            .iter()
            .map(SecretString::expose_secret)
            .collect();
        assert!(secrets.contains(&"s3cr&t"));
        assert!(secrets.contains(&"s3cr%26t"));
    }
}
