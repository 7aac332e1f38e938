//! Key derivation, envelope encryption and fingerprints.
//!
//! The master key is stretched with Argon2id into a key-encryption key (KEK).
//! The KEK wraps the data keys and the fingerprint MAC key with
//! XChaCha20-Poly1305. A data key seals each secret with XChaCha20-Poly1305
//! under a fresh random 24-byte nonce. The associated data names the data
//! source id, field, key id and format version, so a ciphertext opens only in
//! the row and field it was written for.
//!
//! Every sealed or wrapped value is `version (1 byte) || nonce (24 bytes) ||
//! ciphertext || tag (16 bytes)`.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use authcfg_model::{CredentialField, DataSourceId};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{Argon2Params, Error, MasterKey};

/// Length of every symmetric key, in bytes.
pub(crate) const KEY_LEN: usize = 32;
/// Length of an Argon2id salt, in bytes.
pub(crate) const SALT_LEN: usize = 16;
/// Length of an XChaCha20-Poly1305 nonce, in bytes.
const NONCE_LEN: usize = 24;
/// Length of a Poly1305 tag, in bytes.
const TAG_LEN: usize = 16;
/// The format version of sealed and wrapped values written by this code.
const FORMAT_VERSION: u8 = 1;
/// Bytes of the HMAC-SHA256 output kept in a fingerprint: 64 bits tell two
/// values apart reliably while revealing nothing useful about either.
const FINGERPRINT_BYTES: usize = 8;

/// Key material that is zeroed when dropped.
pub(crate) type KeyBytes = Zeroizing<[u8; KEY_LEN]>;

/// Returns `N` bytes from the operating system's random number generator.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Returns a new random 256-bit key.
pub(crate) fn random_key() -> KeyBytes {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(key.as_mut());
    key
}

