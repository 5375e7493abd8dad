//! Direct uploads on a real S3-compatible store (s3s-fs, which verifies SigV4 and the body
//! against `x-amz-content-sha256`): the presigned PUT is bound to the blob's digest, so the
//! store itself refuses other bytes, and a refused blob never becomes visible.

use anyhow::Result;
use wharf::oci::Algorithm;
use wharf::storage::BlobStore;
use wharf::storage::aws::{Endpoint, StaticCredentials};
use wharf::storage::s3::{S3BlobStore, S3Config};
use wharf_e2e::cloud::{ACCESS_KEY, REGION, S3sFs, SECRET_KEY};

async fn store(s3: &S3sFs) -> Result<S3BlobStore> {
    let endpoint = Endpoint {
        url: Some(s3.endpoint()),
        region: Some(REGION.to_owned()),
        credentials: Some(StaticCredentials {
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: SECRET_KEY.to_owned(),
        }),
    };
    let store = S3BlobStore::connect(S3Config::new("wharf-direct", endpoint)).await;
    wharf::storage::s3::admin::create_bucket(&store).await?;
    Ok(store)
}

fn client() -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder().build()?)
}

/// Sends `body` to the presigned request, with its headers, optionally overriding one.
async fn put(
    client: &reqwest::Client,
    upload: &wharf::storage::DirectUpload,
    body: Vec<u8>,
    override_header: Option<(&str, String)>,
) -> Result<(u16, String)> {
    let mut req = client.put(&upload.url);
    for (k, v) in &upload.headers {
        match &override_header {
            Some((name, value)) if name == k => req = req.header(k, value),
            _ => req = req.header(k, v),
        }
    }
    let res = req.body(body).send().await?;
    Ok((res.status().as_u16(), res.text().await?))
}

#[tokio::test]
async fn the_store_refuses_bytes_that_do_not_match_the_bound_digest() -> Result<()> {
    let s3 = S3sFs::start()?;
    let store = store(&s3).await?;
    let client = client()?;
    let good = vec![42u8; 256 * 1024];
    let mut evil = good.clone();
    evil[1000] ^= 1;
    let digest = Algorithm::Sha256.digest(&good);
    let id = "00000000000000000000000000000abc";
    let upload = store
        .direct_upload(id, &digest, good.len() as u64)
        .await?
        .expect("S3 presigns direct uploads");
    assert_eq!(upload.method, "PUT");
    assert!(
        upload
            .headers
            .contains(&("x-amz-content-sha256".to_owned(), digest.hex().to_owned())),
        "{:?}",
        upload.headers
    );

    // Wrong bytes of the right length, with the signed headers as given: the store refuses
    // (s3s-fs answers 500 InternalError, the mismatch surfacing as a failed body stream; AWS
    // S3 answers 400 XAmzContentSHA256Mismatch) and keeps nothing.
    let (status, text) = put(&client, &upload, evil.clone(), None).await?;
    assert!(
        !(200..300).contains(&status),
        "wrong body accepted: {status} {text}"
    );
    assert!(store.finish_direct_upload(id, &digest).await?.is_none());
    assert_eq!(
        store.stat(&digest).await?,
        None,
        "the blob never became visible"
    );

    // Wrong bytes with the header changed to their own hash: the signature no longer holds.
    let evil_hex = Algorithm::Sha256.digest(&evil).hex().to_owned();
    let (status, text) = put(
        &client,
        &upload,
        evil.clone(),
        Some(("x-amz-content-sha256", evil_hex)),
    )
    .await?;
    assert_eq!(status, 403, "re-bound header accepted: {text}");
    assert!(store.finish_direct_upload(id, &digest).await?.is_none());

    // The right bytes pass, and only then does finishing make the blob visible.
    let (status, text) = put(&client, &upload, good.clone(), None).await?;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        store.stat(&digest).await?,
        None,
        "not visible before finish"
    );
    assert_eq!(
        store.finish_direct_upload(id, &digest).await?,
        Some(good.len() as u64)
    );
    assert_eq!(store.stat(&digest).await?, Some(good.len() as u64));
    // The staged copy is gone: finishing again finds nothing.
    assert!(store.finish_direct_upload(id, &digest).await?.is_none());
    // Another upload naming the same digest, without putting the bytes, gets nothing.
    let other = "00000000000000000000000000000def";
    assert!(store.finish_direct_upload(other, &digest).await?.is_none());
    Ok(())
}
