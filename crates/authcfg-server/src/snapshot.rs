//! The in-memory copy of every data source and its credentials summary, read
//! by the authorization route so that a cache hit never touches SQLite.
//!
//! Writes made through this process update the copy at once. Writes made by
//! another process (the CLI on the same data directory) are picked up by the
//! background refresher, which reloads the copy when the store's change counter
//! moves. They show within about a second, or within four times the duration
//! of a reload for a store so large that a reload takes longer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use authcfg_model::{CredentialsSummary, DataSource, DataSourceId};
use authcfg_store::Store;

/// Page size used when the whole list of data sources is reloaded.
const RELOAD_PAGE_SIZE: usize = 500;

/// One data source as the authorization route needs it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The data source.
    pub datasource: DataSource,
    /// Its credentials summary, `None` when it has no credentials.
    pub credentials: Option<CredentialsSummary>,
}

/// Data sources by name.
#[derive(Debug, Default)]
pub struct Snapshot {
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    /// Incremented by every direct update, so that a reload that started
    /// before one does not overwrite it with older data.
    generation: AtomicU64,
}

impl Snapshot {
    /// Returns the entry of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Entry>> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Returns the current generation, to pass to [`Snapshot::replace_if_unchanged`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Inserts or replaces the entry of a data source.
    pub fn upsert(&self, datasource: DataSource, credentials: Option<CredentialsSummary>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let name = datasource.name.clone();
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                name,
                Arc::new(Entry {
                    datasource,
                    credentials,
                }),
            );
    }

    /// Replaces the credentials summary of a data source, if it is known.
    pub fn set_credentials(&self, name: &str, credentials: Option<CredentialsSummary>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(name) {
            *entry = Arc::new(Entry {
                datasource: entry.datasource.clone(),
                credentials,
            });
        }
    }

    /// Records a new credentials version after a rotated refresh token was stored.
    pub fn set_credentials_version(&self, id: DataSourceId, version: u64) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.values_mut().find(|entry| entry.datasource.id == id) {
            if let Some(summary) = &entry.credentials {
                let mut summary = summary.clone();
                summary.version = version;
                *entry = Arc::new(Entry {
                    datasource: entry.datasource.clone(),
                    credentials: Some(summary),
                });
            }
        }
    }

    /// Removes a data source.
    pub fn remove(&self, name: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    /// Replaces every entry with `entries` unless a direct update happened
    /// since `generation` was read. Returns the ids of data sources whose
    /// config or credentials changed or that disappeared, or `None` when the
    /// reload was discarded.
    pub fn replace_if_unchanged(
        &self,
        generation: u64,
        entries: HashMap<String, Arc<Entry>>,
    ) -> Option<Vec<DataSourceId>> {
        let mut current = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::SeqCst) != generation {
            return None;
        }

        let mut changed = Vec::new();
        for (name, old) in current.iter() {
            match entries.get(name) {
                None => changed.push(old.datasource.id),
                Some(new) if !same_versions(old, new) => changed.push(old.datasource.id),
                Some(_) => {}
            }
        }
        *current = entries;
        Some(changed)
    }

    /// Returns the number of data sources.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Returns true when there is no data source.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn same_versions(old: &Entry, new: &Entry) -> bool {
    old.datasource.id == new.datasource.id
        && old.datasource.version == new.datasource.version
        && old.credentials.as_ref().map(|summary| summary.version)
            == new.credentials.as_ref().map(|summary| summary.version)
}

/// Reads every data source and its credentials summary from the store.
///
/// # Errors
///
/// Returns the store's error.
pub fn load_entries(store: &Store) -> Result<HashMap<String, Arc<Entry>>, authcfg_store::Error> {
    let mut entries = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_datasources(cursor.as_deref(), RELOAD_PAGE_SIZE)?;
        for datasource in page.items {
            let credentials = store.credentials_summary(&datasource.name)?;
            entries.insert(
                datasource.name.clone(),
                Arc::new(Entry {
                    datasource,
                    credentials,
                }),
            );
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    use authcfg_model::AuthConfig;
    use time::OffsetDateTime;

    fn datasource(name: &str, version: u64) -> DataSource {
        DataSource {
            // Distinct name lengths give distinct ids.
            id: DataSourceId(uuid::Uuid::from_u128(name.len() as u128)),
            name: name.to_owned(),
            description: None,
            base_url: None,
            auth: AuthConfig::basic(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            version,
        }
    }

    fn entries(list: &[(&str, u64)]) -> HashMap<String, Arc<Entry>> {
        list.iter()
            .map(|(name, version)| {
                (
                    (*name).to_owned(),
                    Arc::new(Entry {
                        datasource: datasource(name, *version),
                        credentials: None,
                    }),
                )
            })
            .collect()
    }

    #[test]
    fn reload_reports_changed_and_removed() {
        let snapshot = Snapshot::default();
        snapshot.upsert(datasource("a", 1), None);
        snapshot.upsert(datasource("bb", 1), None);
        snapshot.upsert(datasource("ccc", 1), None);

        let mut changed = snapshot
            .replace_if_unchanged(snapshot.generation(), entries(&[("a", 1), ("bb", 2)]))
            .unwrap();

        changed.sort();
        let mut expected = vec![datasource("bb", 1).id, datasource("ccc", 1).id];
        expected.sort();
        assert_eq!(changed, expected);
        assert_eq!(snapshot.get("bb").unwrap().datasource.version, 2);
        assert!(snapshot.get("ccc").is_none());
    }

    #[test]
    fn reload_loses_to_direct_update() {
        let snapshot = Snapshot::default();
        snapshot.upsert(datasource("a", 1), None);
        let generation = snapshot.generation();

        snapshot.upsert(datasource("a", 2), None);
        let result = snapshot.replace_if_unchanged(generation, entries(&[("a", 1)]));

        assert!(result.is_none());
        assert_eq!(snapshot.get("a").unwrap().datasource.version, 2);
    }

    #[test]
    fn rotated_version_updates_summary() {
        let snapshot = Snapshot::default();
        let summary = CredentialsSummary {
            client_id: "client".to_owned(),
            username: None,
            secrets_set: Vec::new(),
            fingerprint: "hmac-sha256:00".to_owned(),
            version: 3,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        snapshot.upsert(datasource("a", 1), Some(summary));

        snapshot.set_credentials_version(datasource("a", 1).id, 4);

        let entry = snapshot.get("a").unwrap();
        assert_eq!(entry.credentials.as_ref().unwrap().version, 4);
    }
}
