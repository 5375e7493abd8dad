//! Paginated `Query` over one partition, in sort-key order.

use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoMetaStore;
use super::item::{Item, PK, SK};
use crate::storage::Result;
use crate::storage::aws::storage_error;

/// Items asked for per `Query` call: DynamoDB returns at most 1 MB per call anyway, and a
/// bounded page keeps a huge listing from being fetched when only a few entries are wanted.
const QUERY_PAGE: i32 = 500;

/// Which sort keys of the partition.
#[derive(Debug, Clone)]
pub enum SortRange {
    /// Every sort key.
    All,
    /// Sort keys strictly after this one.
    After(String),
    /// Sort keys in `[lo, hi]`.
    Between(String, String),
}

impl DynamoMetaStore {
    /// Items of partition `pk` within `range`, in order, at most `limit`.
    pub(super) async fn query(
        &self,
        pk: &str,
        range: SortRange,
        limit: usize,
    ) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut start = None;
        while out.len() < limit {
            let want = i32::try_from(limit - out.len())
                .unwrap_or(QUERY_PAGE)
                .min(QUERY_PAGE);
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .limit(want)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .set_exclusive_start_key(start.take());
            req = match &range {
                SortRange::All => req.key_condition_expression("#pk = :pk"),
                SortRange::After(after) => req
                    .key_condition_expression("#pk = :pk AND #sk > :after")
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_values(":after", AttributeValue::S(after.clone())),
                SortRange::Between(lo, hi) => req
                    .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_values(":lo", AttributeValue::S(lo.clone()))
                    .expression_attribute_values(":hi", AttributeValue::S(hi.clone())),
            };
            let page = req.send().await.map_err(|e| storage_error("Query", e))?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}

/// The sort-key range of `prefix` (which ends in `#`), after `last` if given. Sort keys here
/// are built from tags, digests and names, whose characters all sort above `\u{1}`, so
/// `<prefix><last>\u{1}` is the first key after `<prefix><last>`; `$` follows `#`.
pub fn prefix_range(prefix: &str, last: Option<&str>) -> SortRange {
    let lo = match last {
        Some(last) => format!("{prefix}{last}\u{1}"),
        None => prefix.to_owned(),
    };
    let mut hi = prefix.to_owned();
    hi.pop();
    hi.push('$');
    SortRange::Between(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_exclude_last_and_other_prefixes() {
        let SortRange::Between(lo, hi) = prefix_range("TAG#", Some("v1")) else {
            panic!("a range");
        };
        assert!(lo.as_str() > "TAG#v1" && lo.as_str() < "TAG#v1-rc" && lo.as_str() < "TAG#v1.0");
        assert!(hi.as_str() > "TAG#zzz" && hi.as_str() < "UPLOAD");
    }
}
