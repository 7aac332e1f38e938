//! Conversions between Rust values and SQLite columns.

use time::OffsetDateTime;

use crate::Error;

/// Returns the current time in UTC.
pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Converts a time to UTC nanoseconds since the Unix epoch, saturating
/// outside the years 1677 to 2262 that an `i64` covers.
pub(crate) fn to_nanos(time: OffsetDateTime) -> i64 {
    let nanos = time.unix_timestamp_nanos();
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

/// Converts stored nanoseconds back to a UTC time.
pub(crate) fn from_nanos(
    table: &'static str,
    key: &str,
    nanos: i64,
) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).map_err(|error| {
        Error::CorruptRow {
            table,
            key: key.to_owned(),
            detail: format!("time {nanos} is out of range ({error})"),
        }
    })
}

/// Converts a version or count to the `INTEGER` SQLite stores.
pub(crate) fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Converts a stored `INTEGER` version or count back, treating a negative
/// value as corruption.
pub(crate) fn from_sql_int(table: &'static str, key: &str, value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::CorruptRow {
        table,
        key: key.to_owned(),
        detail: format!("negative counter {value}"),
    })
}
