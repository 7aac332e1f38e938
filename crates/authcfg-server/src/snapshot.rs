//! The in-memory copy of what the authorization route needs of each data
//! source, so that a cache hit never touches SQLite.
//!
//! Writes made through this process update the copy at once. Writes made by
//! another process (the command line on the same data directory) are picked
//! up by the background refresher, which reloads the copy when the store's
//! change counter moves. They show within about a second, or within four
//! times the duration of a reload for a store so large that a reload takes
//! longer.
//!
//! An entry keeps only the fields the route uses, and data sources with equal
//! auth configs share one copy of it, so that a server with a hundred
//! thousand data sources keeps about 90 bytes per data source here when its
//! name and client id take 30 bytes: an entry of 80 bytes and its pointer in
//! a hash table.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use authcfg_model::{AuthConfig, CredentialsSummary, DataSource, DataSourceId};
use authcfg_store::Store;
use triomphe::ThinArc;

/// Page size used when the whole list of data sources is reloaded.
const RELOAD_PAGE_SIZE: usize = 500;

/// The fields of one data source that the authorization route reads.
///
/// A handle of one pointer to a single allocation, shared by the snapshot
/// and the requests that read it: the reference count, the fixed fields,
/// the length, then the name and the client id. With an 18-byte name and a
/// 12-byte client id it takes one 80-byte size class of the allocator.
#[derive(Clone)]
pub struct Entry(ThinArc<EntryFields, u8>);

/// The fixed-size fields of an [`Entry`]; a test checks that they fit 32 bytes.
#[derive(Debug)]
struct EntryFields {
    id: DataSourceId,
    /// Shared with the data sources whose config is equal.
    auth: Arc<AuthConfig>,
    /// Meaningless without credentials.
    credentials_version: u64,
}

impl Entry {
    /// Builds an entry. Its text is the name, then, when the data source
    /// has credentials, a newline and the client id. A name cannot contain
    /// a newline.
    fn new(
        id: DataSourceId,
        name: &str,
        auth: Arc<AuthConfig>,
        credentials: Option<EntryCredentials<'_>>,
    ) -> Self {
        let mut text = String::with_capacity(
            name.len() + credentials.map_or(0, |credentials| 1 + credentials.client_id.len()),
        );
        text.push_str(name);
        let mut credentials_version = 0;
        if let Some(credentials) = credentials {
            text.push(CLIENT_ID_SEPARATOR);
            text.push_str(credentials.client_id);
            credentials_version = credentials.version;
        }
        let fields = EntryFields {
            id,
            auth,
            credentials_version,
        };
        Self(ThinArc::from_header_and_slice(fields, text.as_bytes()))
    }

    /// Returns a copy of this entry with another credentials version.
    fn with_credentials_version(&self, version: u64) -> Self {
        let fields = EntryFields {
            id: self.id(),
            auth: Arc::clone(self.auth()),
            credentials_version: version,
        };
        Self(ThinArc::from_header_and_slice(fields, &self.0.slice))
    }

    fn fields(&self) -> &EntryFields {
        &self.0.header.header
    }

    /// Returns the name and, after a newline, the client id.
    fn text(&self) -> &str {
        // Built from a `&str` in `new`; an invalid text would be a bug, and
        // reads as a data source without a name.
        std::str::from_utf8(&self.0.slice).unwrap_or_default()
    }

    /// Returns the data source id.
    pub fn id(&self) -> DataSourceId {
        self.fields().id
    }

    /// Returns the auth config, shared with the data sources whose config is equal.
    pub fn auth(&self) -> &Arc<AuthConfig> {
        &self.fields().auth
    }

    /// Returns the data source name.
    pub fn name(&self) -> &str {
        let text = self.text();
        text.split_once(CLIENT_ID_SEPARATOR)
            .map_or(text, |(name, _)| name)
    }

    /// Returns the client id and version of the credentials, `None` when the
    /// data source has no credentials.
    pub fn credentials(&self) -> Option<EntryCredentials<'_>> {
        let (_, client_id) = self.text().split_once(CLIENT_ID_SEPARATOR)?;
        Some(EntryCredentials {
            client_id,
            version: self.fields().credentials_version,
        })
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Entry")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("auth", self.auth())
            .field("credentials", &self.credentials())
            .finish()
    }
}

/// Separates the name from the client id in the text of an [`Entry`].
const CLIENT_ID_SEPARATOR: char = '\n';

/// The part of a credentials summary that the authorization route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryCredentials<'a> {
    /// The client id.
    pub client_id: &'a str,
    /// The credentials version, which every change of them increments.
    pub version: u64,
}

impl<'a> From<&'a CredentialsSummary> for EntryCredentials<'a> {
    fn from(summary: &'a CredentialsSummary) -> Self {
        Self {
            client_id: &summary.client_id,
            version: summary.version,
        }
    }
}

