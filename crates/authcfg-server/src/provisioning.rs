//! Provisioning: data sources declared in a TOML file and applied at start.
//!
//! Operators who keep configuration in version control list their data
//! sources in one file (the `provisioning_file` key). Applying it is
//! idempotent: a data source in the file is created when missing and updated
//! when it differs, and one that is not in the file is deleted only when the
//! file sets `prune = true`. The file contains no secrets: a key that looks like
//! one (such as `client_secret`) is rejected, because credentials come from
//! the environment or the credentials API, never from a file in a repository.
//!
//! ```toml
//! prune = false
//!
//! [[datasources]]
//! name = "crm-prod"
//! description = "CRM production API"
//! base_url = "https://api.crm.example.com/v2"
//!
//! [datasources.auth]
//! method = "bearer"
//! token_url = "https://login.example.com/oauth/token"
//! grant_type = "client_credentials"
//! scope = "api.read"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use authcfg_model::{parse_json, CreateDataSource, DataSource, DataSourceId};
use authcfg_store::Store;

use crate::create::{create_datasource, CreateError};
use crate::env_import::{env_var_name, env_var_prefix};
use crate::token_url::TokenUrlPolicy;

/// Number of data sources read from the store per page.
const PAGE_SIZE: usize = 500;

/// Options of [`apply_provisioning_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvisionOptions {
    /// The rules every token URL must follow, as for the API: from
    /// `allow_insecure_token_url` and `token_hosts`.
    pub token_url: TokenUrlPolicy,
}

/// The outcome of applying a provisioning file, by data source name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvisionReport {
    /// Data sources that were created.
    pub created: Vec<String>,
    /// Data sources whose description, base URL or auth config was changed.
    pub updated: Vec<String>,
    /// Data sources that already matched the file.
    pub unchanged: Vec<String>,
    /// Data sources deleted because they are not in the file and `prune = true`.
    pub deleted: Vec<String>,
    /// Data sources not in the file that were kept, because `prune` is off.
    pub kept: Vec<String>,
    /// Ids of the updated and deleted data sources, whose cached tokens are stale.
    pub changed_ids: Vec<DataSourceId>,
}

