//! A field of a JSON merge patch (RFC 7396): absent, null or a value.

use serde::{Deserialize, Deserializer};

/// One optional field of a merge-patch request.
///
/// Use it with `#[serde(default, deserialize_with = "Patch::deserialize")]` so that a
/// field left out of the JSON becomes [`Patch::Absent`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    /// The field was left out: keep the current value.
    #[default]
    Absent,
    /// The field was `null`: clear the current value.
    Null,
    /// The field has a value: replace the current value with it.
    Value(T),
}

impl<T> Patch<T> {
    /// Applies the patch to an optional current value.
    pub fn apply_to(self, current: Option<T>) -> Option<T> {
        match self {
            Patch::Absent => current,
            Patch::Null => None,
            Patch::Value(value) => Some(value),
        }
    }

    /// Returns true when the field was left out.
    pub fn is_absent(&self) -> bool {
        matches!(self, Patch::Absent)
    }

    /// Deserializes a present field; an absent one never reaches this function
    /// and takes the `Default`, [`Patch::Absent`].
    ///
    /// # Errors
    ///
    /// Returns the deserializer's error when the value is neither null nor a `T`.
    pub fn deserialize<'de, D>(deserializer: D) -> Result<Self, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Ok(match Option::<T>::deserialize(deserializer)? {
            None => Patch::Null,
            Some(value) => Patch::Value(value),
        })
    }
}
