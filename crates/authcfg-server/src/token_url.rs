//! The token URL policy: where authcfg may send client credentials.
//!
//! Credentials are sent to the token endpoint, so a plain `http` URL is
//! accepted only for a loopback host, unless the operator sets
//! `allow_insecure_token_url = true`. When the operator sets `token_hosts`,
//! a token URL must also name one of the listed hosts.
//!
//! The checks parse the URL and never resolve or connect to the host.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

/// The operator's rules for token URLs, from `allow_insecure_token_url` and
/// `token_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenUrlPolicy {
    /// Accept a plain `http` URL to a host that is not loopback.
    pub allow_insecure: bool,
    /// The only hosts a token URL may name. `None` accepts any host.
    pub hosts: Option<Vec<HostPattern>>,
}

/// One entry of `token_hosts`: a host name, `*.` and a domain for every
/// host below that domain, or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host name, lowercase, without a trailing dot.
    Name(String),
    /// Any host below this domain (lowercase, without a trailing dot), but
    /// not the domain itself.
    Below(String),
    /// Exactly this IP address.
    Address(IpAddr),
}

impl HostPattern {
    /// Parses one `token_hosts` entry, such as `login.example.com`,
    /// `*.okta.com`, `127.0.0.1` or `[::1]`.
    ///
    /// # Errors
    ///
    /// Returns a message that names the entry and the expected form.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let text = entry.trim();
        let form = "give a host name such as \"login.example.com\", \"*.\" and a domain such as \"*.okta.com\", or an IP address such as \"127.0.0.1\" or \"[::1]\"";
        if text.is_empty() {
            return Err(format!("the list has an empty entry: {form}"));
        }
        if text.contains("://") || text.contains('/') {
            return Err(format!(
                "{entry:?} is a URL, not a host: {form}, without scheme or path"
            ));
        }
        if text.contains(',') {
            return Err(format!(
                "{entry:?} contains a comma: list each host as an entry of its own, such as [\"a.example.com\", \"b.example.com\"]"
            ));
        }
        if text.contains('@') {
            return Err(format!(
                "{entry:?} contains user info: {form}, without \"user@\""
            ));
        }
        let (below, host) = match text.strip_prefix("*.") {
            Some(domain) => (true, domain),
            None => (false, text),
        };
        if host.contains('*') {
            return Err(format!(
                "{entry:?} has a \"*\" that is not the whole first label: a wildcard is allowed only as \"*.\" before a domain, such as \"*.okta.com\""
            ));
        }
        // A bare IPv6 address is accepted as well as the bracketed URL form.
        let parsed = match host.parse::<std::net::Ipv6Addr>() {
            Ok(address) => Host::Ipv6(address),
            Err(_) if host.contains(':') && !host.starts_with('[') => {
                return Err(format!(
                    "{entry:?} has a port or is not an IP address: {form}, without port; a token_url matches whatever its port"
                ))
            }
            Err(_) => Host::parse(host).map_err(|_| format!("{entry:?} is not a host: {form}"))?,
        };
        match parsed {
            Host::Domain(domain) => {
                let domain = normalize_domain(&domain);
                check_domain(entry, &domain, form)?;
                if below && !domain.contains('.') {
                    return Err(format!(
                        "{entry:?} would match every host of a top-level domain: list a domain below it, such as \"*.okta.com\""
                    ));
                }
                Ok(if below {
                    Self::Below(domain)
                } else {
                    Self::Name(domain)
                })
            }
            Host::Ipv4(_) | Host::Ipv6(_) if below => Err(format!(
                "{entry:?} puts \"*.\" before an IP address: list the address alone"
            )),
            // URL parsing reads "127.1" or "2130706433" as addresses too; in
            // the list, only the usual form is accepted, to catch typos.
            Host::Ipv4(_) if host.parse::<std::net::Ipv4Addr>().is_err() => Err(format!(
                "{entry:?} is read as an IPv4 address: write it as four decimal numbers, such as \"127.0.0.1\", or give a host name"
            )),
            Host::Ipv4(address) => Ok(Self::Address(IpAddr::V4(address))),
            Host::Ipv6(address) => Ok(Self::Address(IpAddr::V6(address))),
        }
    }

    fn matches(&self, host: &Host<&str>) -> bool {
        match (self, host) {
            (Self::Name(name), Host::Domain(domain)) => *name == normalize_domain(domain),
            (Self::Below(suffix), Host::Domain(domain)) => {
                let domain = normalize_domain(domain);
                domain
                    .strip_suffix(suffix.as_str())
                    .and_then(|rest| rest.strip_suffix('.'))
                    .is_some_and(|rest| !rest.is_empty())
            }
            (Self::Address(IpAddr::V4(allowed)), Host::Ipv4(address)) => allowed == address,
            (Self::Address(IpAddr::V6(allowed)), Host::Ipv6(address)) => allowed == address,
            _ => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Below(domain) => write!(f, "*.{domain}"),
            Self::Address(IpAddr::V4(address)) => write!(f, "{address}"),
            Self::Address(IpAddr::V6(address)) => write!(f, "[{address}]"),
        }
    }
}

