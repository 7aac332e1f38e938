//! Validation errors with a JSON pointer per problem, and strict JSON parsing.
//!
//! Every check in this crate reports into a [`ValidationErrors`] list instead of
//! stopping at the first problem, so a caller can fix a request in one pass.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// One problem with one field of an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// JSON pointer (RFC 6901) of the offending field, such as `/auth/token_url`.
    /// The empty string points at the whole document.
    #[cfg_attr(feature = "openapi", schema(example = "/auth/token_url"))]
    pub pointer: String,
    /// The problem with the value and how to fix it.
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "token_url is required for the bearer method: set the OAuth token endpoint URL"
        )
    )]
    pub detail: String,
}

/// Every problem found in an input, in the order the fields were checked.
///
/// Returned by the `validate` methods and by [`parse_json`]. It is never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors {
    errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// Creates a list from problems collected elsewhere; `None` when there are none.
    pub fn new(errors: Vec<FieldError>) -> Option<Self> {
        if errors.is_empty() {
            None
        } else {
            Some(Self { errors })
        }
    }

    /// Creates a list with a single problem.
    pub fn single(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            errors: vec![FieldError {
                pointer: pointer.into(),
                detail: detail.into(),
            }],
        }
    }

    /// Returns the problems, at least one.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// Consumes the list and returns the problems.
    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }

    /// Returns the detail of the first problem at `pointer`, if any.
    pub fn detail_at(&self, pointer: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|error| error.pointer == pointer)
            .map(|error| error.detail.as_str())
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid input: ")?;
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            if error.pointer.is_empty() {
                f.write_str(&error.detail)?;
            } else {
                write!(f, "{}: {}", error.pointer, error.detail)?;
            }
        }
        Ok(())
    }
}

/// Collects problems while a value is checked, then turns into a result.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    errors: Vec<FieldError>,
}

impl Collector {
    pub(crate) fn push(&mut self, pointer: impl Into<String>, detail: impl Into<String>) {
        self.errors.push(FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        });
    }

    pub(crate) fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors {
                errors: self.errors,
            })
        }
    }
}

/// Maximum length, in characters, of a value quoted in full by an error message.
const MAX_QUOTED_CHARS: usize = 80;

/// Quotes a user-supplied (non-secret) value for an error message.
///
/// Long values are cut so that a pasted document cannot flood a log line, and
/// control characters are escaped so that the message stays on one line.
pub(crate) fn quote(value: &str) -> String {
    let mut quoted: String = value.chars().take(MAX_QUOTED_CHARS).collect();
    if value.chars().count() > MAX_QUOTED_CHARS {
        quoted.push('…');
    }
    format!("{quoted:?}")
}

/// Escapes one reference token of a JSON pointer (RFC 6901 section 3).
pub(crate) fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Parses JSON into `T`, rejecting unknown fields and malformed values with the
/// JSON pointer of the field at fault.
///
/// The wire types of this crate all reject unknown fields, so a typo such as
/// `grant-type` is reported instead of being silently ignored. Semantic checks
/// are separate: call the type's `validate` method after parsing.
///
/// # Errors
///
/// Returns a single [`FieldError`] when the input is not JSON, has the wrong
/// shape, names an unknown field or misses a required one.
pub fn parse_json<T: DeserializeOwned>(input: &[u8]) -> Result<T, ValidationErrors> {
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let mut pointer = String::new();
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Map { key } => {
                    pointer.push('/');
                    pointer.push_str(&escape_pointer_token(key));
                }
                serde_path_to_error::Segment::Seq { index } => {
                    pointer.push('/');
                    pointer.push_str(&index.to_string());
                }
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => {}
            }
        }
        describe_serde_error(pointer, error.inner())
    })?;
    deserializer.end().map_err(|error| {
        ValidationErrors::single("", format!("invalid JSON after the document: {error}"))
    })?;
    Ok(value)
}

fn describe_serde_error(mut pointer: String, error: &serde_json::Error) -> ValidationErrors {
    use serde_json::error::Category;

    let message = strip_position(&error.to_string());
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => ValidationErrors::single(
            "",
            format!(
                "the body is not valid JSON ({message} at line {}, column {}): send a JSON object",
                error.line(),
                error.column()
            ),
        ),
        Category::Data => {
            // serde reports unknown and missing fields against the enclosing
            // object; point at the field itself, which is what a user edits.
            if let Some(field) = backquoted_after(&message, "unknown field `") {
                push_field(&mut pointer, field);
                let hint = message
                    .split_once(", expected ")
                    .map(|(_, expected)| format!(": remove it; expected {expected}"))
                    .unwrap_or_else(|| ": remove it".to_owned());
                return ValidationErrors::single(
                    pointer,
                    format!("unknown field {}{hint}", quote(field)),
                );
            }
            if let Some(field) = backquoted_after(&message, "missing field `") {
                push_field(&mut pointer, field);
                return ValidationErrors::single(
                    pointer,
                    format!("missing required field {}", quote(field)),
                );
            }
            ValidationErrors::single(pointer, without_value(&message))
        }
    }
}

/// Drops the offending value from serde's "invalid type" and "invalid value"
/// messages: the field may be a secret sent with the wrong JSON type, such as
/// a numeric client secret, and its value must not reach an error or a log.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        let (unexpected, expected) = match rest.split_once(", expected ") {
            Some((unexpected, expected)) => (unexpected, Some(expected)),
            None => (rest, None),
        };
        // serde writes the value after the kind: integer `5`, string "x".
        let kind = unexpected
            .split_once(['`', '"'])
            .map_or(unexpected, |(kind, _)| kind)
            .trim_end();
        return match expected {
            Some(expected) => format!("{prefix}{kind}, expected {expected}"),
            None => format!("{prefix}{kind}"),
        };
    }
    message.to_owned()
}

/// Appends `field` to `pointer` unless the pointer already ends with it, as
/// it does when the path tracker saw the key before the error.
fn push_field(pointer: &mut String, field: &str) {
    let token = format!("/{}", escape_pointer_token(field));
    if !pointer.ends_with(&token) {
        pointer.push_str(&token);
    }
}

/// Removes serde_json's " at line L column C" suffix, which the parse error
/// reports separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

fn backquoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(field, _)| field)
}
