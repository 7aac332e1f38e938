//! The service configuration: built-in defaults, overridden by a TOML file,
//! overridden by `AUTHCFG_*` environment variables, validated once at start.
//!
//! Every key is read and checked here, so that a bad value stops the process
//! before it binds a port or opens the database. The error names the key, its
//! environment variable, the origin of the value and the fix.
//! `docs/configuration.md` documents the same keys; [`KEYS`] is the list both
//! follow.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use authcfg_model::SecretString;
use config::{Config, Environment, File, FileFormat, Source as _, Value, ValueKind};

use crate::token_url::{HostPattern, TokenUrlPolicy};

/// Name of the configuration file read from the working directory when no
/// `--config` path is given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "authcfg.toml";

/// Prefix of every environment variable that sets a configuration key.
pub const ENV_PREFIX: &str = "AUTHCFG_";

/// Every configuration key, with its default as TOML text (`None` when unset).
pub const KEYS: &[(&str, Option<&str>)] = &[
    ("bind", Some("127.0.0.1:8080")),
    ("data_dir", Some("./authcfg-data")),
    ("master_key", None),
    ("master_key_file", None),
    ("log_format", Some("text")),
    ("log_level", Some("info")),
    ("token_connect_timeout_secs", Some("5")),
    ("token_request_timeout_secs", Some("10")),
    ("refresh_margin_secs", Some("60")),
    ("default_token_lifetime_secs", Some("3600")),
    ("allow_insecure_token_url", Some("false")),
    ("token_hosts", None),
    ("body_limit_bytes", Some("65536")),
    ("provisioning_file", None),
    ("shutdown_timeout_secs", Some("10")),
    ("workers", Some("0")),
];

/// Largest accepted request body limit: 16 MiB.
const MAX_BODY_LIMIT_BYTES: u64 = 16 * 1024 * 1024;

/// Largest accepted timeout, margin or lifetime: one day.
const MAX_SECONDS: u64 = 24 * 60 * 60;

/// Returned by [`Settings::load`] when the configuration cannot be read or a
/// value is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Returned when `--config` names a file that does not exist.
    #[error("configuration file {path:?} not found: create it or fix the --config path")]
    FileNotFound {
        /// The path that was given.
        path: PathBuf,
    },
    /// Returned when the configuration file is not valid TOML or cannot be read.
    #[error("cannot read configuration file {path:?}: {source}")]
    File {
        /// The file that failed.
        path: PathBuf,
        /// The `config` crate's error.
        #[source]
        source: config::ConfigError,
    },
    /// Returned when the sources cannot be merged, which happens only for a
    /// value of the wrong shape such as a table where a key expects text.
    #[error("cannot merge the configuration sources: {0}")]
    Merge(#[source] config::ConfigError),
    /// Returned when the file sets a key that authcfg does not know.
    #[error("unknown configuration key {key:?} in {origin}: remove it or use one of {known}")]
    UnknownKey {
        /// The unknown key.
        key: String,
        /// The file that set it.
        origin: String,
        /// The known keys, comma-separated.
        known: String,
    },
    /// Returned when a key has an invalid value.
    #[error("invalid {key} ({env}) from {origin}: {detail}")]
    Invalid {
        /// The configuration key.
        key: &'static str,
        /// Its environment variable, such as `AUTHCFG_BIND`.
        env: String,
        /// The origin of the value: the file path, the environment or the default.
        origin: String,
        /// The problem and its fix.
        detail: String,
    },
}

/// The format of the log lines on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The source of the master key.
#[derive(Debug)]
pub enum MasterKeySource {
    /// The `master_key` passphrase, set in the file or in `AUTHCFG_MASTER_KEY`.
    Passphrase(SecretString),
    /// A key file named by `master_key_file`; it must exist.
    File(PathBuf),
    /// Neither is set: `<data_dir>/master.key`, generated on first start.
    Generated(PathBuf),
}

