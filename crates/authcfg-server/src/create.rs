//! Creating a data source whose environment variable prefix is free.
//!
//! The credentials import reads the variables of a data source by a prefix
//! made from its name: `crm-prod` and `crm_prod` both give
//! `AUTHCFG_DS_CRM_PROD_`. Two data sources with one prefix would read the same
//! variables, so `serve` refuses to start with such a pair. The store keeps
//! only names unique, so the API and the command line create data sources
//! through [`create_datasource`], which rejects a name whose prefix another
//! data source already uses. The provisioning file checks the same rule
//! before it writes.

use authcfg_model::{CreateDataSource, DataSource};
use authcfg_store::Store;

use crate::env_import::{env_var_prefix, list_all_datasources};

/// A failure to create a data source.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Returned when another data source maps to the same environment
    /// variable prefix, such as `crm-prod` for a new `crm_prod`. Nothing is
    /// stored.
    #[error(
        "data source name {name:?} maps to the environment variable prefix {prefix}, which \
         data source {existing:?} already uses: choose another name"
    )]
    PrefixTaken {
        /// The requested name.
        name: String,
        /// The data source that already uses the prefix.
        existing: String,
        /// The shared prefix, such as `AUTHCFG_DS_CRM_PROD_`.
        prefix: String,
    },
    /// Returned when the store rejects the request or fails, such as
    /// [`authcfg_store::Error::AlreadyExists`] for a name that is taken.
    #[error(transparent)]
    Store(#[from] authcfg_store::Error),
}

/// Creates a data source unless another one uses the environment variable
/// prefix of its name.
///
/// # Errors
///
/// [`CreateError::PrefixTaken`] when the prefix is in use, and
/// [`CreateError::Store`] for the errors of
/// [`Store::create_datasource`](authcfg_store::Store::create_datasource).
pub fn create_datasource(
    store: &Store,
    request: &CreateDataSource,
) -> Result<DataSource, CreateError> {
    // Checking first keeps the usual rejection free of writes.
    if let Some(existing) = prefix_owner(store, &request.name)? {
        return Err(prefix_taken(&request.name, existing));
    }

    let created = store.create_datasource(request)?;
    verify_after_insert(store, created)
}

/// Deletes a data source that was just created when another one with the
/// same prefix appeared meanwhile, such as one made by the command line
/// between the check and the insert.
///
/// When two such creations race, each may see the other and delete its own,
/// so both fail. That is rare and leaves no pair behind, which a check before
/// the insert alone could not promise.
fn verify_after_insert(store: &Store, created: DataSource) -> Result<DataSource, CreateError> {
    let Some(existing) = prefix_owner(store, &created.name)? else {
        return Ok(created);
    };

    tracing::info!(
        datasource = %created.name,
        existing = %existing,
        "another data source with the same environment variable prefix was created concurrently; deleting the new one"
    );
    store.delete_datasource(&created.name)?;
    Err(prefix_taken(&created.name, existing))
}

/// Returns the name of a data source other than `name` whose environment
/// variable prefix equals that of `name`.
///
/// # Errors
///
/// Returns the store's error when listing fails.
pub fn prefix_owner(store: &Store, name: &str) -> Result<Option<String>, authcfg_store::Error> {
    let prefix = env_var_prefix(name);
    let owner = list_all_datasources(store)?
        .into_iter()
        .find(|datasource| datasource.name != name && env_var_prefix(&datasource.name) == prefix)
        .map(|datasource| datasource.name);
    Ok(owner)
}

fn prefix_taken(name: &str, existing: String) -> CreateError {
    CreateError::PrefixTaken {
        name: name.to_owned(),
        prefix: env_var_prefix(name),
        existing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use authcfg_model::{AuthConfig, SecretString};
    use authcfg_store::{Argon2Params, MasterKey, StoreOptions};

    /// Opens a fresh store in a temporary directory, with cheap Argon2 parameters.
    fn open_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            argon2: Argon2Params {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            ..StoreOptions::default()
        };
        let key = MasterKey::Passphrase(SecretString::new("create test passphrase"));
        let store = Store::open(&dir.path().join("authcfg.db"), &key, &options).unwrap();
        (dir, store)
    }

    fn basic(name: &str) -> CreateDataSource {
        CreateDataSource {
            name: name.to_owned(),
            description: None,
            base_url: None,
            auth: AuthConfig::basic(),
        }
    }

    fn names(store: &Store) -> Vec<String> {
        list_all_datasources(store)
            .unwrap()
            .into_iter()
            .map(|datasource| datasource.name)
            .collect()
    }

    #[test]
    fn colliding_prefix_is_rejected() {
        let (_dir, store) = open_store();
        create_datasource(&store, &basic("crm-prod")).unwrap();

        let error = create_datasource(&store, &basic("crm_prod")).unwrap_err();

        match &error {
            CreateError::PrefixTaken {
                name,
                existing,
                prefix,
            } => {
                assert_eq!(name, "crm_prod");
                assert_eq!(existing, "crm-prod");
                assert_eq!(prefix, "AUTHCFG_DS_CRM_PROD_");
            }
            other => panic!("expected PrefixTaken, got {other}"),
        }
        let message = error.to_string();
        for part in [
            "\"crm_prod\"",
            "\"crm-prod\"",
            "AUTHCFG_DS_CRM_PROD_",
            "choose another name",
        ] {
            assert!(message.contains(part), "no {part} in: {message}");
        }
        assert_eq!(names(&store), ["crm-prod"]);
    }

    #[test]
    fn free_prefixes_are_created() {
        let (_dir, store) = open_store();

        // Each name's prefix differs from the others, even where one name
        // starts with another.
        for name in ["crm", "crm-prod", "crm-prod-eu", "billing"] {
            create_datasource(&store, &basic(name)).unwrap();
        }

        assert_eq!(names(&store), ["billing", "crm", "crm-prod", "crm-prod-eu"]);
    }

    #[test]
    fn taken_name_stays_already_exists() {
        let (_dir, store) = open_store();
        create_datasource(&store, &basic("crm-prod")).unwrap();

        let error = create_datasource(&store, &basic("crm-prod")).unwrap_err();

        assert!(
            matches!(
                error,
                CreateError::Store(authcfg_store::Error::AlreadyExists { .. })
            ),
            "expected AlreadyExists, got {error}"
        );
    }

    #[test]
    fn concurrent_collision_removes_new_source() {
        // The colliding data source appears after the check, as one created
        // by another process would, so the data source created second is deleted.
        let (_dir, store) = open_store();
        let first = store.create_datasource(&basic("crm-prod")).unwrap();
        let second = store.create_datasource(&basic("crm_prod")).unwrap();

        let error = verify_after_insert(&store, second).unwrap_err();

        assert!(
            matches!(&error, CreateError::PrefixTaken { existing, .. } if existing == "crm-prod"),
            "expected PrefixTaken, got {error}"
        );
        assert_eq!(names(&store), ["crm-prod"]);
        assert_eq!(store.get_datasource("crm-prod").unwrap().id, first.id);
    }
}
