//! Credentials from the environment.
//!
//! Operators often hold secrets in a secret manager that injects environment
//! variables, so `serve` start-up and `credentials import-env` read them. For a
//! data source named `crm-prod` the variables are
//! `AUTHCFG_DS_CRM_PROD_CLIENT_ID`, `..._CLIENT_SECRET`, `..._USERNAME`,
//! `..._PASSWORD` and `..._REFRESH_TOKEN`. Each may instead be given as a
//! `..._FILE` variant that names a file. One trailing newline (`\n` or
//! `\r\n`) of that file is stripped, so files written by `echo` work.
//!
//! The import is idempotent: a value equal to the stored one is not written,
//! so it keeps the credentials version and the cached tokens. Fields that the
//! environment does not name keep their stored value. A stored refresh token
//! that differs from the variable is kept unless the client id or secret
//! changes too, because the token endpoint may have rotated it. The report
//! and every error name variables only, never their values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use authcfg_model::{
    datasource_name_key, AuthConfig, AuthMethod, CredentialField, Credentials, CredentialsSummary,
    DataSource, DataSourceId, GrantType, SecretString,
};
use authcfg_store::Store;

/// Prefix of every credentials variable.
pub const ENV_PREFIX: &str = "AUTHCFG_DS_";

/// Suffix of the variant of a variable that names a file holding the value.
pub const FILE_SUFFIX: &str = "_FILE";

/// Longest accepted credential value, in bytes; the store enforces the same limit.
const MAX_VALUE_LEN: usize = 16 * 1024;

/// Number of data sources read from the store per page.
const PAGE_SIZE: usize = 500;

/// Returns the prefix of the variables of a data source: `crm-prod` gives
/// `AUTHCFG_DS_CRM_PROD_`.
///
/// The part after `AUTHCFG_DS_` is the name key of [`datasource_name_key`]:
/// ASCII letters are upper-cased, digits are kept and every other character
/// becomes `_`, so `crm-prod` and `crm_prod` share a prefix. [`import_env`]
/// rejects such a pair.
pub fn env_var_prefix(datasource_name: &str) -> String {
    format!("{ENV_PREFIX}{}_", datasource_name_key(datasource_name))
}

/// Returns the variable that provides `field` for a data source, such as
/// `AUTHCFG_DS_CRM_PROD_CLIENT_SECRET`.
pub fn env_var_name(datasource_name: &str, field: CredentialField) -> String {
    format!("{}{}", env_var_prefix(datasource_name), field.env_suffix())
}

/// The outcome of an import, by variable and data source name only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Variables whose value differed from the stored one and was written.
    pub imported: Vec<String>,
    /// Variables whose value equals the stored one; nothing was written for them.
    pub unchanged: Vec<String>,
    /// Refresh token variables that differ from the stored refresh token and
    /// were not imported, because the token endpoint may have rotated the
    /// stored one since the variable was first imported. Replace a stored
    /// refresh token with `authcfg credentials set`, the credentials API, or
    /// together with a new client id or secret.
    pub kept_stored: Vec<String>,
    /// Variables starting with `AUTHCFG_DS_` that match no data source and
    /// credential field, such as a typo or a deleted data source.
    pub unmatched: Vec<String>,
    /// Data sources that still have no credentials after the import.
    pub without_credentials: Vec<String>,
    /// Variables that a data source's grant needs and that are neither set nor
    /// stored, such as the refresh token of a `refresh_token` data source.
    pub missing: Vec<String>,
    /// Data sources whose credentials changed; their cached tokens are stale.
    pub changed: Vec<ChangedDataSource>,
}

/// A data source whose credentials an import changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedDataSource {
    /// The data source name.
    pub name: String,
    /// The data source id, the key of its cached tokens.
    pub id: DataSourceId,
    /// The credentials version after the import.
    pub credentials_version: u64,
}

/// An import failure. Nothing was written when it is returned, except for
/// [`ImportError::Store`], which may come after some data sources were
/// written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Returned when two data sources map to the same variable prefix, such
    /// as `crm-prod` and `crm_prod`, so their variables are ambiguous.
    #[error(
        "data sources {first:?} and {second:?} both read variables starting with {prefix}: \
         delete one of them with `authcfg datasource delete NAME`, and create it again under \
         a name with another prefix if it is still needed"
    )]
    PrefixCollision {
        /// The shared prefix, such as `AUTHCFG_DS_CRM_PROD_`.
        prefix: String,
        /// One data source.
        first: String,
        /// The other data source.
        second: String,
    },
    /// Returned when variables are set but unusable: both a variable and its
    /// `_FILE` variant, an unreadable file, an empty or malformed value, or a
    /// data source without stored credentials that lacks its client id or secret.
    /// Each problem names the variable and the fix, never the value.
    #[error("invalid credentials in the environment: {}", problems.join("; "))]
    Invalid {
        /// One message per problem.
        problems: Vec<String>,
    },
    /// Returned when the store fails to list, read or write.
    #[error("importing credentials from the environment failed: {0}")]
    Store(#[from] authcfg_store::Error),
}

