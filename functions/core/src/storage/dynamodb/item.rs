//! Items: key maps from [`Key`] and typed reads of attributes.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::storage::key::Key;
use crate::storage::{Result, StorageError};

/// Partition key attribute.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";
/// Expiry attribute (unix seconds) the table's TTL is set on.
pub const EXPIRES: &str = "expires";

/// Push time of a tag item (Unix milliseconds); absent on tags written before it existed.
pub const PUSHED_MS: &str = "pushed_ms";

/// An item as the SDK holds it.
pub type Item = HashMap<String, AttributeValue>;

/// `{pk, sk}` of `key`.
pub fn key_map(key: Key<'_>) -> Item {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(key.pk())),
        (SK.to_owned(), AttributeValue::S(key.sk())),
    ])
}

/// The key of `key` plus `attrs`.
pub fn item(key: Key<'_>, attrs: impl IntoIterator<Item = (&'static str, AttributeValue)>) -> Item {
    let mut m = key_map(key);
    m.extend(attrs.into_iter().map(|(k, v)| (k.to_owned(), v)));
    m
}

/// A number attribute.
pub fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A string attribute.
pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn missing(name: &str) -> StorageError {
    StorageError::backend(format!(
        "item lacks attribute {name:?} or has the wrong type"
    ))
}

/// Reads a string attribute.
pub fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(missing(name)),
    }
}

/// Reads an optional string attribute.
pub fn opt_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

/// Reads a number attribute.
pub fn get_n(item: &Item, name: &str) -> Result<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| missing(name)),
        _ => Err(missing(name)),
    }
}

/// Reads an optional number attribute (absent → `None`; present with the wrong type → error).
pub fn opt_n(item: &Item, name: &str) -> Result<Option<u64>> {
    match item.get(name) {
        None => Ok(None),
        Some(_) => get_n(item, name).map(Some),
    }
}

/// Reads a binary attribute.
pub fn get_b<'a>(item: &'a Item, name: &str) -> Result<&'a [u8]> {
    match item.get(name) {
        Some(AttributeValue::B(v)) => Ok(v.as_ref()),
        _ => Err(missing(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_numbers_read_absent_as_none_and_reject_wrong_types() {
        let mut i = Item::new();
        assert_eq!(opt_n(&i, PUSHED_MS).expect("absent"), None);
        i.insert(PUSHED_MS.into(), n(42));
        assert_eq!(opt_n(&i, PUSHED_MS).expect("present"), Some(42));
        i.insert(PUSHED_MS.into(), s("42"));
        assert!(opt_n(&i, PUSHED_MS).is_err());
    }
}