/// The validated configuration of the service and the command line tools.
#[derive(Debug)]
pub struct Settings {
    /// Address and port the HTTP server listens on.
    pub bind: SocketAddr,
    /// Directory of the database, the generated master key and admin token.
    pub data_dir: PathBuf,
    /// The source of the master key.
    pub master_key: MasterKeySource,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log filter in `tracing` `EnvFilter` syntax, such as `info` or `authcfg_server=debug`.
    pub log_level: String,
    /// Maximum time to open a connection to a token endpoint.
    pub token_connect_timeout: Duration,
    /// Maximum time for a whole token request, response included.
    pub token_request_timeout: Duration,
    /// How long before expiry a cached access token is renewed.
    pub refresh_margin: Duration,
    /// Lifetime assumed for an access token whose response has no `expires_in`.
    pub default_token_lifetime: Duration,
    /// Whether a plain `http` token URL to a host other than loopback is accepted.
    pub allow_insecure_token_url: bool,
    /// The only hosts a token URL may name. `None` accepts any host.
    pub token_hosts: Option<Vec<HostPattern>>,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// TOML file of data sources applied at start, if any.
    pub provisioning_file: Option<PathBuf>,
    /// Time given to in-flight requests to finish after SIGTERM or SIGINT.
    pub shutdown_timeout: Duration,
    /// Number of HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// `AUTHCFG_*` variables that set no key, to be warned about once logging
    /// is set up (see [`unknown_env_vars`]).
    pub unknown_env_vars: Vec<UnknownEnvVar>,
}

/// An `AUTHCFG_*` environment variable that matches no configuration key,
/// such as a misspelt `AUTHCFG_BINDD`. Only its name is kept, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEnvVar {
    /// The variable name.
    pub name: String,
    /// The variable of the closest key, when one is close enough to be a typo.
    pub did_you_mean: Option<String>,
}

/// Returns the `AUTHCFG_*` variables among `vars` that set no configuration
/// key, in name order. `AUTHCFG_DS_*` (data source credentials) and
/// `AUTHCFG_CONFIG` are not configuration keys and are skipped.
pub fn unknown_env_vars(vars: &[(String, String)]) -> Vec<UnknownEnvVar> {
    let mut unknown: Vec<UnknownEnvVar> = vars
        .iter()
        .filter_map(|(name, _)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            let skipped = rest.is_empty()
                || rest.starts_with("DS_")
                || rest == "CONFIG"
                || KEYS.iter().any(|(key, _)| rest.eq_ignore_ascii_case(key));
            if skipped {
                return None;
            }
            let lower = rest.to_ascii_lowercase();
            let did_you_mean = KEYS
                .iter()
                .map(|(key, _)| (edit_distance(&lower, key), *key))
                .filter(|(distance, key)| *distance <= 2.max(key.len() / 5))
                .min()
                .map(|(_, key)| env_var_of(key));
            Some(UnknownEnvVar {
                name: name.clone(),
                did_you_mean,
            })
        })
        .collect();
    unknown.sort_by(|a, b| a.name.cmp(&b.name));
    unknown.dedup();
    unknown
}

/// Returns the Levenshtein distance of two ASCII-lowercase words.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, b_char) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(a_char != *b_char));
            diagonal = above;
        }
    }
    row[b.len()]
}

