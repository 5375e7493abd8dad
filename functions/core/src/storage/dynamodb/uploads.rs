//! Upload sessions: one item each, written only from the version read (like the embedded
//! store: create fails if the item exists, an update needs the stored version to be one less).
//! Sessions are in no transaction, so real DynamoDB never turns their writes down for
//! contention; they retry it anyway ([`retry::write`]), as every write of this backend does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{EXPIRES, get_n, get_s, item, n};
use super::retry;
use super::{DynamoMetaStore, json_attr, parse};
use crate::storage::aws::storage_error;
use crate::storage::key::Key;
use crate::storage::{Result, StorageError, UploadSession};

/// How long an upload session lives after its last write. DynamoDB's TTL then removes the item
/// (within a day or two; reads treat it as gone at once), and the bucket's lifecycle rule
/// (`s3::admin::STAGING_EXPIRY_DAYS`, the same 7 days) drops whatever it had staged.
pub const UPLOAD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn session_item(session: &UploadSession) -> Result<super::Item> {
    Ok(item(
        Key::Upload(&session.id),
        [
            ("session", json_attr(session)?),
            ("version", n(session.version)),
            (EXPIRES, n(now().saturating_add(UPLOAD_TTL.as_secs()))),
        ],
    ))
}

pub(super) async fn create(store: &DynamoMetaStore, session: &UploadSession) -> Result<()> {
    let item = session_item(session)?;
    retry::write(|| {
        store
            .client
            .put_item()
            .table_name(&store.table)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
    })
    .await
    .map_err(|e| storage_error("PutItem (new upload)", e))?;
    Ok(())
}

pub(super) async fn read(store: &DynamoMetaStore, id: &str) -> Result<Option<UploadSession>> {
    let Some(i) = store.get(Key::Upload(id)).await? else {
        return Ok(None);
    };
    if get_n(&i, EXPIRES)? < now() {
        return Ok(None);
    }
    Ok(Some(parse(serde_json::from_str(get_s(&i, "session")?))?))
}

pub(super) async fn update(store: &DynamoMetaStore, session: &UploadSession) -> Result<()> {
    let Some(previous) = session.version.checked_sub(1) else {
        return Err(StorageError::Conflict);
    };
    let item = session_item(session)?;
    retry::write(|| {
        store
            .client
            .put_item()
            .table_name(&store.table)
            .set_item(Some(item.clone()))
            .condition_expression("#v = :prev")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":prev", AttributeValue::N(previous.to_string()))
            .send()
    })
    .await
    .map_err(|e| storage_error("PutItem (upload update)", e))?;
    Ok(())
}