/// Checks a normalized domain name: labels of letters, digits, `-` and `_`
/// (IDNA names arrive as `xn--` labels), none empty.
fn check_domain(entry: &str, domain: &str, form: &str) -> Result<(), String> {
    if domain.is_empty() || domain.split('.').any(str::is_empty) {
        return Err(format!("{entry:?} has an empty label: {form}"));
    }
    if let Some(bad) = domain
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{entry:?} contains {bad:?}, which a host name cannot: {form}"
        ));
    }
    if domain
        .split('.')
        .any(|label| label.starts_with('-') || label.ends_with('-'))
    {
        return Err(format!(
            "{entry:?} has a label that starts or ends with '-', which a host name cannot: {form}"
        ));
    }
    Ok(())
}

fn normalize_domain(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

impl TokenUrlPolicy {
    /// Checks `raw` against the policy. A URL that does not parse passes,
    /// because the model's validation reports it with a better message.
    ///
    /// # Errors
    ///
    /// Returns the detail for the `/auth/token_url` field when the URL uses
    /// plain `http` to a host that is not loopback and `allow_insecure` is
    /// false, or names a host that `hosts` does not list.
    pub fn check(&self, raw: &str) -> Result<(), String> {
        let Ok(url) = Url::parse(raw) else {
            return Ok(());
        };
        if let Some(hosts) = &self.hosts {
            let allowed = url
                .host()
                .is_some_and(|host| hosts.iter().any(|pattern| pattern.matches(&host)));
            if !allowed {
                let listed: Vec<String> = hosts.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "token_url {:?} names host {:?}, which token_hosts does not list ({}): use a token endpoint on a listed host, or add the host to token_hosts (AUTHCFG_TOKEN_HOSTS)",
                    url.as_str(),
                    url.host_str().unwrap_or_default(),
                    listed.join(", ")
                ));
            }
        }
        if self.allow_insecure || url.scheme() != "http" || is_loopback(url.host()) {
            return Ok(());
        }
        Err(format!(
            "token_url {:?} uses plain http to a host that is not loopback, which would send the client secret unencrypted: use https, or set allow_insecure_token_url = true (AUTHCFG_ALLOW_INSECURE_TOKEN_URL) for a trusted network",
            url.as_str()
        ))
    }
}