/// The value of one credential field and the variable that set it.
struct EnvValue {
    /// The variable as the operator wrote it, `_FILE` suffix included.
    variable: String,
    /// The value, read from the file for a `_FILE` variable.
    value: SecretString,
}

/// The fields that the environment sets for one data source.
type FieldValues = BTreeMap<CredentialField, EnvValue>;

/// Imports the credentials in `vars` into the store, for every data source
/// that has matching variables.
///
/// Variables that do not start with `AUTHCFG_DS_` are ignored. Every value is
/// read and checked before the first write, so a problem in one variable
/// leaves every data source as it was.
///
/// # Errors
///
/// [`ImportError::PrefixCollision`] when two data sources share a prefix,
/// [`ImportError::Invalid`] for unusable variables, [`ImportError::Store`]
/// when the store fails.
pub fn import_env(store: &Store, vars: &[(String, String)]) -> Result<ImportReport, ImportError> {
    let datasources = list_all_datasources(store)?;
    let by_key = index_by_key(&datasources)?;
    let mut report = ImportReport::default();
    let mut problems = Vec::new();

    let found = sort_variables(vars, &by_key, &mut report, &mut problems);

    // Merge with what is stored and check everything before writing anything.
    let mut writes = Vec::new();
    for (datasource, mut fields) in found.into_values() {
        let stored = store
            .unseal_credentials(&datasource.name)?
            .map(|unsealed| unsealed.credentials);

        if let Some(variable) = keep_rotated_refresh_token(stored.as_ref(), &mut fields) {
            report.kept_stored.push(variable);
        }

        let Some(merged) = merge(datasource, stored.as_ref(), &fields, &mut problems) else {
            continue;
        };

        let mut changed = false;
        for (field, env) in &fields {
            if stored_value(stored.as_ref(), *field) == Some(env.value.expose_secret()) {
                report.unchanged.push(env.variable.clone());
            } else {
                report.imported.push(env.variable.clone());
                changed = true;
            }
        }
        if changed {
            writes.push((datasource, merged));
        }
    }
    if !problems.is_empty() {
        return Err(ImportError::Invalid { problems });
    }

    // Write the changed credentials.
    // NOTE: `put_credentials` takes no expected version, so a refresh token
    // that a running server rotates between the read above and this write
    // is overwritten with the one read. The window is one store call wide.
    for (datasource, credentials) in &writes {
        let summary = store.put_credentials(&datasource.name, credentials)?;
        report.changed.push(ChangedDataSource {
            name: datasource.name.clone(),
            id: datasource.id,
            credentials_version: summary.version,
        });
    }

    report_missing(store, &datasources, &mut report)?;
    report.imported.sort();
    report.unchanged.sort();
    Ok(report)
}

/// Sorts the `AUTHCFG_DS_*` variables into the fields of data sources,
/// reading `_FILE` variants; unmatched variables go to the report.
fn sort_variables<'a>(
    vars: &[(String, String)],
    by_key: &BTreeMap<String, &'a DataSource>,
    report: &mut ImportReport,
    problems: &mut Vec<String>,
) -> BTreeMap<&'a str, (&'a DataSource, FieldValues)> {
    let mut found: BTreeMap<&str, (&DataSource, FieldValues)> = BTreeMap::new();
    let mut sorted: Vec<&(String, String)> = vars.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (variable, raw) in sorted {
        let Some(rest) = variable.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some((datasource, field, is_file)) = match_variable(rest, by_key) else {
            report.unmatched.push(variable.clone());
            continue;
        };

        let value = if is_file {
            match read_value_file(variable, raw) {
                Ok(value) => value,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            }
        } else {
            SecretString::new(raw.as_str())
        };

        let (_, fields) = found
            .entry(datasource.name.as_str())
            .or_insert_with(|| (datasource, FieldValues::new()));
        if let Some(previous) = fields.get(&field) {
            problems.push(format!(
                "{} and {variable} are both set: set only one of them",
                previous.variable
            ));
            continue;
        }
        fields.insert(
            field,
            EnvValue {
                variable: variable.clone(),
                value,
            },
        );
    }
    found
}