/// Reads the bytes of a master key: the passphrase, or the key file's
/// contents without one trailing newline.
pub(crate) fn master_key_bytes(key: &MasterKey) -> Result<Zeroizing<Vec<u8>>, Error> {
    let bytes = match key {
        MasterKey::Passphrase(passphrase) => {
            Zeroizing::new(passphrase.expose_secret().as_bytes().to_vec())
        }
        MasterKey::KeyFile(path) => {
            warn_if_shared(path);
            let mut bytes = Zeroizing::new(std::fs::read(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?);
            let newline = if bytes.ends_with(b"\r\n") {
                2
            } else {
                usize::from(bytes.ends_with(b"\n"))
            };
            let length = bytes.len() - newline;
            bytes.truncate(length);
            bytes
        }
    };

    if bytes.is_empty() {
        let reason = match key {
            MasterKey::Passphrase(_) => "the passphrase is empty: supply a non-empty passphrase",
            MasterKey::KeyFile(_) => {
                "the key file is empty: write a random key into it, such as the output of \
                 `openssl rand -base64 32`"
            }
        };
        return Err(Error::InvalidMasterKey {
            reason: reason.to_owned(),
        });
    }
    Ok(bytes)
}

/// Logs a warning when a key file is readable by its group or by others.
fn warn_if_shared(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the master key file is readable by other users: run chmod 600 on it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Checks that Argon2id accepts `params`.
pub(crate) fn check_argon2_params(params: &Argon2Params) -> Result<(), Error> {
    argon2_params(params).map(|_| ())
}

/// Builds the `argon2` parameters, rejecting values outside the limits that
/// `argon2::Params::new` enforces: 1 to 2^24 - 1 lanes, at least 8 KiB of
/// memory per lane and at least 1 pass. Valid values below
/// [`Argon2Params::OWASP`] are accepted here; [`crate::Store::open`] logs a
/// warning for them.
fn argon2_params(params: &Argon2Params) -> Result<Params, Error> {
    let Argon2Params {
        memory_kib,
        iterations,
        parallelism,
    } = *params;
    let invalid = |problem: &dyn fmt::Display| {
        Error::InvalidOptions(format!(
            "argon2 parameters m={memory_kib} KiB, t={iterations}, p={parallelism} are invalid \
             ({problem}): Argon2id requires p from 1 to {max_lanes}, t of at least 1 and m of at \
             least 8 * p KiB; the recommended values are m={recommended_memory}, \
             t={recommended_iterations}, p={recommended_lanes}, and valid values below them are \
             accepted with a warning",
            max_lanes = Params::MAX_P_COST,
            recommended_memory = Argon2Params::OWASP.memory_kib,
            recommended_iterations = Argon2Params::OWASP.iterations,
            recommended_lanes = Argon2Params::OWASP.parallelism,
        ))
    };

    // The lane count is checked first because `Params::new` of argon2 0.5
    // computes `8 * p` without an overflow check.
    if !(Params::MIN_P_COST..=Params::MAX_P_COST).contains(&parallelism) {
        return Err(invalid(&"the lane count is out of range"));
    }
    Params::new(memory_kib, iterations, parallelism, Some(KEY_LEN)).map_err(|error| invalid(&error))
}

/// Derives the key-encryption key from the master key bytes with Argon2id.
pub(crate) fn derive_kek(
    master: &[u8],
    salt: &[u8],
    params: &Argon2Params,
) -> Result<Cipher, Error> {
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon2_params(params)?);
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    argon2
        .hash_password_into(master, salt, kek.as_mut())
        .map_err(|error| {
            Error::InvalidOptions(format!("argon2id key derivation failed: {error}"))
        })?;
    Ok(Cipher::new(&kek))
}

/// An XChaCha20-Poly1305 key. The cipher zeroes its key when dropped.
pub(crate) struct Cipher {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

impl Cipher {
    /// Creates a cipher from key bytes.
    pub(crate) fn new(key: &KeyBytes) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.as_ref().into()),
        }
    }

    /// Encrypts `plaintext` under a fresh random nonce.
    fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        // Nonces come from the thread-local CSPRNG (ChaCha12, seeded and
        // periodically reseeded from the operating system by `rand`), which
        // avoids a system call per value. Keys still come from `OsRng`.
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Seal)?;

        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(FORMAT_VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Decrypts a value written by [`Cipher::encrypt`]. Every failure (an
    /// unknown format, a short value, a wrong key or associated data, a
    /// changed byte) is the same `None`, so callers cannot be used as an oracle.
    fn decrypt(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != FORMAT_VERSION {
            return None;
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }

    /// Seals a credential value for one data source, field and key id.
    pub(crate) fn seal(
        &self,
        datasource: DataSourceId,
        field: CredentialField,
        key_id: &str,
        plaintext: &str,
    ) -> Result<Vec<u8>, Error> {
        let aad = seal_aad(datasource, field, key_id);
        self.encrypt(&aad, plaintext.as_bytes())
    }

    /// Opens a credential value sealed by [`Cipher::seal`] with the same
    /// data source, field and key id; `None` when it does not open.
    pub(crate) fn open(
        &self,
        datasource: DataSourceId,
        field: CredentialField,
        key_id: &str,
        sealed: &[u8],
    ) -> Option<Zeroizing<String>> {
        let aad = seal_aad(datasource, field, key_id);
        let plaintext = self.decrypt(&aad, sealed)?;
        let text = std::str::from_utf8(&plaintext).ok()?;
        Some(Zeroizing::new(text.to_owned()))
    }

    /// Wraps a key (a data key or the MAC key) under this key-encryption key.
    pub(crate) fn wrap(
        &self,
        purpose: KeyPurpose,
        key_id: &str,
        key: &KeyBytes,
    ) -> Result<Vec<u8>, Error> {
        self.encrypt(&wrap_aad(purpose, key_id), key.as_ref())
    }

    /// Unwraps a key wrapped by [`Cipher::wrap`]; `None` when the KEK is wrong
    /// or the wrapped value was changed.
    pub(crate) fn unwrap_key(
        &self,
        purpose: KeyPurpose,
        key_id: &str,
        wrapped: &[u8],
    ) -> Option<KeyBytes> {
        let plaintext = self.decrypt(&wrap_aad(purpose, key_id), wrapped)?;
        let bytes: [u8; KEY_LEN] = plaintext.as_slice().try_into().ok()?;
        Some(Zeroizing::new(bytes))
    }
}

/// The purpose of a wrapped key. It is part of the associated data, so a
/// wrapped MAC key cannot be unwrapped as a data key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyPurpose {
    /// A data key, which seals credential values.
    Data,
    /// The key of the fingerprint MAC.
    Mac,
}

/// Builds the associated data of a sealed value. Each part is length-prefixed
/// so that no two different tuples encode to the same bytes.
fn seal_aad(datasource: DataSourceId, field: CredentialField, key_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    push_part(&mut aad, b"authcfg-seal");
    aad.push(FORMAT_VERSION);
    push_part(&mut aad, datasource.0.as_bytes());
    push_part(&mut aad, field.as_str().as_bytes());
    push_part(&mut aad, key_id.as_bytes());
    aad
}

fn wrap_aad(purpose: KeyPurpose, key_id: &str) -> Vec<u8> {
    let purpose: &[u8] = match purpose {
        KeyPurpose::Data => b"data",
        KeyPurpose::Mac => b"mac",
    };
    let mut aad = Vec::with_capacity(32);
    push_part(&mut aad, b"authcfg-wrap");
    aad.push(FORMAT_VERSION);
    push_part(&mut aad, purpose);
    push_part(&mut aad, key_id.as_bytes());
    aad
}

fn push_part(aad: &mut Vec<u8>, part: &[u8]) {
    // Parts are short (ids and field names); u16 lengths cannot overflow here.
    let length = u16::try_from(part.len()).unwrap_or(u16::MAX);
    aad.extend_from_slice(&length.to_be_bytes());
    aad.extend_from_slice(part);
}

/// Computes the fingerprint of a client secret: `hmac-sha256:` followed by
/// the first 8 bytes of HMAC-SHA256 under the store's MAC key, in hex.
pub(crate) fn fingerprint(mac_key: &KeyBytes, secret: &str) -> String {
    // HMAC accepts keys of any length (RFC 2104), so a 32-byte key never fails here.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(mac_key.as_ref()) {
        Ok(mac) => mac,
        Err(_) => return "hmac-sha256:unavailable".to_owned(),
    };
    mac.update(b"authcfg-fingerprint\0");
    mac.update(secret.as_bytes());
    let digest = mac.finalize().into_bytes();

    let mut text = String::from("hmac-sha256:");
    for byte in &digest[..FINGERPRINT_BYTES] {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Hashes an API token value with SHA-256.
pub(crate) fn token_hash(value: &str) -> [u8; 32] {
    use sha2::Digest;
    Sha256::digest(value.as_bytes()).into()
}

/// Support for the criterion benchmarks, which measure sealing without a database.
#[doc(hidden)]
pub mod bench {
    use super::*;

    /// A random data key with a fixed data source and key id.
    #[derive(Debug)]
    pub struct SealBench {
        cipher: Cipher,
        datasource: DataSourceId,
    }

    impl SealBench {
        /// Creates a bench fixture with a random key.
        pub fn new() -> Self {
            Self {
                cipher: Cipher::new(&random_key()),
                datasource: DataSourceId(uuid::Uuid::new_v4()),
            }
        }

        /// Seals `secret` and opens it again; returns whether the round trip matched.
        pub fn seal_open(&self, secret: &str) -> bool {
            let field = CredentialField::ClientSecret;
            let Ok(sealed) = self.cipher.seal(self.datasource, field, "dk-1", secret) else {
                return false;
            };
            self.cipher
                .open(self.datasource, field, "dk-1", &sealed)
                .is_some_and(|opened| opened.as_str() == secret)
        }
    }

    impl Default for SealBench {
        fn default() -> Self {
            Self::new()
        }
    }
}