fn is_loopback(host: Option<Host<&str>>) -> bool {
    match host {
        Some(Host::Domain(domain)) => {
            let domain = normalize_domain(domain);
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insecure(allow_insecure: bool) -> TokenUrlPolicy {
        TokenUrlPolicy {
            allow_insecure,
            hosts: None,
        }
    }

    fn listing(entries: &[&str]) -> TokenUrlPolicy {
        TokenUrlPolicy {
            allow_insecure: false,
            hosts: Some(
                entries
                    .iter()
                    .map(|entry| HostPattern::parse(entry).unwrap())
                    .collect(),
            ),
        }
    }

    #[test]
    fn host_list_table() {
        let policy = listing(&["login.example.com", "*.okta.com", "127.0.0.1", "[::1]"]);
        let cases: &[(&str, bool)] = &[
            ("https://login.example.com/oauth/token", true),
            ("https://LOGIN.Example.COM./oauth/token", true),
            ("https://login.example.com:8443/token", true),
            ("https://other.example.com/token", false),
            ("https://example.com/token", false),
            ("https://evil-login.example.com/token", false),
            ("https://login.example.com.evil.test/token", false),
            ("https://dev-1.okta.com/oauth2/v1/token", true),
            ("https://a.b.okta.com/token", true),
            ("https://okta.com/token", false),
            ("https://notokta.com/token", false),
            ("http://127.0.0.1:9000/token", true),
            ("http://127.0.0.2:9000/token", false),
            ("http://[::1]:9000/token", true),
            ("http://localhost:9000/token", false),
        ];

        for (url, accepted) in cases {
            assert_eq!(policy.check(url).is_ok(), *accepted, "{url}");
        }
    }

    #[test]
    fn host_list_keeps_http_rule() {
        let detail = listing(&["login.example.com"])
            .check("http://login.example.com/token")
            .unwrap_err();

        assert!(detail.contains("allow_insecure_token_url"), "{detail}");
    }

    #[test]
    fn host_list_rejection_names_setting() {
        let detail = listing(&["login.example.com", "*.okta.com"])
            .check("https://api.example.org/token")
            .unwrap_err();

        assert!(detail.contains("\"api.example.org\""), "{detail}");
        assert!(detail.contains("login.example.com, *.okta.com"), "{detail}");
        assert!(detail.contains("AUTHCFG_TOKEN_HOSTS"), "{detail}");
    }

    #[test]
    fn host_patterns_parse_and_print() {
        let cases: &[(&str, &str)] = &[
            ("login.example.com", "login.example.com"),
            (" Login.Example.COM. ", "login.example.com"),
            ("*.okta.com", "*.okta.com"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]", "[::1]"),
            ("::1", "[::1]"),
        ];
        for (entry, printed) in cases {
            assert_eq!(
                HostPattern::parse(entry).unwrap().to_string(),
                *printed,
                "{entry}"
            );
        }
    }

    #[test]
    fn bad_host_patterns_are_named() {
        let cases: &[(&str, &str)] = &[
            ("", "empty entry"),
            ("https://login.example.com", "is a URL"),
            ("login.example.com/token", "is a URL"),
            ("login.example.com:443", "without port"),
            ("*.*.example.com", "wildcard is allowed only"),
            ("login*.example.com", "wildcard is allowed only"),
            ("*.127.0.0.1", "IP address"),
            ("a..b", "empty label"),
            ("*.", "is not a host"),
            ("user@host", "user info"),
            ("a.com,b.com", "an entry of its own"),
            ("a.com;b.com", "contains ';'"),
            ("a.com!", "contains '!'"),
            ("a=b.com", "contains '='"),
            ("123", "four decimal numbers"),
            ("127.1", "four decimal numbers"),
            ("0x7f.0.0.1", "four decimal numbers"),
            ("-bad.example.com", "starts or ends with '-'"),
            ("bad-.example.com", "starts or ends with '-'"),
            ("*.com", "top-level domain"),
        ];
        for (entry, expected) in cases {
            let detail = HostPattern::parse(entry).unwrap_err();
            assert!(detail.contains(expected), "{entry:?}: {detail}");
            if !entry.is_empty() {
                assert!(
                    detail.contains(&format!("{entry:?}")),
                    "{entry:?}: {detail}"
                );
            }
        }
    }

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
                insecure(*allow_insecure).check(url).is_ok(),
                *accepted,
                "{url} with allow_insecure = {allow_insecure}"
            );
        }
    }

    #[test]
    fn rejection_names_the_setting() {
        let detail = insecure(false)
            .check("http://login.example.com/token")
            .unwrap_err();

        assert!(detail.contains("allow_insecure_token_url"));
        assert!(detail.contains("AUTHCFG_ALLOW_INSECURE_TOKEN_URL"));
    }
}
