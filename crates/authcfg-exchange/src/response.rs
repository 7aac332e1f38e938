//! Parsing the token response (RFC 6749 sections 5.1 and 5.2), leniently where
//! a provider's deviation is harmless and strictly where it could hand out a
//! wrong token.
//!
//! Harmless deviations that are accepted: a form-urlencoded body (GitHub), a
//! missing `token_type` (taken as Bearer), `bearer` in any case, `expires_in`
//! as a string or a fraction, and `scope` as a JSON array. Rejected: an `error`
//! field with any status (also HTTP 200), a response without `access_token`
//! (also HTTP 200 with `{}`), a token type other than Bearer, and an access
//! token that cannot be put into a header.

use std::time::Duration;

use authcfg_model::SecretString;
use serde::Deserialize;

use crate::Error;

/// Longest `error` code or `error_description` kept, in characters.
const MAX_ERROR_TEXT_CHARS: usize = 512;

/// Maximum lifetime taken from `expires_in`. Longer values are capped so
/// that expiry arithmetic cannot overflow.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// RFC 6749 error codes after which a retry with the same request cannot succeed.
const PERMANENT_ERRORS: [&str; 6] = [
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_request",
];

/// RFC 6749 error codes that announce a temporary condition.
const TRANSIENT_ERRORS: [&str; 3] = ["temporarily_unavailable", "server_error", "slow_down"];

/// A successful token response.
#[derive(Debug)]
pub(crate) struct TokenResponse {
    /// The access token.
    pub(crate) access_token: SecretString,
    /// True when the response had no `token_type` and Bearer was assumed.
    pub(crate) token_type_missing: bool,
    /// `expires_in` in seconds; `None` when absent or unreadable.
    pub(crate) expires_in: Option<u64>,
    /// A new refresh token (rotation), if the endpoint issued one.
    pub(crate) refresh_token: Option<SecretString>,
    /// The granted scope, space-separated.
    pub(crate) scope: Option<String>,
}

/// The fields of a token or error response that are read, from JSON or form data.
#[derive(Default, Deserialize)]
struct RawResponse {
    #[serde(default)]
    access_token: Option<SecretString>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<SecretString>,
    #[serde(default)]
    scope: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    error_description: Option<serde_json::Value>,
}

/// The parts of an HTTP response that parsing reads.
pub(crate) struct ResponseParts<'a> {
    pub(crate) status: u16,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: &'a [u8],
}

/// Parses a token response, or returns the error it carries.
///
/// `secrets` are the values sent in the request; they are replaced by
/// `[redacted]` in any error text taken from the response.
pub(crate) fn parse_token_response(
    parts: &ResponseParts<'_>,
    secrets: &[SecretString],
) -> Result<TokenResponse, Error> {
    let success = (200..300).contains(&parts.status);
    let raw = parse_body(parts.content_type, parts.body);

    // An RFC 6749 section 5.2 error body wins whatever the status: some
    // providers return HTTP 200 with an `error` field.
    if let Ok(raw) = &raw {
        if let Some(error) = raw.error.as_ref().and_then(error_code) {
            let description = raw
                .error_description
                .as_ref()
                .and_then(|value| value.as_str())
                .map(|text| scrub(text, secrets));
            let code = scrub(&error, secrets);
            let permanent = classify(&code, parts.status);
            return Err(Error::Upstream {
                error: code,
                description,
                status: Some(parts.status),
                permanent,
                retry_after: parts.retry_after,
            });
        }
    }

    if !success {
        let permanent =
            (400..500).contains(&parts.status) && parts.status != 408 && parts.status != 429;
        return Err(Error::HttpStatus {
            status: parts.status,
            permanent,
            retry_after: parts.retry_after,
        });
    }

    let raw = raw.map_err(|reason| Error::InvalidResponse {
        reason,
        status: Some(parts.status),
    })?;
    let invalid = |reason: &str| Error::InvalidResponse {
        reason: reason.to_owned(),
        status: Some(parts.status),
    };

    let access_token = match raw.access_token {
        Some(token) if !token.is_empty() => token,
        _ => {
            return Err(invalid(
                "the response has no access_token and no error: check token_url and grant_type",
            ))
        }
    };
    if !access_token
        .expose_secret()
        .bytes()
        .all(|byte| byte.is_ascii_graphic())
    {
        return Err(invalid(
            "the access_token contains spaces, control or non-ASCII characters and cannot be sent in a header",
        ));
    }

    let token_type_missing = match raw.token_type.as_deref() {
        None => true,
        Some(token_type) if token_type.eq_ignore_ascii_case("bearer") => false,
        Some(other) => {
            return Err(Error::UnsupportedTokenType {
                token_type: truncate(other),
            })
        }
    };

    Ok(TokenResponse {
        access_token,
        token_type_missing,
        expires_in: raw.expires_in.as_ref().and_then(read_seconds),
        refresh_token: raw.refresh_token.filter(|token| !token.is_empty()),
        scope: raw.scope.as_ref().and_then(read_scope),
    })
}