impl Settings {
    /// Reads the defaults, the configuration file and the `AUTHCFG_*`
    /// variables of this process, and validates the result.
    ///
    /// `config_path` is the `--config` argument: that file must exist. Without
    /// it, `authcfg.toml` in the working directory is read when it exists.
    ///
    /// # Errors
    ///
    /// Returns the first problem found, naming the key and its environment variable.
    pub fn load(config_path: Option<&Path>) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(config_path, &vars)
    }

    /// Like [`Settings::load`], with the environment given as a list of
    /// variables, so that tests do not depend on the process environment.
    ///
    /// # Errors
    ///
    /// Returns the first problem found, naming the key and its environment variable.
    pub fn load_from(
        config_path: Option<&Path>,
        vars: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let file = match config_path {
            Some(path) if !path.exists() => {
                return Err(ConfigError::FileNotFound {
                    path: path.to_owned(),
                })
            }
            Some(path) => Some(path.to_owned()),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                default.exists().then_some(default)
            }
        };

        let mut builder = Config::builder();
        for (key, default) in KEYS {
            if let Some(default) = default {
                builder = builder
                    .set_default(*key, *default)
                    .map_err(ConfigError::Merge)?;
            }
        }
        if let Some(path) = &file {
            // Parse the file on its own first, so that a syntax error names the file.
            let source = File::from(path.as_path()).format(FileFormat::Toml);
            Config::builder()
                .add_source(source.clone())
                .build()
                .map_err(|source| ConfigError::File {
                    path: path.clone(),
                    source,
                })?;
            builder = builder.add_source(source);
        }

        // Only the variables of known keys are passed on, because the
        // AUTHCFG_DS_* variables carry data source credentials, which must not
        // enter the configuration map. An empty variable counts as unset.
        let env_map: config::Map<String, String> = vars
            .iter()
            .filter(|(name, _)| {
                name.strip_prefix(ENV_PREFIX)
                    .is_some_and(|rest| KEYS.iter().any(|(key, _)| rest.eq_ignore_ascii_case(key)))
            })
            .cloned()
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("AUTHCFG")
                .prefix_separator("_")
                .ignore_empty(true)
                .source(Some(env_map)),
        );

        let merged = builder.build().map_err(ConfigError::Merge)?;
        let values = merged.collect().map_err(ConfigError::Merge)?;
        let mut settings = Self::from_values(values)?;
        settings.unknown_env_vars = unknown_env_vars(vars);
        Ok(settings)
    }

    fn from_values(values: config::Map<String, Value>) -> Result<Self, ConfigError> {
        let values: BTreeMap<String, Value> = values.into_iter().collect();
        if let Some((key, value)) = values
            .iter()
            .find(|(key, _)| !KEYS.iter().any(|(known, _)| known == key))
        {
            let known: Vec<&str> = KEYS.iter().map(|(key, _)| *key).collect();
            return Err(ConfigError::UnknownKey {
                key: key.clone(),
                origin: origin_of(Some(value)),
                known: known.join(", "),
            });
        }
        let reader = Reader { values: &values };

        let bind_text = reader.string("bind")?.unwrap_or_default();
        let bind = bind_text.parse::<SocketAddr>().map_err(|_| {
            reader.invalid(
                "bind",
                format!(
                    "{bind_text:?} is not an address and port: use a form such as \"127.0.0.1:8080\" or \"[::1]:8080\""
                ),
            )
        })?;

        let data_dir = PathBuf::from(reader.string("data_dir")?.unwrap_or_default());
        if data_dir.as_os_str().is_empty() {
            return Err(reader.invalid(
                "data_dir",
                "the path is empty: set a directory such as \"./authcfg-data\"".to_owned(),
            ));
        }

        let master_key = match (
            reader.string("master_key")?,
            reader.string("master_key_file")?,
        ) {
            (Some(_), Some(_)) => {
                return Err(reader.invalid(
                    "master_key",
                    "both master_key and master_key_file are set: keep only one (AUTHCFG_MASTER_KEY or AUTHCFG_MASTER_KEY_FILE)".to_owned(),
                ))
            }
            (Some(passphrase), None) => {
                if passphrase.chars().count() < 16 {
                    return Err(reader.invalid(
                        "master_key",
                        "the passphrase is shorter than 16 characters: use a long random value, for example the output of `openssl rand -base64 32`".to_owned(),
                    ));
                }
                MasterKeySource::Passphrase(SecretString::from(passphrase))
            }
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(reader.invalid(
                        "master_key_file",
                        format!(
                            "{path:?} is not a readable file: create it (for example `openssl rand -base64 32 > {}`) or unset the key to have authcfg generate <data_dir>/master.key",
                            path.display()
                        ),
                    ));
                }
                MasterKeySource::File(path)
            }
            (None, None) => MasterKeySource::Generated(data_dir.join("master.key")),
        };

        let log_format = match reader.string("log_format")?.as_deref() {
            Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            other => {
                return Err(reader.invalid(
                    "log_format",
                    format!(
                        "{:?} is not a log format: use \"text\" or \"json\"",
                        other.unwrap_or_default()
                    ),
                ))
            }
        };

        let log_level = reader.string("log_level")?.unwrap_or_default();
        if let Err(detail) = check_log_filter(&log_level) {
            return Err(reader.invalid("log_level", detail));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            return Err(reader.invalid(
                "log_level",
                format!("{log_level:?} is not a log filter ({error}): {LOG_LEVEL_HINT}"),
            ));
        }

        let token_connect_timeout = reader.seconds("token_connect_timeout_secs", 1)?;
        let token_request_timeout = reader.seconds("token_request_timeout_secs", 1)?;
        if token_request_timeout < token_connect_timeout {
            return Err(reader.invalid(
                "token_request_timeout_secs",
                "the request timeout is shorter than token_connect_timeout_secs: raise it to at least the connect timeout".to_owned(),
            ));
        }
        let refresh_margin = reader.seconds("refresh_margin_secs", 0)?;
        let default_token_lifetime = reader.seconds("default_token_lifetime_secs", 1)?;
        let allow_insecure_token_url = reader.boolean("allow_insecure_token_url")?;
        let token_hosts = match reader.list("token_hosts")? {
            None => None,
            Some(entries) if entries.is_empty() => {
                return Err(reader.invalid(
                    "token_hosts",
                    "the list is empty, which would reject every token endpoint: list at least one host, or remove the key to accept any host".to_owned(),
                ))
            }
            Some(entries) => Some(
                entries
                    .iter()
                    .map(|entry| HostPattern::parse(entry))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|detail| reader.invalid("token_hosts", detail))?,
            ),
        };

        let body_limit_bytes = reader.integer("body_limit_bytes", 1024, MAX_BODY_LIMIT_BYTES)?;
        let body_limit_bytes = usize::try_from(body_limit_bytes).map_err(|_| {
            reader.invalid(
                "body_limit_bytes",
                "the value does not fit this platform".to_owned(),
            )
        })?;

        let provisioning_file = match reader.string("provisioning_file")? {
            None => None,
            Some(path) if path.is_empty() => None,
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(reader.invalid(
                        "provisioning_file",
                        format!("{path:?} is not a readable file: fix the path or unset the key"),
                    ));
                }
                Some(path)
            }
        };

        let shutdown_timeout = reader.seconds("shutdown_timeout_secs", 0)?;
        let workers = reader.integer("workers", 0, 1024)?;
        let workers = usize::try_from(workers).unwrap_or(0);

        Ok(Self {
            bind,
            data_dir,
            master_key,
            log_format,
            log_level,
            token_connect_timeout,
            token_request_timeout,
            refresh_margin,
            default_token_lifetime,
            allow_insecure_token_url,
            token_hosts,
            body_limit_bytes,
            provisioning_file,
            shutdown_timeout,
            workers,
            unknown_env_vars: Vec::new(),
        })
    }

    /// Returns the rules that every token URL must follow.
    pub fn token_url_policy(&self) -> TokenUrlPolicy {
        TokenUrlPolicy {
            allow_insecure: self.allow_insecure_token_url,
            hosts: self.token_hosts.clone(),
        }
    }

    /// Returns the path of the SQLite database inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("authcfg.db")
    }

    /// Returns the path of the file that contains the first admin API token.
    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }
}

