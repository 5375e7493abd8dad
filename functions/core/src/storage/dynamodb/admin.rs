//! Setting up the table for Wharf (`wharf admin create-table`): for local servers and first
//! deployments; production tables may equally be made by infrastructure code.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};

use aws_sdk_dynamodb::error::ProvideErrorMetadata;

use super::DynamoMetaStore;
use super::item::{EXPIRES, PK, SK};
use crate::storage::aws::storage_error;
use crate::storage::{Result, StorageError};

/// How long to wait for a new table to become active.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Pause between status polls while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Creates the table (`pk`/`sk` strings, on-demand billing, TTL on `expires`) if missing.
/// Returns true when it was created.
pub async fn create_table(store: &DynamoMetaStore) -> Result<bool> {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(StorageError::backend)
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(StorageError::backend)
    };
    let sent = store
        .client
        .create_table()
        .table_name(&store.table)
        .attribute_definitions(attr(PK)?)
        .attribute_definitions(attr(SK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    let created = match sent {
        Ok(_) => true,
        Err(e) if ProvideErrorMetadata::code(&e) == Some("ResourceInUseException") => false,
        Err(e) => return Err(storage_error("CreateTable", e)),
    };
    wait_active(store).await?;
    let ttl = store
        .client
        .update_time_to_live()
        .table_name(&store.table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(EXPIRES)
                .enabled(true)
                .build()
                .map_err(StorageError::backend)?,
        )
        .send()
        .await;
    match ttl {
        Ok(_) => Ok(created),
        // Enabling TTL twice is refused; that is the state we want.
        Err(e) if !created && ProvideErrorMetadata::code(&e) == Some("ValidationException") => {
            Ok(created)
        }
        Err(e) => Err(storage_error("UpdateTimeToLive", e)),
    }
}

async fn wait_active(store: &DynamoMetaStore) -> Result<()> {
    let deadline = tokio::time::Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let out = store
            .client
            .describe_table()
            .table_name(&store.table)
            .send()
            .await
            .map_err(|e| storage_error("DescribeTable", e))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(StorageError::backend(
                "the table did not become active in time",
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
