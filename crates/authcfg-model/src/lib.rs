//! Types and validation of authcfg's data sources, auth configs and credentials.
//!
//! This crate is the wire contract shared by the store, the exchange and the
//! server. It does no I/O: every function is a pure computation on values, so
//! any team can embed it to validate configs before they reach an authcfg
//! service.
//!
//! The JSON field names and values of [`AuthConfig`] follow the reference
//! auth config table: `method`, `token_url`, `grant_type` and `scope`. The two
//! extensions `client_auth` and `token_params` are left out of the JSON when
//! unset.
//!
//! ```
//! use authcfg_model::{parse_json, CreateDataSource};
//!
//! let request: CreateDataSource = parse_json(br#"{
//!     "name": "crm-prod",
//!     "auth": {
//!         "method": "bearer",
//!         "token_url": "https://login.example.com/oauth/token",
//!         "grant_type": "client_credentials",
//!         "scope": "api.read api.write"
//!     }
//! }"#).unwrap();
//! request.validate().unwrap();
//!
//! let broken: CreateDataSource = parse_json(
//!     br#"{"name": "crm", "auth": {"method": "bearer"}}"#,
//! ).unwrap();
//! let errors = broken.validate().unwrap_err();
//! assert_eq!(errors.errors()[0].pointer, "/auth/token_url");
//! ```

mod access;
mod auth;
mod credentials;
mod datasource;
mod error;
mod patch;

pub use access::{ApiTokenInfo, AuditEvent, AuditOutcome, Role};
pub use auth::{
    AuthConfig, AuthMethod, ClientAuthMethod, GrantType, MAX_TOKEN_PARAMS, RESERVED_TOKEN_PARAMS,
};
pub use credentials::{CredentialField, Credentials, CredentialsSummary, SecretString};
pub use datasource::{
    datasource_name_key, validate_datasource_name, AuthConfigPatch, CreateDataSource, DataSource,
    DataSourceId, UpdateDataSource, MAX_NAME_LEN,
};
pub use error::{parse_json, FieldError, ValidationErrors};
pub use patch::Patch;