/// Parses the body by its Content-Type: form data when it is
/// `application/x-www-form-urlencoded`, JSON otherwise. A body that is not JSON
/// but has no JSON Content-Type is tried as form data as well.
fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<RawResponse, String> {
    // Some .NET-based providers start the body with a UTF-8 byte order mark,
    // which serde_json rejects.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let media_type = content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();

    if media_type == "application/x-www-form-urlencoded" {
        return Ok(parse_form(body));
    }
    match serde_json::from_slice::<RawResponse>(body) {
        Ok(raw) => Ok(raw),
        Err(error) if media_type.contains("json") => Err(format!(
            "the body is not a JSON object ({}): the endpoint must return RFC 6749 JSON",
            strip_position(&error.to_string())
        )),
        Err(_) => {
            let raw = parse_form(body);
            if raw.access_token.is_some() || raw.error.is_some() {
                Ok(raw)
            } else {
                Err(format!(
                    "the body is neither JSON nor form data (Content-Type {:?}): check token_url",
                    truncate(content_type.unwrap_or("none"))
                ))
            }
        }
    }
}

fn parse_form(body: &[u8]) -> RawResponse {
    let mut raw = RawResponse::default();
    for (key, value) in form_urlencoded::parse(body) {
        match key.as_ref() {
            "access_token" => raw.access_token = Some(SecretString::new(value.into_owned())),
            "refresh_token" => raw.refresh_token = Some(SecretString::new(value.into_owned())),
            "token_type" => raw.token_type = Some(value.into_owned()),
            "expires_in" => raw.expires_in = Some(serde_json::Value::String(value.into_owned())),
            "scope" => raw.scope = Some(serde_json::Value::String(value.into_owned())),
            "error" => raw.error = Some(serde_json::Value::String(value.into_owned())),
            "error_description" => {
                raw.error_description = Some(serde_json::Value::String(value.into_owned()));
            }
            _ => {}
        }
    }
    raw
}

/// Returns the error code of an `error` field; an empty string is no error.
/// A non-string value (some APIs nest an object) is reported as `invalid_response`.
fn error_code(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(code) if code.trim().is_empty() => None,
        serde_json::Value::String(code) => Some(truncate(code.trim())),
        _ => Some("invalid_response".to_owned()),
    }
}

/// Classifies an RFC 6749 error code as permanent (true) or transient.
fn classify(code: &str, status: u16) -> bool {
    if PERMANENT_ERRORS.contains(&code) {
        return true;
    }
    if TRANSIENT_ERRORS.contains(&code) {
        return false;
    }
    !(status >= 500 || status == 429 || status == 408)
}