/// The fix shown with every rejected `log_level` value.
const LOG_LEVEL_HINT: &str = "use one of the levels trace, debug, info, warn, error or off, or comma-separated directives such as \"info,authcfg_server=debug\" (each directive is a level or target=level)";

/// The levels a `log_level` directive accepts, lowercase.
const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// Checks a `log_level` value more strictly than `EnvFilter` does.
///
/// `EnvFilter` reads a bare word that is not a level, such as `verbose` or
/// `WARNING`, as a target name enabled at every level, which silently turns
/// off all other logging. Here every comma-separated directive must be a
/// level or `target=level` (a target may carry a `[span{field}]` part), and
/// the value must not be empty.
fn check_log_filter(value: &str) -> Result<(), String> {
    let is_level = |word: &str| {
        let word = word.trim();
        LOG_LEVELS
            .iter()
            .any(|level| level.eq_ignore_ascii_case(word))
    };
    let suggestion = |word: &str| -> String {
        let lower = word.trim().to_ascii_lowercase();
        match lower.as_str() {
            "warning" => " (did you mean \"warn\"?)".to_owned(),
            "err" | "fatal" | "critical" => " (did you mean \"error\"?)".to_owned(),
            "verbose" | "all" => " (did you mean \"debug\" or \"trace\"?)".to_owned(),
            "none" | "quiet" | "silent" => " (did you mean \"off\"?)".to_owned(),
            _ => String::new(),
        }
    };

    let directives: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(format!("the value is empty: {LOG_LEVEL_HINT}"));
    }
    for directive in directives {
        match directive.rsplit_once('=') {
            None if !is_level(directive) => {
                return Err(format!(
                    "{directive:?} is not a log level{}: {LOG_LEVEL_HINT}",
                    suggestion(directive)
                ));
            }
            Some((target, level)) if target.trim().is_empty() || !is_level(level) => {
                return Err(format!(
                    "{directive:?} is not a directive of the form target=level{}: {LOG_LEVEL_HINT}",
                    suggestion(level)
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Returns the environment variable that sets `key`, such as `AUTHCFG_BIND`.
pub fn env_var_of(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

fn origin_of(value: Option<&Value>) -> String {
    match value.and_then(Value::origin) {
        Some("the environment") | Some("environment") => "the environment".to_owned(),
        Some(origin) => origin.to_owned(),
        None => "the built-in default".to_owned(),
    }
}

/// Reads typed values from the merged map and words the errors.
struct Reader<'a> {
    values: &'a BTreeMap<String, Value>,
}

impl Reader<'_> {
    fn invalid(&self, key: &'static str, detail: String) -> ConfigError {
        ConfigError::Invalid {
            key,
            env: env_var_of(key),
            origin: origin_of(self.values.get(key)),
            detail,
        }
    }

    fn string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.values.get(key) {
            None => Ok(None),
            Some(value) => value.clone().into_string().map(Some).map_err(|_| {
                self.invalid(key, "expected text: quote the value in TOML".to_owned())
            }),
        }
    }

    /// Reads a list: a TOML array of text, or comma-separated text as an
    /// environment variable gives it.
    fn list(&self, key: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(value) = self.values.get(key) else {
            return Ok(None);
        };
        let expected = || {
            self.invalid(
                key,
                "expected a list of text: use a TOML array such as [\"a\", \"b\"], or comma-separated text in the environment variable".to_owned(),
            )
        };
        match value.clone().into_array() {
            Ok(items) => items
                .into_iter()
                .enumerate()
                .map(|(index, item)| match item.kind {
                    ValueKind::String(text) => Ok(text),
                    other => Err(self.invalid(
                        key,
                        format!(
                            "item {} of the list, {other}, is not text: quote it, as in [\"a\", \"b\"]",
                            index + 1
                        ),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Err(_) => match &value.kind {
                ValueKind::String(text) => Ok(Some(text.split(',').map(str::to_owned).collect())),
                _ => Err(expected()),
            },
        }
    }

    fn boolean(&self, key: &'static str) -> Result<bool, ConfigError> {
        match self.values.get(key) {
            None => Ok(false),
            Some(value) => value.clone().into_bool().map_err(|_| {
                self.invalid(
                    key,
                    format!(
                        "{:?} is not a boolean: use true or false",
                        value.to_string()
                    ),
                )
            }),
        }
    }

    fn integer(&self, key: &'static str, min: u64, max: u64) -> Result<u64, ConfigError> {
        let Some(value) = self.values.get(key) else {
            return Ok(min);
        };
        let number = value
            .clone()
            .into_int()
            .ok()
            .and_then(|number| u64::try_from(number).ok());
        match number {
            Some(number) if (min..=max).contains(&number) => Ok(number),
            _ => Err(self.invalid(
                key,
                format!(
                    "{:?} is not a whole number from {min} to {max}: set one in that range",
                    value.to_string()
                ),
            )),
        }
    }

    fn seconds(&self, key: &'static str, min: u64) -> Result<Duration, ConfigError> {
        self.integer(key, min, MAX_SECONDS).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn load_env(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let empty = tempfile::tempdir().unwrap();
        let missing_default = empty.path().join("none.toml");
        std::fs::write(&missing_default, "").unwrap();
        Settings::load_from(Some(&missing_default), &vars(pairs))
    }

    #[test]
    fn defaults_are_valid() {
        let settings = load_env(&[]).unwrap();

        assert_eq!(settings.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(settings.data_dir, PathBuf::from("./authcfg-data"));
        assert_eq!(settings.log_format, LogFormat::Text);
        assert!(!settings.allow_insecure_token_url);
        assert_eq!(settings.body_limit_bytes, 65536);
        assert!(matches!(
            settings.master_key,
            MasterKeySource::Generated(ref path) if path.ends_with("master.key")
        ));
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("authcfg.toml");
        std::fs::write(&file, "bind = \"127.0.0.1:9000\"\nlog_format = \"json\"\n").unwrap();

        let settings =
            Settings::load_from(Some(&file), &vars(&[("AUTHCFG_BIND", "127.0.0.1:9100")])).unwrap();

        assert_eq!(settings.bind, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(settings.log_format, LogFormat::Json);
    }

    #[test]
    fn token_hosts_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("authcfg.toml");
        std::fs::write(
            &file,
            "token_hosts = [\"login.example.com\", \"*.okta.com\"]\n",
        )
        .unwrap();
        let from_file = Settings::load_from(Some(&file), &[]).unwrap();
        let from_env =
            load_env(&[("AUTHCFG_TOKEN_HOSTS", "login.example.com, *.okta.com")]).unwrap();

        for settings in [from_file, from_env] {
            let hosts: Vec<String> = settings
                .token_hosts
                .as_ref()
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(hosts, ["login.example.com", "*.okta.com"]);
        }
        assert_eq!(load_env(&[]).unwrap().token_hosts, None);
    }

    #[test]
    fn bad_token_hosts_name_the_entry() {
        let error = load_env(&[("AUTHCFG_TOKEN_HOSTS", "login.example.com,https://okta.com")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("AUTHCFG_TOKEN_HOSTS"), "{error}");
        assert!(error.contains("\"https://okta.com\" is a URL"), "{error}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("authcfg.toml");
        std::fs::write(&file, "token_hosts = []\n").unwrap();
        let error = Settings::load_from(Some(&file), &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("the list is empty"), "{error}");

        std::fs::write(&file, "token_hosts = [\"a.example.com\", 443]\n").unwrap();
        let error = Settings::load_from(Some(&file), &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("item 2 of the list, 443, is not text"),
            "{error}"
        );

        std::fs::write(&file, "token_hosts = 443\n").unwrap();
        let error = Settings::load_from(Some(&file), &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected a list of text"), "{error}");
    }

    #[test]
    fn empty_variable_counts_as_unset() {
        let settings = load_env(&[("AUTHCFG_MASTER_KEY_FILE", ""), ("AUTHCFG_BIND", "")]).unwrap();

        assert!(matches!(settings.master_key, MasterKeySource::Generated(_)));
        assert_eq!(settings.bind, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn datasource_variables_are_not_keys() {
        let settings = load_env(&[("AUTHCFG_DS_CRM_PROD_CLIENT_SECRET", "s3cr3t")]).unwrap();

        assert_eq!(settings.bind, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn invalid_values_name_key_and_variable() {
        // (environment, expected key, expected variable)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case<'_>] = &[
            (&[("AUTHCFG_BIND", "localhost")], "bind", "AUTHCFG_BIND"),
            (
                &[("AUTHCFG_LOG_FORMAT", "xml")],
                "log_format",
                "AUTHCFG_LOG_FORMAT",
            ),
            (
                &[("AUTHCFG_LOG_LEVEL", "info,[")],
                "log_level",
                "AUTHCFG_LOG_LEVEL",
            ),
            (
                &[("AUTHCFG_TOKEN_REQUEST_TIMEOUT_SECS", "ten")],
                "token_request_timeout_secs",
                "AUTHCFG_TOKEN_REQUEST_TIMEOUT_SECS",
            ),
            (
                &[("AUTHCFG_TOKEN_CONNECT_TIMEOUT_SECS", "0")],
                "token_connect_timeout_secs",
                "AUTHCFG_TOKEN_CONNECT_TIMEOUT_SECS",
            ),
            (
                &[("AUTHCFG_TOKEN_CONNECT_TIMEOUT_SECS", "20")],
                "token_request_timeout_secs",
                "AUTHCFG_TOKEN_REQUEST_TIMEOUT_SECS",
            ),
            (
                &[("AUTHCFG_ALLOW_INSECURE_TOKEN_URL", "maybe")],
                "allow_insecure_token_url",
                "AUTHCFG_ALLOW_INSECURE_TOKEN_URL",
            ),
            (
                &[("AUTHCFG_BODY_LIMIT_BYTES", "10")],
                "body_limit_bytes",
                "AUTHCFG_BODY_LIMIT_BYTES",
            ),
            (
                &[("AUTHCFG_MASTER_KEY", "short")],
                "master_key",
                "AUTHCFG_MASTER_KEY",
            ),
            (
                &[
                    ("AUTHCFG_MASTER_KEY", "a-long-enough-passphrase"),
                    ("AUTHCFG_MASTER_KEY_FILE", "/nonexistent/key"),
                ],
                "master_key",
                "AUTHCFG_MASTER_KEY",
            ),
            (
                &[("AUTHCFG_MASTER_KEY_FILE", "/nonexistent/key")],
                "master_key_file",
                "AUTHCFG_MASTER_KEY_FILE",
            ),
            (
                &[(
                    "AUTHCFG_PROVISIONING_FILE",
                    "/nonexistent/provisioning.toml",
                )],
                "provisioning_file",
                "AUTHCFG_PROVISIONING_FILE",
            ),
            (&[("AUTHCFG_WORKERS", "-1")], "workers", "AUTHCFG_WORKERS"),
        ];

        for (pairs, expected_key, expected_env) in cases {
            let error = load_env(pairs).unwrap_err();

            match &error {
                ConfigError::Invalid { key, env, .. } => {
                    assert_eq!(key, expected_key, "case {pairs:?}");
                    assert_eq!(env, expected_env, "case {pairs:?}");
                }
                other => panic!("case {pairs:?}: expected an invalid value, got {other}"),
            }
            assert!(
                error.to_string().contains(expected_env),
                "case {pairs:?}: {error}"
            );
        }
    }

    #[test]
    fn log_level_accepts_levels_and_directives() {
        for value in [
            "info",
            "WARN",
            "off",
            "info,authcfg_server=debug",
            "warn,actix_web=error",
            "authcfg_server[request]=trace",
        ] {
            let settings = load_env(&[("AUTHCFG_LOG_LEVEL", value)]);

            assert!(settings.is_ok(), "case {value:?}: {:?}", settings.err());
        }
    }

    #[test]
    fn log_level_rejects_unknown_level_with_hint() {
        // (value, text the error must contain)
        let cases: &[(&str, &str)] = &[
            ("verbose", "\"verbose\" is not a log level"),
            ("WARNING", "did you mean \"warn\""),
            ("info,authcfg_server=loud", "target=level"),
            (",", "the value is empty"),
        ];

        for (value, expected) in cases {
            let error = load_env(&[("AUTHCFG_LOG_LEVEL", value)]).unwrap_err();
            let message = error.to_string();

            assert!(
                matches!(
                    error,
                    ConfigError::Invalid {
                        key: "log_level",
                        ..
                    }
                ),
                "case {value:?}: {message}"
            );
            assert!(
                message.contains("AUTHCFG_LOG_LEVEL"),
                "case {value:?}: {message}"
            );
            assert!(message.contains(expected), "case {value:?}: {message}");
            assert!(
                message.contains("trace, debug, info, warn, error or off"),
                "{message}"
            );
        }
    }

    #[test]
    fn unknown_env_vars_are_reported_by_name() {
        let settings = load_env(&[
            ("AUTHCFG_BINDD", "127.0.0.1:9000"),
            ("AUTHCFG_LOGLEVEL", "debug"),
            ("AUTHCFG_TOTALLY_NEW", "secret-value"),
            ("AUTHCFG_DS_CRM_PROD_CLIENT_ID", "crm"),
            ("AUTHCFG_CONFIG", "/etc/authcfg.toml"),
            ("AUTHCFG_BIND", "127.0.0.1:9100"),
            ("HOME", "/root"),
        ])
        .unwrap();

        assert_eq!(
            settings.unknown_env_vars,
            vec![
                UnknownEnvVar {
                    name: "AUTHCFG_BINDD".to_owned(),
                    did_you_mean: Some("AUTHCFG_BIND".to_owned()),
                },
                UnknownEnvVar {
                    name: "AUTHCFG_LOGLEVEL".to_owned(),
                    did_you_mean: Some("AUTHCFG_LOG_LEVEL".to_owned()),
                },
                UnknownEnvVar {
                    name: "AUTHCFG_TOTALLY_NEW".to_owned(),
                    did_you_mean: None,
                },
            ]
        );
        assert!(!format!("{:?}", settings.unknown_env_vars).contains("secret-value"));
    }

    #[test]
    fn master_key_is_not_in_errors() {
        let error = load_env(&[
            ("AUTHCFG_MASTER_KEY", "canary-passphrase-0123456789"),
            ("AUTHCFG_BIND", "nope"),
        ])
        .unwrap_err();

        assert!(!error.to_string().contains("canary-passphrase"));
    }

    #[test]
    fn unknown_file_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("authcfg.toml");
        std::fs::write(&file, "bnd = \"127.0.0.1:9000\"\n").unwrap();

        let error = Settings::load_from(Some(&file), &[]).unwrap_err();

        assert!(matches!(error, ConfigError::UnknownKey { ref key, .. } if key == "bnd"));
    }

    #[test]
    fn missing_config_file_is_rejected() {
        let error =
            Settings::load_from(Some(Path::new("/nonexistent/authcfg.toml")), &[]).unwrap_err();

        assert!(matches!(error, ConfigError::FileNotFound { .. }));
    }

    #[test]
    fn file_syntax_error_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broken.toml");
        std::fs::write(&file, "bind = \n").unwrap();

        let error = Settings::load_from(Some(&file), &[]).unwrap_err();

        assert!(error.to_string().contains("broken.toml"), "{error}");
    }
}