/// A provisioning failure. Nothing was written when it is returned, except
/// for [`ProvisionError::Store`] and [`ProvisionError::PrefixTaken`], which
/// may come after some data sources were written.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Returned when the file cannot be read.
    #[error("cannot read the provisioning file {path:?}: {source}; check provisioning_file")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Returned when the file is not valid TOML. The message leaves out the
    /// offending line, which could hold a value that should not be logged.
    #[error(
        "provisioning file {path:?} is not valid TOML at line {line}, column {column}: {message}"
    )]
    Syntax {
        /// The file.
        path: PathBuf,
        /// One-based line of the error.
        line: usize,
        /// One-based column of the error.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// Returned when a key looks like a secret, such as `client_secret`.
    #[error(
        "provisioning file {path:?} contains the key {key}, which looks like a secret: remove it; \
         {hint}"
    )]
    SecretInFile {
        /// The file.
        path: PathBuf,
        /// The dotted path of the key, such as `datasources[0].client_secret`.
        key: String,
        /// The place where the value belongs instead.
        hint: String,
    },
    /// Returned when entries are malformed or invalid: unknown keys, a failed
    /// validation, a refused token URL or a duplicate name.
    #[error("provisioning file {path:?} is invalid: {}", problems.join("; "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// One message per problem, each naming the entry and field.
        problems: Vec<String>,
    },
    /// Returned when the store fails to list, create, update or delete.
    #[error("applying the provisioning file failed: {0}")]
    Store(#[from] authcfg_store::Error),
    /// Returned when another process created a data source after the file
    /// was checked, and its name maps to the environment variable prefix of
    /// an entry that was to be created. Entries before it may have been
    /// written.
    #[error("applying the provisioning file failed: {0}")]
    PrefixTaken(#[source] CreateError),
}

impl From<CreateError> for ProvisionError {
    fn from(error: CreateError) -> Self {
        match error {
            CreateError::Store(error) => ProvisionError::Store(error),
            prefix_taken @ CreateError::PrefixTaken { .. } => {
                ProvisionError::PrefixTaken(prefix_taken)
            }
        }
    }
}

/// The parsed file.
struct ProvisioningFile {
    prune: bool,
    datasources: Vec<CreateDataSource>,
}

/// Applies the provisioning file at `path` with the default options, which
/// reject plain `http` token URLs to hosts other than loopback.
///
/// # Errors
///
/// See [`apply_provisioning_with`].
pub fn apply_provisioning(store: &Store, path: &Path) -> Result<ProvisionReport, ProvisionError> {
    apply_provisioning_with(store, path, ProvisionOptions::default())
}

/// Applies the provisioning file at `path`: creates and updates data sources
/// to match it, and deletes the others when it sets `prune = true`.
///
/// The whole file is parsed and checked before the first write.
///
/// # Errors
///
/// [`ProvisionError::Read`], [`ProvisionError::Syntax`],
/// [`ProvisionError::SecretInFile`] and [`ProvisionError::Invalid`] before any
/// write; [`ProvisionError::Store`] when the store fails, and
/// [`ProvisionError::PrefixTaken`] when another process created a data source
/// with the prefix of an entry after the check.
pub fn apply_provisioning_with(
    store: &Store,
    path: &Path,
    options: ProvisionOptions,
) -> Result<ProvisionReport, ProvisionError> {
    let file = read_file(path, &options)?;
    let mut report = ProvisionReport::default();

    let existing = list_all_datasources(store)?;
    check_prefixes(&file, &existing).map_err(|problems| ProvisionError::Invalid {
        path: path.to_owned(),
        problems,
    })?;

    // Pruning comes before creating, because the store rejects a new name
    // whose environment variable prefix a data source still uses: a file
    // that replaces `crm-prod` with `crm_prod` needs the old one gone first.
    let declared: BTreeSet<&str> = file.datasources.iter().map(|ds| ds.name.as_str()).collect();
    for current in existing
        .iter()
        .filter(|ds| !declared.contains(ds.name.as_str()))
    {
        if file.prune {
            store.delete_datasource(&current.name)?;
            report.deleted.push(current.name.clone());
            report.changed_ids.push(current.id);
        } else {
            report.kept.push(current.name.clone());
        }
    }

    for desired in &file.datasources {
        let Some(current) = existing.iter().find(|ds| ds.name == desired.name) else {
            create_datasource(store, desired)?;
            report.created.push(desired.name.clone());
            continue;
        };

        let target = DataSource {
            description: desired.description.clone(),
            base_url: desired.base_url.clone(),
            auth: desired.auth.clone(),
            ..current.clone()
        };
        if target == *current {
            report.unchanged.push(desired.name.clone());
            continue;
        }
        store.update_datasource(&target, current.version)?;
        report.updated.push(desired.name.clone());
        report.changed_ids.push(current.id);
    }

    Ok(report)
}

/// Rejects a file after which two data sources would read the same
/// `AUTHCFG_DS_*` variables, such as `crm-prod` and `crm_prod`, because the
/// credentials import at the next start would fail on them.
fn check_prefixes(file: &ProvisioningFile, existing: &[DataSource]) -> Result<(), Vec<String>> {
    let declared: BTreeSet<&str> = file.datasources.iter().map(|ds| ds.name.as_str()).collect();
    let kept = existing
        .iter()
        .map(|ds| ds.name.as_str())
        .filter(|name| !file.prune && !declared.contains(name));

    let mut by_prefix: BTreeMap<String, &str> = BTreeMap::new();
    let mut problems = Vec::new();
    for name in declared.iter().copied().chain(kept) {
        let prefix = env_var_prefix(name);
        if let Some(other) = by_prefix.get(&prefix) {
            problems.push(format!(
                "data sources {other:?} and {name:?} would both read variables starting with \
                 {prefix}: rename one of them"
            ));
            continue;
        }
        by_prefix.insert(prefix, name);
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Reads, parses and checks the whole file.
fn read_file(path: &Path, options: &ProvisionOptions) -> Result<ProvisioningFile, ProvisionError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProvisionError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        let (line, column) = error
            .span()
            .map(|span| line_and_column(&text, span.start))
            .unwrap_or((1, 1));
        ProvisionError::Syntax {
            path: path.to_owned(),
            line,
            column,
            message: error.message().trim_end().to_owned(),
        }
    })?;

    // Secrets first, so that no later message can quote one.
    find_secret_key(&toml::Value::Table(table.clone()), "", path)?;

    let mut problems = Vec::new();
    let invalid = |problems: Vec<String>| ProvisionError::Invalid {
        path: path.to_owned(),
        problems,
    };

    let mut prune = false;
    let mut entries: &[toml::Value] = &[];
    for (key, value) in &table {
        match (key.as_str(), value) {
            ("prune", toml::Value::Boolean(flag)) => prune = *flag,
            ("prune", _) => problems.push("prune must be true or false".to_owned()),
            ("datasources", toml::Value::Array(array)) => entries = array,
            ("datasources", _) => problems.push(
                "datasources must be an array of tables, written as [[datasources]]".to_owned(),
            ),
            (other, _) => problems.push(format!(
                "unknown top-level key {other:?}: use prune or [[datasources]]"
            )),
        }
    }

    let mut datasources: Vec<CreateDataSource> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let label = match entry.get("name").and_then(toml::Value::as_str) {
            Some(name) => format!("datasources[{index}] ({name:?})"),
            None => format!("datasources[{index}]"),
        };

        // The model's strict JSON parser names unknown and missing fields
        // with a JSON pointer, which reads the same for a TOML entry.
        let json = match serde_json::to_vec(entry) {
            Ok(json) => json,
            Err(error) => {
                problems.push(format!("{label}: {error}"));
                continue;
            }
        };
        let request: CreateDataSource = match parse_json(&json) {
            Ok(request) => request,
            Err(errors) => {
                problems.extend(describe(&label, errors.errors()));
                continue;
            }
        };
        if let Err(errors) = request.validate() {
            problems.extend(describe(&label, errors.errors()));
            continue;
        }
        if let Some(url) = &request.auth.token_url {
            if let Err(detail) = options.token_url.check(url) {
                problems.push(format!("{label}: /auth/token_url: {detail}"));
                continue;
            }
        }
        if datasources.iter().any(|ds| ds.name == request.name) {
            problems.push(format!(
                "{label}: the name {:?} appears twice: keep one entry per data source",
                request.name
            ));
            continue;
        }
        datasources.push(request);
    }

    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    Ok(ProvisioningFile { prune, datasources })
}

