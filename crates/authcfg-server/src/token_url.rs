//! The token URL policy: credentials are sent to the token endpoint, so a
//! plain `http` URL is accepted only for a loopback host, unless the operator
//! sets `allow_insecure_token_url = true`.
//!
//! The check parses the URL and never resolves or connects to the host.

use std::net::IpAddr;

use url::{Host, Url};

/// Checks `raw` against the policy. A URL that does not parse passes, because
/// the model's validation reports it with a better message.
///
/// # Errors
///
/// Returns the detail for the `/auth/token_url` field when the URL uses plain
/// `http` to a host that is not loopback and `allow_insecure` is false.
pub fn check_token_url(raw: &str, allow_insecure: bool) -> Result<(), String> {
    if allow_insecure {
        return Ok(());
    }
    let Ok(url) = Url::parse(raw) else {
        return Ok(());
    };
    if url.scheme() != "http" {
        return Ok(());
    }
    let loopback = match url.host() {
        Some(Host::Domain(domain)) => {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            domain == "localhost" || domain.ends_with(".localhost")
        }
        Some(Host::Ipv4(address)) => address.is_loopback(),
        Some(Host::Ipv6(address)) => {
            address.is_loopback()
                || address
                    .to_ipv4_mapped()
                    .is_some_and(|mapped| IpAddr::V4(mapped).is_loopback())
        }
        None => false,
    };
    if loopback {
        return Ok(());
    }
    Err(format!(
        "token_url {:?} uses plain http to a host that is not loopback, which would send the client secret unencrypted: use https, or set allow_insecure_token_url = true (AUTHCFG_ALLOW_INSECURE_TOKEN_URL) for a trusted network",
        url.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_table() {
        let cases: &[(&str, bool, bool)] = &[
            ("https://login.example.com/oauth/token", false, true),
            ("http://127.0.0.1:8080/token", false, true),
            ("http://127.8.9.10/token", false, true),
            ("http://localhost:9000/token", false, true),
            ("http://auth.localhost/token", false, true),
            ("http://[::1]:9000/token", false, true),
            ("http://[::ffff:127.0.0.1]/token", false, true),
            ("http://login.example.com/token", false, false),
            ("http://10.0.0.5/token", false, false),
            ("http://169.254.169.254/token", false, false),
            ("http://[::ffff:10.0.0.5]/token", false, false),
            ("http://localhost.example.com/token", false, false),
            ("http://login.example.com/token", true, true),
            ("not a url", false, true),
        ];

        for (url, allow_insecure, accepted) in cases {
            assert_eq!(
                check_token_url(url, *allow_insecure).is_ok(),
                *accepted,
                "{url} with allow_insecure = {allow_insecure}"
            );
        }
    }

    #[test]
    fn rejection_names_the_setting() {
        let detail = check_token_url("http://login.example.com/token", false).unwrap_err();

        assert!(detail.contains("allow_insecure_token_url"));
        assert!(detail.contains("AUTHCFG_ALLOW_INSECURE_TOKEN_URL"));
    }
}
