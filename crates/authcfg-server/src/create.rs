//! Creating a data source from the API or the command line.
//!
//! The credentials import reads the variables of a data source by a prefix
//! made from its name: `crm-prod` and `crm_prod` both give
//! `AUTHCFG_DS_CRM_PROD_`. The store rejects a name whose name key another
//! data source has, inside the write transaction of the insert, so the check
//! is race-free across processes and costs one index lookup.
//! [`create_datasource`] turns that rejection into [`CreateError::PrefixTaken`],
//! whose message names the shared prefix.

use authcfg_model::{CreateDataSource, DataSource};
use authcfg_store::Store;

use crate::env_import::env_var_prefix;

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
    Store(authcfg_store::Error),
}

impl From<authcfg_store::Error> for CreateError {
    /// Converts [`authcfg_store::Error::NameKeyTaken`] into
    /// [`CreateError::PrefixTaken`] and keeps every other error as it is.
    fn from(error: authcfg_store::Error) -> Self {
        match error {
            authcfg_store::Error::NameKeyTaken { name, existing, .. } => CreateError::PrefixTaken {
                prefix: env_var_prefix(&name),
                name,
                existing,
            },
            other => CreateError::Store(other),
        }
    }
}

/// Creates a data source unless another one uses the environment variable
/// prefix of its name.
///
/// # Errors
///
/// [`CreateError::PrefixTaken`] when the prefix is in use, and
/// [`CreateError::Store`] for the other errors of
/// [`Store::create_datasource`](authcfg_store::Store::create_datasource).
pub fn create_datasource(
    store: &Store,
    request: &CreateDataSource,
) -> Result<DataSource, CreateError> {
    Ok(store.create_datasource(request)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::open_store;

    use authcfg_model::AuthConfig;

    use crate::problem::{ApiError, ProblemKind};

    fn basic(name: &str) -> CreateDataSource {
        CreateDataSource {
            name: name.to_owned(),
            description: None,
            base_url: None,
            auth: AuthConfig::basic(),
        }
    }

    fn names(store: &Store) -> Vec<String> {
        store
            .list_datasources(None, 100)
            .unwrap()
            .items
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
    fn store_name_key_error_is_problem() {
        // A store error that reaches the API without passing through
        // `create_datasource` gives the same problem.
        let error = ApiError::from(authcfg_store::Error::NameKeyTaken {
            name: "crm_prod".to_owned(),
            existing: "crm-prod".to_owned(),
            key: "CRM_PROD".to_owned(),
        });

        assert_eq!(error.kind(), ProblemKind::EnvPrefixTaken);
        assert_eq!(error.kind().status(), actix_web::http::StatusCode::CONFLICT);
        for part in [
            "\"crm_prod\"",
            "\"crm-prod\"",
            "AUTHCFG_DS_CRM_PROD_",
            "choose another name",
        ] {
            assert!(
                error.detail().contains(part),
                "no {part} in: {}",
                error.detail()
            );
        }
    }

    #[test]
    fn store_name_key_error_names_prefix() {
        let error = CreateError::from(authcfg_store::Error::NameKeyTaken {
            name: "erp2_eu".to_owned(),
            existing: "erp2-eu".to_owned(),
            key: "ERP2_EU".to_owned(),
        });

        match error {
            CreateError::PrefixTaken {
                name,
                existing,
                prefix,
            } => {
                assert_eq!(name, "erp2_eu");
                assert_eq!(existing, "erp2-eu");
                assert_eq!(prefix, "AUTHCFG_DS_ERP2_EU_");
            }
            other => panic!("expected PrefixTaken, got {other}"),
        }
    }
}
