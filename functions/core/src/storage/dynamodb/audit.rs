//! The audit trail in the table: one item per event in the partition of its day
//! ([`key::audit_pk`]), sorted by time, so reading "since T" queries only the days since T.

use super::item::{get_s, item};
use super::query::SortRange;
use super::{DynamoMetaStore, json_attr, parse};
use crate::storage::audit::{AuditEvent, AuditQuery};
use crate::storage::key::{self, AUDIT_DAY_MS, Key};
use crate::storage::{Result, now_ms};

/// Attribute holding the event as JSON.
const EVENT: &str = "event";

/// The item of `event`.
pub(super) fn event_item(event: &AuditEvent) -> Result<super::item::Item> {
    Ok(item(
        Key::Audit(event.time_ms, rand::random()),
        [(EVENT, json_attr(event)?)],
    ))
}

pub(super) async fn record(store: &DynamoMetaStore, event: &AuditEvent) -> Result<()> {
    store.put(event_item(event)?).await
}

pub(super) async fn list(store: &DynamoMetaStore, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
    let mut out = Vec::new();
    let first = query.since_ms / AUDIT_DAY_MS;
    let last = now_ms() / AUDIT_DAY_MS;
    for day in first..=last {
        let range = SortRange::Between(format!("{:020}", query.since_ms), "~".to_owned());
        for i in store.query(&key::audit_pk(day), range, usize::MAX).await? {
            let event: AuditEvent = parse(serde_json::from_str(get_s(&i, EVENT)?))?;
            if query.wants(&event) {
                out.push(event);
                if out.len() >= query.n {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}