/// Formats validation errors of one entry, such as
/// `datasources[0] ("crm"): /auth/token_url: token_url is required`.
fn describe(label: &str, errors: &[authcfg_model::FieldError]) -> Vec<String> {
    errors
        .iter()
        .map(|error| {
            if error.pointer.is_empty() {
                format!("{label}: {}", error.detail)
            } else {
                format!("{label}: {}: {}", error.pointer, error.detail)
            }
        })
        .collect()
}

/// Returns true for a key name that contains a secret in common configurations.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    key == "token"
        || key == "client_assertion"
        || key.ends_with("_token")
        || key.contains("secret")
        || key.contains("password")
        || key.contains("passwd")
        || key.contains("passphrase")
        || key.contains("credential")
        || key.contains("apikey")
        || key.contains("api_key")
        || key.contains("private_key")
        || key.contains("master_key")
}

/// Walks the document and rejects the first key that looks like a secret.
fn find_secret_key(value: &toml::Value, at: &str, path: &Path) -> Result<(), ProvisionError> {
    match value {
        toml::Value::Table(table) => {
            for (key, child) in table {
                let key_path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                if is_secret_key(key) {
                    return Err(ProvisionError::SecretInFile {
                        path: path.to_owned(),
                        key: key_path,
                        hint: secret_hint(value, key),
                    });
                }
                find_secret_key(child, &key_path, path)?;
            }
        }
        toml::Value::Array(array) => {
            for (index, child) in array.iter().enumerate() {
                find_secret_key(child, &format!("{at}[{index}]"), path)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Says where a secret belongs, naming the environment variable when the
/// entry's name and the field are known.
fn secret_hint(entry: &toml::Value, key: &str) -> String {
    let key = key.to_ascii_lowercase().replace('-', "_");
    if key.contains("master_key") || key.contains("passphrase") {
        return "the master key belongs in the master_key_file setting \
                (AUTHCFG_MASTER_KEY_FILE), never in a file of data sources"
            .to_owned();
    }

    let field = authcfg_model::CredentialField::ALL
        .into_iter()
        .find(|field| field.as_str() == key);
    match (entry.get("name").and_then(toml::Value::as_str), field) {
        (Some(name), Some(field)) => format!(
            "provide it through {} (or {}_FILE) or PUT /v1/datasources/{name}/credentials",
            env_var_name(name, field),
            env_var_name(name, field)
        ),
        _ => "provide credentials through the AUTHCFG_DS_<NAME>_* environment variables or \
              PUT /v1/datasources/<name>/credentials"
            .to_owned(),
    }
}

/// Converts a byte offset into one-based line and column numbers.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |rest| rest.chars().count())
        + 1;
    (line, column)
}

/// Reads every data source, page by page.
fn list_all_datasources(store: &Store) -> Result<Vec<DataSource>, authcfg_store::Error> {
    let mut datasources = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_datasources(cursor.as_deref(), PAGE_SIZE)?;
        datasources.extend(page.items);
        match page.next_cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => return Ok(datasources),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::open_store;

    use authcfg_model::{AuthConfig, AuthMethod, Credentials, GrantType};

    use crate::token_url::HostPattern;

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("provisioning.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn names(store: &Store) -> Vec<String> {
        list_all_datasources(store)
            .unwrap()
            .into_iter()
            .map(|ds| ds.name)
            .collect()
    }

    const TWO_SOURCES: &str = r#"
[[datasources]]
name = "crm-prod"
description = "CRM production API"
base_url = "https://api.crm.example.com/v2"

[datasources.auth]
method = "bearer"
token_url = "https://login.example.com/oauth/token"
grant_type = "client_credentials"
scope = "api.read"

[datasources.auth.token_params]
audience = "https://api.crm.example.com"

[[datasources]]
name = "billing"
auth = { method = "basic" }
"#;

    #[test]
    fn creates_then_is_idempotent() {
        let (dir, store) = open_store();
        let path = write(&dir, TWO_SOURCES);

        let first = apply_provisioning(&store, &path).unwrap();
        assert_eq!(first.created, ["crm-prod", "billing"]);
        assert!(first.updated.is_empty());

        let crm = store.get_datasource("crm-prod").unwrap();
        assert_eq!(crm.description.as_deref(), Some("CRM production API"));
        assert_eq!(crm.auth.method, AuthMethod::Bearer);
        assert_eq!(crm.auth.grant_type, Some(GrantType::ClientCredentials));
        assert_eq!(
            crm.auth.token_params.get("audience").map(String::as_str),
            Some("https://api.crm.example.com")
        );

        let second = apply_provisioning(&store, &path).unwrap();
        assert!(second.created.is_empty());
        assert!(second.updated.is_empty());
        assert!(second.changed_ids.is_empty());
        assert_eq!(second.unchanged, ["crm-prod", "billing"]);
        assert_eq!(
            store.get_datasource("crm-prod").unwrap().version,
            crm.version
        );
    }

    #[test]
    fn changed_entry_updates_and_keeps_credentials() {
        let (dir, store) = open_store();
        apply_provisioning(&store, &write(&dir, TWO_SOURCES)).unwrap();
        store
            .put_credentials("crm-prod", &Credentials::new("crm-client", "crm-secret"))
            .unwrap();
        let before = store.get_datasource("crm-prod").unwrap();

        let changed = TWO_SOURCES.replace("scope = \"api.read\"", "scope = \"api.read api.write\"");
        let report = apply_provisioning(&store, &write(&dir, &changed)).unwrap();

        assert_eq!(report.updated, ["crm-prod"]);
        assert_eq!(report.unchanged, ["billing"]);
        assert_eq!(report.changed_ids, [before.id]);
        let after = store.get_datasource("crm-prod").unwrap();
        assert_eq!(after.auth.scope.as_deref(), Some("api.read api.write"));
        assert_eq!(after.id, before.id);
        assert!(after.version > before.version);
        assert!(store.credentials_summary("crm-prod").unwrap().is_some());
    }

    #[test]
    fn deletes_only_with_prune() {
        let (dir, store) = open_store();
        let extra = store
            .create_datasource(&CreateDataSource {
                name: "manual".to_owned(),
                description: None,
                base_url: None,
                auth: AuthConfig::basic(),
            })
            .unwrap();

        let kept = apply_provisioning(&store, &write(&dir, TWO_SOURCES)).unwrap();
        assert_eq!(kept.kept, ["manual"]);
        assert!(kept.deleted.is_empty());
        assert_eq!(names(&store), ["billing", "crm-prod", "manual"]);

        let pruning = format!("prune = true\n{TWO_SOURCES}");
        let pruned = apply_provisioning(&store, &write(&dir, &pruning)).unwrap();
        assert_eq!(pruned.deleted, ["manual"]);
        assert_eq!(pruned.changed_ids, [extra.id]);
        assert_eq!(names(&store), ["billing", "crm-prod"]);
    }

    #[test]
    fn secret_keys_are_rejected() {
        let cases = [
            (
                "[[datasources]]\nname = \"crm\"\nclient_secret = \"hunter2-value\"\nauth = { method = \"basic\" }\n",
                "datasources[0].client_secret",
                "AUTHCFG_DS_CRM_CLIENT_SECRET",
            ),
            (
                "[[datasources]]\nname = \"crm\"\n[datasources.auth]\nmethod = \"bearer\"\ntoken_url = \"https://login.example.com/token\"\ngrant_type = \"refresh_token\"\nrefresh_token = \"rt-value\"\n",
                "datasources[0].auth.refresh_token",
                "AUTHCFG_DS_<NAME>_",
            ),
            (
                "[[datasources]]\nname = \"crm\"\n[datasources.credentials]\nclient_id = \"abc\"\n",
                "datasources[0].credentials",
                "PUT /v1/datasources",
            ),
            (
                "[[datasources]]\nname = \"crm\"\n[datasources.auth]\nmethod = \"bearer\"\ntoken_url = \"https://login.example.com/token\"\ngrant_type = \"client_credentials\"\n[datasources.auth.token_params]\nx-api-key = \"key-value\"\n",
                "datasources[0].auth.token_params.x-api-key",
                "AUTHCFG_DS_",
            ),
            ("master_key = \"mk-value\"\n", "master_key", "AUTHCFG_MASTER_KEY_FILE"),
        ];

        for (text, key, hint) in cases {
            let (dir, store) = open_store();
            let error = apply_provisioning(&store, &write(&dir, text)).unwrap_err();
            let message = error.to_string();
            match &error {
                ProvisionError::SecretInFile { key: found, .. } => assert_eq!(found, key),
                other => panic!("expected SecretInFile for {key}, got {other}"),
            }
            assert!(message.contains(hint), "no hint {hint:?} in: {message}");
            assert!(
                !message.contains("-value"),
                "the message shows a value: {message}"
            );
            assert!(
                names(&store).is_empty(),
                "a rejected file created data sources"
            );
        }
    }

    #[test]
    fn invalid_entries_change_nothing() {
        // Each case: a file whose first entry is valid and whose second is
        // not, and a text that the problem must contain.
        let valid = "[[datasources]]\nname = \"good\"\nauth = { method = \"basic\" }\n";
        let cases = [
            (
                "[[datasources]]\nname = \"bad\"\ncolour = \"red\"\nauth = { method = \"basic\" }\n",
                "datasources[1] (\"bad\"): /colour",
            ),
            (
                "[[datasources]]\nname = \"bad\"\nauth = { method = \"bearer\" }\n",
                "/auth/token_url",
            ),
            (
                "[[datasources]]\nname = \"Bad Name\"\nauth = { method = \"basic\" }\n",
                "/name",
            ),
            ("[[datasources]]\nname = \"bad\"\n", "/auth"),
            (
                "[[datasources]]\nname = \"bad\"\n[datasources.auth]\nmethod = \"bearer\"\ntoken_url = \"http://login.example.com/token\"\ngrant_type = \"client_credentials\"\n",
                "allow_insecure_token_url",
            ),
            (
                "[[datasources]]\nname = \"good\"\nauth = { method = \"basic\" }\n",
                "appears twice",
            ),
        ];
        // Top-level keys must come before the first table.
        let top_level = [
            ("colour = \"red\"\n", "unknown top-level key \"colour\""),
            ("prune = \"yes\"\n", "prune must be true or false"),
        ];
        let texts = cases
            .iter()
            .map(|(bad, expected)| (format!("{valid}{bad}"), *expected))
            .chain(
                top_level
                    .iter()
                    .map(|(bad, expected)| (format!("{bad}{valid}"), *expected)),
            );

        for (text, expected) in texts {
            let (dir, store) = open_store();
            let error = apply_provisioning(&store, &write(&dir, &text)).unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(error, ProvisionError::Invalid { .. }),
                "expected Invalid for {text:?}, got {message}"
            );
            assert!(message.contains(expected), "no {expected:?} in: {message}");
            assert!(
                names(&store).is_empty(),
                "an invalid file created data sources"
            );
        }
    }

    #[test]
    fn colliding_prefixes_are_rejected() {
        let (dir, store) = open_store();
        store
            .create_datasource(&CreateDataSource {
                name: "crm-prod".to_owned(),
                description: None,
                base_url: None,
                auth: AuthConfig::basic(),
            })
            .unwrap();
        let colliding = "[[datasources]]\nname = \"crm_prod\"\nauth = { method = \"basic\" }\n";

        let error = apply_provisioning(&store, &write(&dir, colliding)).unwrap_err();

        let message = error.to_string();
        assert!(matches!(error, ProvisionError::Invalid { .. }), "{message}");
        assert!(message.contains("AUTHCFG_DS_CRM_PROD_"), "{message}");
        assert_eq!(names(&store), ["crm-prod"]);

        // With prune, the old name goes, so the new one is free.
        let pruning = format!("prune = true\n{colliding}");
        let report = apply_provisioning(&store, &write(&dir, &pruning)).unwrap();
        assert_eq!(report.created, ["crm_prod"]);
        assert_eq!(report.deleted, ["crm-prod"]);
    }

    #[test]
    fn store_prefix_error_names_prefix() {
        // A data source created by another process between the check and the
        // insert reaches provisioning as the store's rejection.
        let store_error = authcfg_store::Error::NameKeyTaken {
            name: "crm_prod".to_owned(),
            existing: "crm-prod".to_owned(),
            key: "CRM_PROD".to_owned(),
        };

        let error = ProvisionError::from(CreateError::from(store_error));

        let message = error.to_string();
        assert!(matches!(error, ProvisionError::PrefixTaken(_)), "{message}");
        for part in ["\"crm_prod\"", "\"crm-prod\"", "AUTHCFG_DS_CRM_PROD_"] {
            assert!(message.contains(part), "no {part} in: {message}");
        }
    }

    /// Returns the TOML blocks of a Markdown text, each without its fences.
    fn toml_blocks(markdown: &str) -> Vec<String> {
        markdown
            .split("```toml\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn documented_examples_apply() {
        // The example of this file's header, with the `//! ` prefixes removed.
        let header: String = include_str!("provisioning.rs")
            .lines()
            .take_while(|line| line.starts_with("//!"))
            .map(|line| format!("{}\n", line.trim_start_matches("//!").trim_start()))
            .collect();
        let header_examples = toml_blocks(&header);
        let guide = include_str!("../../../docs/configuration.md");
        let section = guide
            .split("\n## Provisioning file\n")
            .nth(1)
            .expect("docs/configuration.md has a Provisioning file section")
            .split("\n## ")
            .next()
            .unwrap();
        let guide_examples = toml_blocks(section);

        assert_eq!(header_examples.len(), 1, "{header}");
        assert_eq!(
            guide_examples.first(),
            header_examples.first(),
            "the guide's first example differs from the module's"
        );
        for example in header_examples.iter().chain(&guide_examples) {
            let (dir, store) = open_store();
            let declared: Vec<String> = example
                .parse::<toml::Table>()
                .unwrap()
                .get("datasources")
                .and_then(toml::Value::as_array)
                .unwrap()
                .iter()
                .map(|entry| entry["name"].as_str().unwrap().to_owned())
                .collect();

            let report = apply_provisioning(&store, &write(&dir, example))
                .unwrap_or_else(|error| panic!("{error}\n{example}"));

            assert_eq!(report.created, declared, "{example}");
        }
    }

    #[test]
    fn insecure_token_url_allowed_by_option() {
        let (dir, store) = open_store();
        let path = write(
            &dir,
            "[[datasources]]\nname = \"lab\"\n[datasources.auth]\nmethod = \"bearer\"\ntoken_url = \"http://auth.lab.internal/token\"\ngrant_type = \"client_credentials\"\n",
        );
        let options = ProvisionOptions {
            token_url: TokenUrlPolicy {
                allow_insecure: true,
                hosts: None,
            },
        };

        let report = apply_provisioning_with(&store, &path, options).unwrap();

        assert_eq!(report.created, ["lab"]);
    }

    #[test]
    fn unlisted_token_host_creates_nothing() {
        let (dir, store) = open_store();
        let path = write(
            &dir,
            "[[datasources]]\nname = \"ok\"\n[datasources.auth]\nmethod = \"bearer\"\ntoken_url = \"https://login.example.com/token\"\ngrant_type = \"client_credentials\"\n\n[[datasources]]\nname = \"elsewhere\"\n[datasources.auth]\nmethod = \"bearer\"\ntoken_url = \"https://auth.example.org/token\"\ngrant_type = \"client_credentials\"\n",
        );
        let options = ProvisionOptions {
            token_url: TokenUrlPolicy {
                allow_insecure: false,
                hosts: Some(vec![HostPattern::parse("login.example.com").unwrap()]),
            },
        };

        let error = apply_provisioning_with(&store, &path, options)
            .unwrap_err()
            .to_string();

        assert!(error.contains("\"auth.example.org\""), "{error}");
        assert!(error.contains("token_hosts"), "{error}");
        assert!(store.list_datasources(None, 10).unwrap().items.is_empty());
    }

    #[test]
    fn syntax_error_hides_the_line() {
        let (dir, store) = open_store();
        let path = write(
            &dir,
            "[[datasources]]\nname = \"crm\"\ndescription = \"unterminated-value\n",
        );

        let error = apply_provisioning(&store, &path).unwrap_err();

        match &error {
            ProvisionError::Syntax { line, .. } => assert_eq!(*line, 3),
            other => panic!("expected Syntax, got {other}"),
        }
        assert!(!error.to_string().contains("unterminated-value"));
    }

    #[test]
    fn missing_file_names_path() {
        let (dir, store) = open_store();
        let path = dir.path().join("absent.toml");

        let error = apply_provisioning(&store, &path).unwrap_err();

        assert!(matches!(error, ProvisionError::Read { .. }));
        assert!(error.to_string().contains("absent.toml"));
    }
}