/// An entry in the set of [`Entries`], found by its name.
#[derive(Debug)]
struct ByName(Entry);

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl Eq for ByName {}

impl Hash for ByName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name().hash(state);
    }
}

impl Borrow<str> for ByName {
    fn borrow(&self) -> &str {
        self.0.name()
    }
}

/// The entries by name and the distinct auth configs they share.
///
/// The entries are kept in a set that finds them by their own name, so that
/// the table contains one pointer per data source rather than a name and a
/// pointer.
#[derive(Debug, Default)]
pub struct Entries {
    by_name: HashSet<ByName>,
    configs: HashSet<Arc<AuthConfig>>,
}

impl Entries {
    /// Inserts or replaces the entry of `datasource`.
    pub fn insert(&mut self, datasource: DataSource, credentials: Option<EntryCredentials<'_>>) {
        let auth = self.intern(datasource.auth);
        let entry = Entry::new(datasource.id, &datasource.name, auth, credentials);
        if let Some(old) = self.by_name.replace(ByName(entry)) {
            self.release(&old.0);
        }
    }

    /// Removes the entry of `name`.
    fn remove(&mut self, name: &str) {
        if let Some(old) = self.by_name.take(name) {
            self.release(&old.0);
        }
    }

    /// Returns the entry of `name`.
    fn get(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).map(|entry| &entry.0)
    }

    /// Returns the shared copy of `auth`, adding it when it is new.
    fn intern(&mut self, auth: AuthConfig) -> Arc<AuthConfig> {
        if let Some(shared) = self.configs.get(&auth) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(auth);
        self.configs.insert(Arc::clone(&shared));
        shared
    }

    /// Forgets the auth config of a removed entry when no other entry uses it.
    ///
    /// A reader that still has an older entry with the config keeps it in
    /// the set until the next reload, which builds the set anew.
    fn release(&mut self, old: &Entry) {
        // The set and `old` hold one reference each.
        if Arc::strong_count(old.auth()) <= 2 {
            self.configs.remove(&**old.auth());
        }
    }

    /// Returns the entries with their names, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.by_name.iter().map(|entry| (entry.0.name(), &entry.0))
    }

    /// Returns the number of entries.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Returns true when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Data sources by name.
#[derive(Debug, Default)]
pub struct Snapshot {
    entries: RwLock<Entries>,
    /// Incremented by every direct update, so that a reload that started
    /// before one does not overwrite it with older data.
    generation: AtomicU64,
}