/// Reads `expires_in` leniently: an integer, a fraction (rounded down) or a
/// string of digits. A negative value counts as 0 (use once); anything else is
/// treated as absent.
fn read_seconds(value: &serde_json::Value) -> Option<u64> {
    let seconds = match value {
        serde_json::Value::Number(number) => number
            .as_u64()
            .or_else(|| number.as_i64().map(|value| value.max(0).unsigned_abs()))
            .or_else(|| number.as_f64().map(|value| value.max(0.0).floor() as u64)),
        serde_json::Value::String(text) => {
            let text = text.trim();
            text.parse::<u64>().ok().or_else(|| {
                text.parse::<f64>()
                    .ok()
                    .filter(|value| value.is_finite())
                    .map(|value| value.max(0.0).floor() as u64)
            })
        }
        _ => None,
    };
    if seconds.is_none() {
        tracing::warn!(
            "token response has an unreadable expires_in; the default lifetime is assumed"
        );
    }
    seconds.map(|seconds| seconds.min(MAX_LIFETIME.as_secs()))
}

/// Reads `scope` as a space-separated string or a JSON array of strings.
fn read_scope(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(scope) => Some(scope.clone()),
        serde_json::Value::Array(items) => {
            let tokens: Vec<&str> = items.iter().filter_map(|item| item.as_str()).collect();
            Some(tokens.join(" "))
        }
        _ => None,
    }
}

/// Replaces every occurrence of a sent secret with `[redacted]` and cuts the
/// text to a bounded length.
pub(crate) fn scrub(text: &str, secrets: &[SecretString]) -> String {
    let mut scrubbed = text.to_owned();
    for secret in secrets {
        let value = secret.expose_secret();
        if !value.is_empty() && scrubbed.contains(value) {
            scrubbed = scrubbed.replace(value, "[redacted]");
        }
    }
    truncate(&scrubbed)
}

fn truncate(text: &str) -> String {
    let mut cut: String = text.chars().take(MAX_ERROR_TEXT_CHARS).collect();
    if text.chars().count() > MAX_ERROR_TEXT_CHARS {
        cut.push('…');
    }
    cut
}