/// Removes the refresh token from `fields` when it differs from the stored
/// one and the client stays the same, and returns its variable.
///
/// The token endpoint may rotate the refresh token, and the server then
/// stores the new one while the environment still contains the first. A
/// refresh token belongs to its client, so a stored one is replaced only
/// together with a new client id or secret.
fn keep_rotated_refresh_token(
    stored: Option<&Credentials>,
    fields: &mut FieldValues,
) -> Option<String> {
    let differs = |field: CredentialField, env: &EnvValue| {
        stored_value(stored, field) != Some(env.value.expose_secret())
    };
    let client_changed = [CredentialField::ClientId, CredentialField::ClientSecret]
        .into_iter()
        .any(|field| fields.get(&field).is_some_and(|env| differs(field, env)));
    let refresh_differs = stored_value(stored, CredentialField::RefreshToken).is_some()
        && fields
            .get(&CredentialField::RefreshToken)
            .is_some_and(|env| differs(CredentialField::RefreshToken, env));

    if refresh_differs && !client_changed {
        fields
            .remove(&CredentialField::RefreshToken)
            .map(|env| env.variable)
    } else {
        None
    }
}

/// Adds the data sources without credentials and the variables that grants
/// still need to the report. The summaries suffice for this, so no secret is
/// opened for it.
fn report_missing(
    store: &Store,
    datasources: &[DataSource],
    report: &mut ImportReport,
) -> Result<(), authcfg_store::Error> {
    for datasource in datasources {
        match store.credentials_summary(&datasource.name)? {
            None => report.without_credentials.push(datasource.name.clone()),
            Some(summary) => report.missing.extend(
                needed_fields(&datasource.auth)
                    .iter()
                    .filter(|field| !is_stored(&summary, **field))
                    .map(|field| env_var_name(&datasource.name, *field)),
            ),
        }
    }
    Ok(())
}

/// Reads every data source, page by page.
pub(crate) fn list_all_datasources(store: &Store) -> Result<Vec<DataSource>, authcfg_store::Error> {
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

/// Maps each data source's name key (`CRM_PROD`) to it, rejecting two data
/// sources that share one.
fn index_by_key(datasources: &[DataSource]) -> Result<BTreeMap<String, &DataSource>, ImportError> {
    let mut by_key: BTreeMap<String, &DataSource> = BTreeMap::new();
    for datasource in datasources {
        let key = datasource_name_key(&datasource.name);
        if let Some(existing) = by_key.get(&key) {
            return Err(ImportError::PrefixCollision {
                prefix: env_var_prefix(&datasource.name),
                first: existing.name.clone(),
                second: datasource.name.clone(),
            });
        }
        by_key.insert(key, datasource);
    }
    Ok(by_key)
}

/// Finds the data source and field of a variable name without the
/// `AUTHCFG_DS_` prefix, such as `CRM_PROD_CLIENT_SECRET_FILE`.
///
/// A name such as `A_CLIENT_ID` could in principle split as data source `A`
/// or `A_CLIENT`. No field suffix is another suffix plus a word, so at most
/// one split names both an existing data source and a field.
fn match_variable<'a>(
    rest: &str,
    by_key: &BTreeMap<String, &'a DataSource>,
) -> Option<(&'a DataSource, CredentialField, bool)> {
    for is_file in [true, false] {
        let without_file = if is_file {
            match rest.strip_suffix(FILE_SUFFIX) {
                Some(stripped) => stripped,
                None => continue,
            }
        } else {
            rest
        };
        for field in CredentialField::ALL {
            let Some(key) = without_file
                .strip_suffix(field.env_suffix())
                .and_then(|key| key.strip_suffix('_'))
            else {
                continue;
            };
            if let Some(datasource) = by_key.get(key) {
                return Some((datasource, field, is_file));
            }
        }
    }
    None
}

/// Reads the file named by a `_FILE` variable and strips one trailing newline.
fn read_value_file(variable: &str, path: &str) -> Result<SecretString, String> {
    if path.is_empty() {
        return Err(format!(
            "{variable} is empty: set it to the path of the file that holds the value"
        ));
    }
    let path = PathBuf::from(path);
    let mut contents = std::fs::read_to_string(&path).map_err(|error| {
        format!(
            "{variable} names {}, which cannot be read as UTF-8 text ({error}): check the path \
             and the file's permissions",
            path.display()
        )
    })?;

    // Only one newline goes, so that a value that really ends in a newline
    // is still rejected by validation instead of being silently changed.
    if contents.ends_with("\r\n") {
        contents.truncate(contents.len() - 2);
    } else if contents.ends_with('\n') {
        contents.truncate(contents.len() - 1);
    }
    Ok(SecretString::new(contents))
}

/// Returns the fields beyond the client id and secret that the grant of
/// `auth` needs, as `Credentials::missing_for` defines them.
fn needed_fields(auth: &AuthConfig) -> &'static [CredentialField] {
    if auth.method != AuthMethod::Bearer {
        return &[];
    }
    match auth.grant_type {
        Some(GrantType::Password) => &[CredentialField::Username, CredentialField::Password],
        Some(GrantType::RefreshToken | GrantType::AuthorizationCode) => {
            &[CredentialField::RefreshToken]
        }
        _ => &[],
    }
}

