//! SQLite storage of data sources, sealed credentials, API tokens and the audit log.