impl Snapshot {
    /// Returns the entry of `name`.
    pub fn get(&self, name: &str) -> Option<Entry> {
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
    pub fn upsert(&self, datasource: DataSource, credentials: Option<&CredentialsSummary>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(datasource, credentials.map(EntryCredentials::from));
    }

    /// Records a new credentials version after a rotated refresh token was stored.
    pub fn set_credentials_version(&self, id: DataSourceId, version: u64) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let Some(found) = entries.by_name.iter().find(|entry| entry.0.id() == id) else {
            return;
        };
        if found.0.credentials().is_some() {
            let entry = found.0.with_credentials_version(version);
            entries.by_name.replace(ByName(entry));
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
        entries: Entries,
    ) -> Option<Vec<DataSourceId>> {
        let mut current = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::SeqCst) != generation {
            return None;
        }

        let mut changed = Vec::new();
        for (name, old) in current.iter() {
            match entries.get(name) {
                None => changed.push(old.id()),
                Some(new) if !same_token_inputs(old, new) => changed.push(old.id()),
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

/// Returns true when a token cached for `old` may serve `new`: same data
/// source, auth config and credentials version. Other fields of a data source,
/// such as its description, do not shape a token.
fn same_token_inputs(old: &Entry, new: &Entry) -> bool {
    let version = |entry: &Entry| entry.credentials().map(|credentials| credentials.version);
    old.id() == new.id() && old.auth() == new.auth() && version(old) == version(new)
}

/// Reads every data source and its credentials summary from the store, one
/// page of [`RELOAD_PAGE_SIZE`] per query.
///
/// # Errors
///
/// Returns the store's error.
pub fn load_entries(store: &Store) -> Result<Entries, authcfg_store::Error> {
    let mut entries = Entries::default();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_datasources_with_credentials(cursor.as_deref(), RELOAD_PAGE_SIZE)?;
        for item in page.items {
            let credentials = item.credentials.as_ref().map(EntryCredentials::from);
            entries.insert(item.datasource, credentials);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    entries.by_name.shrink_to_fit();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    use authcfg_model::AuthConfig;
    use time::OffsetDateTime;

    /// Returns a data source whose auth config differs by `version`: a
    /// change of version is a change of what shapes a token.
    fn datasource(name: &str, version: u64) -> DataSource {
        let mut auth = AuthConfig::bearer(
            "http://127.0.0.1:1/token".to_owned(),
            authcfg_model::GrantType::ClientCredentials,
        );
        auth.scope = Some(format!("v{version}"));
        DataSource {
            // Distinct name lengths give distinct ids.
            id: DataSourceId(uuid::Uuid::from_u128(name.len() as u128)),
            name: name.to_owned(),
            description: None,
            base_url: None,
            auth,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            version,
        }
    }

    fn entries(list: &[(&str, u64)]) -> Entries {
        let mut entries = Entries::default();
        for (name, version) in list {
            entries.insert(datasource(name, *version), None);
        }
        entries
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
        assert_eq!(scope_of(&snapshot, "bb"), "v2");
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
        assert_eq!(scope_of(&snapshot, "a"), "v2");
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
        snapshot.upsert(datasource("a", 1), Some(&summary));

        snapshot.set_credentials_version(datasource("a", 1).id, 4);

        let entry = snapshot.get("a").unwrap();
        let credentials = entry.credentials().unwrap();
        assert_eq!(credentials.version, 4);
        assert_eq!(credentials.client_id, "client");
        assert_eq!(entry.name(), "a");
    }

    #[test]
    fn equal_configs_are_shared_until_unused() {
        let bearer = |url: &str| {
            AuthConfig::bearer(url.to_owned(), authcfg_model::GrantType::ClientCredentials)
        };
        let with_auth = |name: &str, auth: AuthConfig| DataSource {
            auth,
            ..datasource(name, 1)
        };
        let snapshot = Snapshot::default();
        snapshot.upsert(with_auth("a", bearer("http://127.0.0.1:1/token")), None);
        snapshot.upsert(with_auth("bb", bearer("http://127.0.0.1:1/token")), None);
        snapshot.upsert(with_auth("ccc", bearer("http://127.0.0.1:2/token")), None);

        let a = snapshot.get("a").unwrap();
        let bb = snapshot.get("bb").unwrap();
        assert!(
            Arc::ptr_eq(a.auth(), bb.auth()),
            "equal configs share one copy"
        );
        assert_eq!(configs(&snapshot), 2);
        drop((a, bb));

        // Replacing and removing entries drops the configs that no entry uses.
        snapshot.upsert(with_auth("a", bearer("http://127.0.0.1:2/token")), None);
        assert_eq!(configs(&snapshot), 2, "bb still uses the first config");
        snapshot.remove("bb");
        assert_eq!(configs(&snapshot), 1);
        assert_eq!(
            snapshot.get("a").unwrap().auth().token_url.as_deref(),
            Some("http://127.0.0.1:2/token")
        );
    }

    #[test]
    fn reload_ignores_description_change() {
        let snapshot = Snapshot::default();
        snapshot.upsert(datasource("a", 1), None);
        let described = DataSource {
            description: Some("a new description".to_owned()),
            version: 2,
            ..datasource("a", 1)
        };
        let mut reloaded = Entries::default();
        reloaded.insert(described, None);

        let changed = snapshot
            .replace_if_unchanged(snapshot.generation(), reloaded)
            .unwrap();
        assert!(changed.is_empty());
    }

    #[test]
    fn reload_reports_credentials_change() {
        let snapshot = Snapshot::default();
        let first = EntryCredentials {
            client_id: "client",
            version: 1,
        };
        snapshot
            .entries
            .write()
            .unwrap()
            .insert(datasource("a", 1), Some(first));

        let mut reloaded = Entries::default();
        reloaded.insert(
            datasource("a", 1),
            Some(EntryCredentials {
                version: 2,
                ..first
            }),
        );
        let changed = snapshot
            .replace_if_unchanged(snapshot.generation(), reloaded)
            .unwrap();
        assert_eq!(changed, vec![datasource("a", 1).id]);
    }

    #[test]
    fn entry_keeps_name_and_client_id() {
        let auth = Arc::new(datasource("a", 1).auth);
        let id = datasource("a", 1).id;
        let bare = Entry::new(id, "crm-prod", Arc::clone(&auth), None);
        assert_eq!(bare.name(), "crm-prod");
        assert_eq!(bare.credentials(), None);

        let credentials = EntryCredentials {
            client_id: "client\nwith newline",
            version: 7,
        };
        let entry = Entry::new(id, "crm-prod", auth, Some(credentials));
        assert_eq!(entry.name(), "crm-prod");
        assert_eq!(entry.credentials(), Some(credentials));
        assert_eq!(
            entry
                .with_credentials_version(8)
                .credentials()
                .unwrap()
                .version,
            8
        );
        assert_eq!(entry.id(), id);
    }

    #[test]
    fn entry_stays_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 8);
        assert!(std::mem::size_of::<EntryFields>() <= 32);
    }

    fn scope_of(snapshot: &Snapshot, name: &str) -> String {
        snapshot.get(name).unwrap().auth().scope.clone().unwrap()
    }

    fn configs(snapshot: &Snapshot) -> usize {
        snapshot.entries.read().unwrap().configs.len()
    }
}