/// Returns true when the summary shows a value for `field`.
fn is_stored(summary: &CredentialsSummary, field: CredentialField) -> bool {
    match field {
        CredentialField::ClientId => true,
        CredentialField::Username => summary.username.is_some(),
        _ => summary.secrets_set.contains(&field),
    }
}

/// Returns the stored value of a field, if any.
fn stored_value(stored: Option<&Credentials>, field: CredentialField) -> Option<&str> {
    let stored = stored?;
    match field {
        CredentialField::ClientId => Some(stored.client_id.as_str()),
        CredentialField::ClientSecret => Some(stored.client_secret.expose_secret()),
        CredentialField::Username => stored.username.as_deref(),
        CredentialField::Password => stored.password.as_ref().map(SecretString::expose_secret),
        CredentialField::RefreshToken => stored
            .refresh_token
            .as_ref()
            .map(SecretString::expose_secret),
    }
}

/// Builds the credentials to store: the stored ones with the fields that the
/// environment sets replaced. Returns `None` after pushing the problems when
/// the result would be invalid.
fn merge(
    datasource: &DataSource,
    stored: Option<&Credentials>,
    fields: &FieldValues,
    problems: &mut Vec<String>,
) -> Option<Credentials> {
    let before = problems.len();
    let name = &datasource.name;

    // Check each value on its own, naming the variable and never the value.
    for (field, env) in fields {
        let value = env.value.expose_secret();
        let variable = &env.variable;
        if value.is_empty() && *field != CredentialField::ClientSecret {
            problems.push(format!(
                "{variable} is empty: set a value, or unset it to keep the stored {field}"
            ));
        }
        if value.chars().any(char::is_control) {
            problems.push(format!(
                "{variable} contains a control character such as a newline or tab: remove it \
                 (a _FILE variant strips only one trailing newline)"
            ));
        }
        if value.len() > MAX_VALUE_LEN {
            problems.push(format!(
                "{variable} is {} bytes long; the maximum is {MAX_VALUE_LEN}",
                value.len()
            ));
        }
        if *field == CredentialField::ClientId
            && datasource.auth.method == AuthMethod::Basic
            && value.contains(':')
        {
            problems.push(format!(
                "{variable} contains ':', which Basic authentication cannot carry (RFC 7617 \
                 section 2): use a user-id without ':' or the bearer method for data source {name:?}"
            ));
        }
    }

    // A data source without stored credentials needs at least the client id
    // and secret from the environment.
    if stored.is_none() {
        for field in [CredentialField::ClientId, CredentialField::ClientSecret] {
            if !fields.contains_key(&field) {
                let variable = env_var_name(name, field);
                problems.push(format!(
                    "{variable} is not set, but other variables of data source {name:?} are, and \
                     it has no stored credentials: set {variable} or {variable}{FILE_SUFFIX}"
                ));
            }
        }
    }
    if problems.len() > before {
        return None;
    }

    let take = |field: CredentialField| -> Option<SecretString> {
        fields
            .get(&field)
            .map(|env| env.value.duplicate())
            .or_else(|| stored_value(stored, field).map(SecretString::new))
    };
    let credentials = Credentials {
        client_id: take(CredentialField::ClientId)
            .map(|value| value.expose_secret().to_owned())
            .unwrap_or_default(),
        client_secret: take(CredentialField::ClientSecret).unwrap_or_else(|| SecretString::new("")),
        username: take(CredentialField::Username).map(|value| value.expose_secret().to_owned()),
        password: take(CredentialField::Password),
        refresh_token: take(CredentialField::RefreshToken),
    };

    // The model's rules are the final word; its messages for secret fields
    // never quote the value, and the others are replaced by a generic one.
    if let Err(errors) = credentials.validate(datasource.auth.method) {
        for error in errors.errors() {
            let field = CredentialField::ALL
                .into_iter()
                .find(|field| error.pointer == format!("/{field}"));
            let variable = field
                .and_then(|field| fields.get(&field))
                .map(|env| env.variable.clone())
                .unwrap_or_else(|| format!("the stored credentials of data source {name:?}"));
            match field {
                Some(field) if field.is_secret() => {
                    problems.push(format!("{variable}: {}", error.detail));
                }
                _ => problems.push(format!(
                    "{variable} is invalid at {}: check the value against the rules in the \
                     credentials documentation",
                    error.pointer
                )),
            }
        }
        return None;
    }
    Some(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::open_store;

    use authcfg_model::CreateDataSource;

    fn create(store: &Store, name: &str, auth: AuthConfig) -> DataSource {
        store
            .create_datasource(&CreateDataSource {
                name: name.to_owned(),
                description: None,
                base_url: None,
                auth,
            })
            .unwrap()
    }

    fn bearer(grant: GrantType) -> AuthConfig {
        AuthConfig::bearer("https://login.example.com/oauth/token", grant)
    }

    type Vars = Vec<(String, String)>;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn problems(error: ImportError) -> Vec<String> {
        match error {
            ImportError::Invalid { problems } => problems,
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn prefix_table() {
        let cases = [
            ("crm-prod", "AUTHCFG_DS_CRM_PROD_"),
            ("crm_prod", "AUTHCFG_DS_CRM_PROD_"),
            ("a", "AUTHCFG_DS_A_"),
            ("erp2-eu-west", "AUTHCFG_DS_ERP2_EU_WEST_"),
            ("x--y", "AUTHCFG_DS_X__Y_"),
        ];
        for (name, expected) in cases {
            assert_eq!(env_var_prefix(name), expected, "prefix of {name:?}");
        }
        assert_eq!(
            env_var_name("crm-prod", CredentialField::RefreshToken),
            "AUTHCFG_DS_CRM_PROD_REFRESH_TOKEN"
        );
    }

    #[test]
    fn import_reports_by_variable_name() {
        let (_dir, store) = open_store();
        create(&store, "crm-prod", bearer(GrantType::ClientCredentials));
        create(&store, "billing", AuthConfig::basic());

        let report = import_env(
            &store,
            &vars(&[
                ("AUTHCFG_DS_CRM_PROD_CLIENT_ID", "crm-client"),
                ("AUTHCFG_DS_CRM_PROD_CLIENT_SECRET", "crm-secret-value"),
                ("AUTHCFG_DS_CRM_PRD_CLIENT_ID", "typo-client"),
                ("AUTHCFG_DS_CRM_PROD_SECRET", "wrong-suffix-value"),
                ("AUTHCFG_BIND", "127.0.0.1:8080"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();

        assert_eq!(
            report.imported,
            [
                "AUTHCFG_DS_CRM_PROD_CLIENT_ID",
                "AUTHCFG_DS_CRM_PROD_CLIENT_SECRET"
            ]
        );
        assert!(report.unchanged.is_empty());
        assert_eq!(
            report.unmatched,
            ["AUTHCFG_DS_CRM_PRD_CLIENT_ID", "AUTHCFG_DS_CRM_PROD_SECRET"]
        );
        assert_eq!(report.without_credentials, ["billing"]);
        assert_eq!(report.changed.len(), 1);
        assert_eq!(report.changed[0].name, "crm-prod");

        let debug = format!("{report:?}");
        assert!(
            !debug.contains("crm-secret-value"),
            "the report holds a value"
        );

        let stored = store.unseal_credentials("crm-prod").unwrap().unwrap();
        assert_eq!(stored.credentials.client_id, "crm-client");
        assert_eq!(
            stored.credentials.client_secret.expose_secret(),
            "crm-secret-value"
        );
    }

    #[test]
    fn import_is_idempotent() {
        let (_dir, store) = open_store();
        create(&store, "crm-prod", bearer(GrantType::ClientCredentials));
        let input = vars(&[
            ("AUTHCFG_DS_CRM_PROD_CLIENT_ID", "crm-client"),
            ("AUTHCFG_DS_CRM_PROD_CLIENT_SECRET", "crm-secret"),
        ]);

        import_env(&store, &input).unwrap();
        let version = store
            .credentials_summary("crm-prod")
            .unwrap()
            .unwrap()
            .version;

        let again = import_env(&store, &input).unwrap();
        assert!(
            again.imported.is_empty(),
            "imported again: {:?}",
            again.imported
        );
        assert_eq!(
            again.unchanged,
            [
                "AUTHCFG_DS_CRM_PROD_CLIENT_ID",
                "AUTHCFG_DS_CRM_PROD_CLIENT_SECRET"
            ]
        );
        assert!(again.changed.is_empty());
        let after = store.credentials_summary("crm-prod").unwrap().unwrap();
        assert_eq!(
            after.version, version,
            "an unchanged import changed the version"
        );
    }

    #[test]
    fn changed_value_bumps_version() {
        let (_dir, store) = open_store();
        let datasource = create(&store, "crm-prod", bearer(GrantType::ClientCredentials));
        import_env(
            &store,
            &vars(&[
                ("AUTHCFG_DS_CRM_PROD_CLIENT_ID", "crm-client"),
                ("AUTHCFG_DS_CRM_PROD_CLIENT_SECRET", "old-secret"),
            ]),
        )
        .unwrap();
        let before = store.credentials_summary("crm-prod").unwrap().unwrap();

        let report = import_env(
            &store,
            &vars(&[
                ("AUTHCFG_DS_CRM_PROD_CLIENT_ID", "crm-client"),
                ("AUTHCFG_DS_CRM_PROD_CLIENT_SECRET", "new-secret"),
            ]),
        )
        .unwrap();

        assert_eq!(report.imported, ["AUTHCFG_DS_CRM_PROD_CLIENT_SECRET"]);
        assert_eq!(report.unchanged, ["AUTHCFG_DS_CRM_PROD_CLIENT_ID"]);
        let after = store.credentials_summary("crm-prod").unwrap().unwrap();
        assert!(after.version > before.version);
        assert_ne!(after.fingerprint, before.fingerprint);
        assert_eq!(
            report.changed,
            [ChangedDataSource {
                name: "crm-prod".to_owned(),
                id: datasource.id,
                credentials_version: after.version,
            }]
        );
    }

    #[test]
    fn partial_env_keeps_stored_fields() {
        let (_dir, store) = open_store();
        create(&store, "ledger", bearer(GrantType::RefreshToken));
        import_env(
            &store,
            &vars(&[
                ("AUTHCFG_DS_LEDGER_CLIENT_ID", "ledger-client"),
                ("AUTHCFG_DS_LEDGER_CLIENT_SECRET", "ledger-secret"),
                ("AUTHCFG_DS_LEDGER_REFRESH_TOKEN", "refresh-one"),
            ]),
        )
        .unwrap();

        import_env(
            &store,
            &vars(&[("AUTHCFG_DS_LEDGER_CLIENT_SECRET", "ledger-secret-2")]),
        )
        .unwrap();

        let stored = store
            .unseal_credentials("ledger")
            .unwrap()
            .unwrap()
            .credentials;
        assert_eq!(stored.client_id, "ledger-client");
        assert_eq!(stored.client_secret.expose_secret(), "ledger-secret-2");
        assert_eq!(
            stored
                .refresh_token
                .as_ref()
                .map(SecretString::expose_secret),
            Some("refresh-one")
        );
    }

    #[test]
    fn file_variant_strips_one_newline() {
        let (dir, store) = open_store();
        create(&store, "crm-prod", bearer(GrantType::ClientCredentials));
        create(&store, "billing", AuthConfig::basic());
        let cases = [
            ("crm-secret", "from-file\n", "from-file"),
            ("billing-secret", "windows-file\r\n", "windows-file"),
        ];
        for (file, contents, _) in cases {
            std::fs::write(dir.path().join(file), contents).unwrap();
        }
        let path = |file: &str| dir.path().join(file).to_str().unwrap().to_owned();

        import_env(
            &store,
            &vars(&[
                ("AUTHCFG_DS_CRM_PROD_CLIENT_ID", "crm-client"),
                (
                    "AUTHCFG_DS_CRM_PROD_CLIENT_SECRET_FILE",
                    &path("crm-secret"),
                ),
                ("AUTHCFG_DS_BILLING_CLIENT_ID", "billing-user"),
                (
                    "AUTHCFG_DS_BILLING_CLIENT_SECRET_FILE",
                    &path("billing-secret"),
                ),
            ]),
        )
        .unwrap();

        for (datasource, (_, _, expected)) in ["crm-prod", "billing"].into_iter().zip(cases) {
            let stored = store.unseal_credentials(datasource).unwrap().unwrap();
            assert_eq!(
                stored.credentials.client_secret.expose_secret(),
                expected,
                "{datasource}"
            );
        }
    }

    #[test]
    fn file_with_two_newlines_is_rejected() {
        let (dir, store) = open_store();
        create(&store, "crm-prod", bearer(GrantType::ClientCredentials));
        let file = dir.path().join("secret");
        std::fs::write(&file, "two-newlines\n\n").unwrap();

        let error = import_env(
            &store,
            &vars(&[
                ("AUTHCFG_DS_CRM_PROD_CLIENT_ID", "crm-client"),
                (
                    "AUTHCFG_DS_CRM_PROD_CLIENT_SECRET_FILE",
                    file.to_str().unwrap(),
                ),
            ]),
        )
        .unwrap_err();

        let problems = problems(error);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("AUTHCFG_DS_CRM_PROD_CLIENT_SECRET_FILE"));
        assert!(problems[0].contains("control character"));
        assert!(!problems[0].contains("two-newlines"));
        assert!(store.credentials_summary("crm-prod").unwrap().is_none());
    }

    #[test]
    fn invalid_variables_name_variable_not_value() {
        let (dir, store) = open_store();
        create(&store, "crm-prod", bearer(GrantType::ClientCredentials));
        create(&store, "billing", AuthConfig::basic());
        create(&store, "hr", AuthConfig::basic());
        create(&store, "erp", AuthConfig::basic());
        let missing_file = dir.path().join("no-such-file");

        // Each row: the variables, the variable that a problem names, and a
        // phrase of its fix.
        let cases: Vec<(Vars, &str, &str)> = vec![
            (
                vars(&[
                    ("AUTHCFG_DS_CRM_PROD_CLIENT_ID", "crm-client"),
                    ("AUTHCFG_DS_CRM_PROD_CLIENT_SECRET", "plain-secret-value"),
                    ("AUTHCFG_DS_CRM_PROD_CLIENT_SECRET_FILE", "/dev/null"),
                ]),
                "AUTHCFG_DS_CRM_PROD_CLIENT_SECRET_FILE",
                "only one",
            ),
            (
                vars(&[
                    ("AUTHCFG_DS_BILLING_CLIENT_ID", "user:with-colon"),
                    ("AUTHCFG_DS_BILLING_CLIENT_SECRET", "billing-secret-value"),
                ]),
                "AUTHCFG_DS_BILLING_CLIENT_ID",
                "RFC 7617",
            ),
            (
                vars(&[("AUTHCFG_DS_HR_CLIENT_SECRET", "hr-secret-value")]),
                "AUTHCFG_DS_HR_CLIENT_ID",
                "is not set",
            ),
            (
                vars(&[
                    ("AUTHCFG_DS_ERP_CLIENT_ID", "erp-client"),
                    ("AUTHCFG_DS_ERP_CLIENT_SECRET", "erp\tsecret-value"),
                ]),
                "AUTHCFG_DS_ERP_CLIENT_SECRET",
                "control character",
            ),
            (
                vars(&[
                    ("AUTHCFG_DS_ERP_CLIENT_ID", ""),
                    ("AUTHCFG_DS_ERP_CLIENT_SECRET", "erp-secret-value"),
                ]),
                "AUTHCFG_DS_ERP_CLIENT_ID",
                "is empty",
            ),
            (
                vars(&[
                    ("AUTHCFG_DS_ERP_CLIENT_ID", "erp-client"),
                    (
                        "AUTHCFG_DS_ERP_CLIENT_SECRET_FILE",
                        missing_file.to_str().unwrap(),
                    ),
                ]),
                "AUTHCFG_DS_ERP_CLIENT_SECRET_FILE",
                "cannot be read",
            ),
        ];

        for (input, variable, hint) in cases {
            let problems = problems(import_env(&store, &input).unwrap_err());
            let joined = problems.join("\n");
            assert!(
                joined.contains(variable),
                "no problem names {variable}: {joined}"
            );
            assert!(joined.contains(hint), "no problem says {hint:?}: {joined}");
            for (_, value) in &input {
                if value.ends_with("-value") {
                    assert!(
                        !joined.contains(value.as_str()),
                        "a problem shows a value: {joined}"
                    );
                }
            }
        }

        // Nothing was written by any of the failed imports.
        for name in ["crm-prod", "billing", "hr", "erp"] {
            assert!(
                store.credentials_summary(name).unwrap().is_none(),
                "{name} got credentials"
            );
        }
    }

    #[test]
    fn one_bad_variable_blocks_every_write() {
        let (_dir, store) = open_store();
        create(&store, "crm-prod", bearer(GrantType::ClientCredentials));
        create(&store, "billing", AuthConfig::basic());

        let error = import_env(
            &store,
            &vars(&[
                ("AUTHCFG_DS_CRM_PROD_CLIENT_ID", "crm-client"),
                ("AUTHCFG_DS_CRM_PROD_CLIENT_SECRET", "crm-secret"),
                ("AUTHCFG_DS_BILLING_CLIENT_SECRET", "billing-secret"),
            ]),
        )
        .unwrap_err();

        assert!(matches!(error, ImportError::Invalid { .. }));
        assert!(store.credentials_summary("crm-prod").unwrap().is_none());
    }

    #[test]
    fn colliding_prefixes_are_rejected() {
        // The store rejects the second name of such a pair, but a store
        // written by an older version may hold both, so the pair is built
        // from copies of one stored data source.
        let (_dir, store) = open_store();
        let first = create(&store, "crm-prod", AuthConfig::basic());
        let second = DataSource {
            id: DataSourceId(uuid::Uuid::new_v4()),
            name: "crm_prod".to_owned(),
            ..first.clone()
        };

        let error = index_by_key(&[first, second]).unwrap_err();

        match &error {
            ImportError::PrefixCollision {
                prefix,
                first,
                second,
            } => {
                assert_eq!(prefix, "AUTHCFG_DS_CRM_PROD_");
                let mut names = [first.as_str(), second.as_str()];
                names.sort_unstable();
                assert_eq!(names, ["crm-prod", "crm_prod"]);
            }
            other => panic!("expected PrefixCollision, got {other}"),
        }
        assert!(error.to_string().contains("delete one of them"));
    }

    #[test]
    fn nested_prefixes_pick_exact_source() {
        let (_dir, store) = open_store();
        create(&store, "crm", AuthConfig::basic());
        create(&store, "crm-client", AuthConfig::basic());

        let report = import_env(
            &store,
            &vars(&[
                ("AUTHCFG_DS_CRM_CLIENT_ID", "crm-user"),
                ("AUTHCFG_DS_CRM_CLIENT_SECRET", "crm-password"),
                ("AUTHCFG_DS_CRM_CLIENT_CLIENT_ID", "nested-user"),
                ("AUTHCFG_DS_CRM_CLIENT_CLIENT_SECRET", "nested-password"),
            ]),
        )
        .unwrap();

        assert!(report.unmatched.is_empty(), "{:?}", report.unmatched);
        let crm = store
            .unseal_credentials("crm")
            .unwrap()
            .unwrap()
            .credentials;
        let nested = store
            .unseal_credentials("crm-client")
            .unwrap()
            .unwrap()
            .credentials;
        assert_eq!(crm.client_id, "crm-user");
        assert_eq!(nested.client_id, "nested-user");
    }

    #[test]
    fn rotated_refresh_token_is_kept() {
        let (_dir, store) = open_store();
        let datasource = create(&store, "ledger", bearer(GrantType::RefreshToken));
        let input = vars(&[
            ("AUTHCFG_DS_LEDGER_CLIENT_ID", "ledger-client"),
            ("AUTHCFG_DS_LEDGER_CLIENT_SECRET", "ledger-secret"),
            ("AUTHCFG_DS_LEDGER_REFRESH_TOKEN", "refresh-one"),
        ]);
        import_env(&store, &input).unwrap();
        let version = store
            .credentials_summary("ledger")
            .unwrap()
            .unwrap()
            .version;
        let rotated = store
            .rotate_refresh_token(datasource.id, version, &SecretString::new("refresh-two"))
            .unwrap();

        let report = import_env(&store, &input).unwrap();

        assert_eq!(report.kept_stored, ["AUTHCFG_DS_LEDGER_REFRESH_TOKEN"]);
        assert!(
            report.imported.is_empty(),
            "imported: {:?}",
            report.imported
        );
        assert!(report.changed.is_empty());
        let stored = store.unseal_credentials("ledger").unwrap().unwrap();
        assert_eq!(stored.version, rotated);
        assert_eq!(
            stored
                .credentials
                .refresh_token
                .as_ref()
                .map(SecretString::expose_secret),
            Some("refresh-two")
        );
    }

    #[test]
    fn new_client_replaces_refresh_token() {
        let (_dir, store) = open_store();
        create(&store, "ledger", bearer(GrantType::RefreshToken));
        import_env(
            &store,
            &vars(&[
                ("AUTHCFG_DS_LEDGER_CLIENT_ID", "ledger-client"),
                ("AUTHCFG_DS_LEDGER_CLIENT_SECRET", "ledger-secret"),
                ("AUTHCFG_DS_LEDGER_REFRESH_TOKEN", "refresh-one"),
            ]),
        )
        .unwrap();

        let report = import_env(
            &store,
            &vars(&[
                ("AUTHCFG_DS_LEDGER_CLIENT_ID", "ledger-client"),
                ("AUTHCFG_DS_LEDGER_CLIENT_SECRET", "new-ledger-secret"),
                ("AUTHCFG_DS_LEDGER_REFRESH_TOKEN", "refresh-new"),
            ]),
        )
        .unwrap();

        assert!(report.kept_stored.is_empty());
        assert_eq!(
            report.imported,
            [
                "AUTHCFG_DS_LEDGER_CLIENT_SECRET",
                "AUTHCFG_DS_LEDGER_REFRESH_TOKEN"
            ]
        );
        let stored = store
            .unseal_credentials("ledger")
            .unwrap()
            .unwrap()
            .credentials;
        assert_eq!(
            stored
                .refresh_token
                .as_ref()
                .map(SecretString::expose_secret),
            Some("refresh-new")
        );
    }

    #[test]
    fn grant_needs_are_reported_missing() {
        let (_dir, store) = open_store();
        create(&store, "ledger", bearer(GrantType::RefreshToken));

        let report = import_env(
            &store,
            &vars(&[
                ("AUTHCFG_DS_LEDGER_CLIENT_ID", "ledger-client"),
                ("AUTHCFG_DS_LEDGER_CLIENT_SECRET", "ledger-secret"),
            ]),
        )
        .unwrap();

        assert_eq!(report.missing, ["AUTHCFG_DS_LEDGER_REFRESH_TOKEN"]);
        assert!(report.without_credentials.is_empty());
    }
}