/// Removes serde_json's " at line L column C" suffix.
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |index| &message[..index])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, content_type: &str, body: &str) -> Result<TokenResponse, Error> {
        let parts = ResponseParts {
            status,
            content_type: Some(content_type),
            retry_after: None,
            body: body.as_bytes(),
        };
        parse_token_response(&parts, &[SecretString::new("s3cr&t")])
    }

    const JSON: &str = "application/json";

    #[test]
    fn json_success_is_parsed() {
        let response = parse(
            200,
            "application/json; charset=utf-8",
            r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"scope":"a b","refresh_token":"rt-2"}"#,
        )
        .unwrap();
        assert_eq!(response.access_token.expose_secret(), "at-1");
        assert_eq!(response.expires_in, Some(3600));
        assert_eq!(response.scope.as_deref(), Some("a b"));
        assert_eq!(
            response
                .refresh_token
                .as_ref()
                .map(SecretString::expose_secret),
            Some("rt-2")
        );
        assert!(!response.token_type_missing);
    }

    #[test]
    fn form_response_is_parsed_by_content_type() {
        let response = parse(
            200,
            "application/x-www-form-urlencoded; charset=utf-8",
            "access_token=gho_16C7e42F292c6912E7710c838347Ae178B4a&scope=repo%2Cgist&token_type=bearer",
        )
        .unwrap();
        assert_eq!(
            response.access_token.expose_secret(),
            "gho_16C7e42F292c6912E7710c838347Ae178B4a"
        );
        assert_eq!(response.scope.as_deref(), Some("repo,gist"));
        assert_eq!(response.expires_in, None);
    }

    #[test]
    fn lenient_field_forms_are_accepted() {
        let cases = [
            (
                r#"{"access_token":"a","expires_in":"3600"}"#,
                Some(3600),
                true,
            ),
            (
                r#"{"access_token":"a","expires_in":59.9,"token_type":"BEARER"}"#,
                Some(59),
                false,
            ),
            (
                r#"{"access_token":"a","expires_in":-5,"token_type":"bearer"}"#,
                Some(0),
                false,
            ),
            (r#"{"access_token":"a","expires_in":"soon"}"#, None, true),
            (r#"{"access_token":"a","expires_in":null}"#, None, true),
        ];
        for (body, expires_in, token_type_missing) in cases {
            let response = parse(200, JSON, body).unwrap();
            assert_eq!(response.expires_in, expires_in, "{body}");
            assert_eq!(response.token_type_missing, token_type_missing, "{body}");
        }
    }

    #[test]
    fn scope_array_is_joined() {
        let response = parse(200, JSON, r#"{"access_token":"a","scope":["x","y"]}"#).unwrap();
        assert_eq!(response.scope.as_deref(), Some("x y"));
    }

    #[test]
    fn error_body_wins_over_status() {
        let cases = [
            (200, r#"{"error":"invalid_grant"}"#, "invalid_grant", true),
            (
                400,
                r#"{"error":"invalid_client","error_description":"bad"}"#,
                "invalid_client",
                true,
            ),
            (
                503,
                r#"{"error":"temporarily_unavailable"}"#,
                "temporarily_unavailable",
                false,
            ),
            (400, r#"{"error":"custom_thing"}"#, "custom_thing", true),
            (500, r#"{"error":"custom_thing"}"#, "custom_thing", false),
            (200, r#"{"error":{"code":7}}"#, "invalid_response", true),
        ];
        for (status, body, code, permanent) in cases {
            match parse(status, JSON, body) {
                Err(Error::Upstream {
                    error,
                    permanent: actual,
                    status: actual_status,
                    ..
                }) => {
                    assert_eq!(error, code, "{body}");
                    assert_eq!(actual, permanent, "{body}");
                    assert_eq!(actual_status, Some(status), "{body}");
                }
                other => panic!("{body}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn empty_object_is_invalid() {
        let error = parse(200, JSON, "{}").unwrap_err();
        assert!(matches!(error, Error::InvalidResponse { .. }), "{error:?}");
    }

    #[test]
    fn status_without_error_body_is_classified() {
        let cases = [
            (401, true),
            (404, true),
            (429, false),
            (500, false),
            (503, false),
        ];
        for (status, permanent) in cases {
            match parse(status, "text/html", "<html>oops</html>") {
                Err(Error::HttpStatus {
                    status: actual,
                    permanent: actual_permanent,
                    ..
                }) => {
                    assert_eq!(actual, status);
                    assert_eq!(actual_permanent, permanent, "status {status}");
                }
                other => panic!("status {status}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn other_token_types_are_rejected() {
        for token_type in ["mac", "DPoP", "N_A"] {
            let body = format!(r#"{{"access_token":"a","token_type":"{token_type}"}}"#);
            match parse(200, JSON, &body) {
                Err(Error::UnsupportedTokenType { token_type: actual }) => {
                    assert_eq!(actual, token_type);
                }
                other => panic!("{token_type}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn header_breaking_token_is_rejected() {
        for body in [
            r#"{"access_token":"a b"}"#,
            r#"{"access_token":"a\r\nX-Evil: 1"}"#,
            r#"{"access_token":""}"#,
            r#"{"access_token":"é"}"#,
        ] {
            let error = parse(200, JSON, body).unwrap_err();
            assert!(
                matches!(error, Error::InvalidResponse { .. }),
                "{body}: {error:?}"
            );
        }
    }

    #[test]
    fn description_is_scrubbed_of_secrets() {
        let error = parse(
            401,
            JSON,
            r#"{"error":"invalid_client","error_description":"secret s3cr&t is wrong"}"#,
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(!text.contains("s3cr&t"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        let response = parse(200, JSON, "\u{feff}{\"access_token\":\"a\"}").unwrap();
        assert_eq!(response.access_token.expose_secret(), "a");
    }

    #[test]
    fn html_page_is_invalid() {
        let error = parse(200, "text/html", "<html>sign in</html>").unwrap_err();
        match error {
            Error::InvalidResponse { reason, status } => {
                assert!(reason.contains("text/html"), "{reason}");
                assert_eq!(status, Some(200));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_json_is_invalid() {
        let error = parse(200, JSON, "{not json").unwrap_err();
        assert!(matches!(error, Error::InvalidResponse { .. }), "{error:?}");
    }
}
