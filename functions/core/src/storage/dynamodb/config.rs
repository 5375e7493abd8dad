//! Configuration of the DynamoDB metadata store, from `dynamodb://<table>?endpoint=…&region=…`.

use crate::storage::aws::Endpoint;
use crate::storage::backend_url::{BackendUrl, BackendUrlError};

/// The DynamoDB metadata store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoConfig {
    /// Table name.
    pub table: String,
    /// Endpoint, region and credentials.
    pub endpoint: Endpoint,
}

impl DynamoConfig {
    /// Parses `dynamodb://<table>?endpoint=&region=`.
    pub fn from_url(url: &str) -> Result<Self, BackendUrlError> {
        let mut u = BackendUrl::parse(url)?;
        if u.scheme != "dynamodb" {
            return Err(BackendUrlError(format!("{url:?} is not a dynamodb:// URL")));
        }
        let endpoint = Endpoint {
            url: u.take("endpoint"),
            region: u.take("region"),
            credentials: None,
        };
        let table = u.name.clone();
        u.finish()?;
        Ok(DynamoConfig { table, endpoint })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table_endpoint_and_region() {
        let c = DynamoConfig::from_url(
            "dynamodb://wharf?endpoint=http://127.0.0.1:5000&region=eu-west-1",
        )
        .expect("valid");
        assert_eq!(c.table, "wharf");
        assert_eq!(c.endpoint.url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.endpoint.region.as_deref(), Some("eu-west-1"));
        assert!(DynamoConfig::from_url("dynamodb://t?part_size=1").is_err());
        assert!(DynamoConfig::from_url("s3://t").is_err());
    }
}
