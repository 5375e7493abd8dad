//! oras-py against Wharf: artifacts with a `subject` show up in the referrers API (with
//! `artifactType` filtering), and a chunked upload (POST, several PATCHes, PUT) stores the file
//! byte for byte.

use anyhow::{Result, anyhow};
use serde_json::Value;
use wharf_e2e::curl::{Request, Response};
use wharf_e2e::image::seeded_bytes;
use wharf_e2e::layout::{Descriptor, OCI_INDEX, OCI_MANIFEST};
use wharf_e2e::oras::{self, PushOptions};
use wharf_e2e::{Wharf, digest};

const SIGNATURE: &str = "application/vnd.example.signature";
const SBOM: &str = "application/vnd.example.sbom";

/// The manifest `reference` of `repo` as the registry serves it, and its descriptor.
fn manifest(wharf: &Wharf, repo: &str, reference: &str) -> Result<(Vec<u8>, Descriptor)> {
    let response = Request::get(format!("{}/v2/{repo}/manifests/{reference}", wharf.url()))
        .header("Accept", OCI_MANIFEST)
        .send()?;
    response.expect_status(200)?;
    let descriptor = Descriptor {
        media_type: OCI_MANIFEST.to_owned(),
        digest: digest::sha256(&response.body),
        size: response.body.len() as u64,
        platform: None,
    };
    Ok((response.body, descriptor))
}

fn referrers(wharf: &Wharf, repo: &str, subject: &str, filter: Option<&str>) -> Result<Response> {
    let query = filter
        .map(|t| format!("?artifactType={t}"))
        .unwrap_or_default();
    let response = Request::get(format!(
        "{}/v2/{repo}/referrers/{subject}{query}",
        wharf.url()
    ))
    .send()?;
    response.expect_status(200)?;
    assert_eq!(response.header("Content-Type"), Some(OCI_INDEX));
    Ok(response)
}

fn entries(response: &Response) -> Result<Vec<Value>> {
    let index = response.json()?;
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    index["manifests"]
        .as_array()
        .cloned()
        .ok_or_else(|| anyhow!("referrers response has no manifests array: {index}"))
}

fn entry_for<'a>(entries: &'a [Value], digest: &str) -> Result<&'a Value> {
    entries
        .iter()
        .find(|e| e["digest"] == digest)
        .ok_or_else(|| anyhow!("{digest} is not among the referrers {entries:?}"))
}

/// Pushes an artifact of type `artifact_type` whose subject is `subject`, tagged `tag`.
fn push_referrer(
    wharf: &Wharf,
    dir: &std::path::Path,
    tag: &str,
    artifact_type: &str,
    subject: &Descriptor,
) -> Result<(oras::Pushed, Descriptor)> {
    let file = dir.join(format!("{tag}.txt"));
    std::fs::write(&file, format!("{artifact_type} for {}\n", subject.digest))?;
    let options = PushOptions {
        config_media_type: Some(artifact_type.to_owned()),
        subject: Some(subject.clone()),
        annotations: vec![("org.example.kind".to_owned(), tag.to_owned())],
        chunk_size: None,
    };
    let target = format!("{}/e2e/artifact:{tag}", wharf.host());
    let pushed = oras::push(&wharf.host(), &target, &file, &options)?;
    let (_, descriptor) = manifest(wharf, "e2e/artifact", tag)?;
    assert_eq!(pushed.digest, descriptor.digest);
    Ok((pushed, descriptor))
}

#[test]
fn referrers_list_artifacts_pushed_with_a_subject_and_filter_by_artifact_type() -> Result<()> {
    let wharf = Wharf::start()?;
    let work = tempfile::tempdir()?;
    let file = work.path().join("hello.txt");
    std::fs::write(&file, b"hello from wharf-e2e\n")?;
    let target = format!("{}/e2e/artifact:v1", wharf.host());
    let pushed = oras::push(&wharf.host(), &target, &file, &PushOptions::default())?;
    let (_, subject) = manifest(&wharf, "e2e/artifact", "v1")?;
    assert_eq!(
        pushed.digest, subject.digest,
        "Docker-Content-Digest is wrong"
    );

    let (signature, signature_manifest) =
        push_referrer(&wharf, work.path(), "sig", SIGNATURE, &subject)?;
    assert_eq!(
        signature.subject.as_deref(),
        Some(subject.digest.as_str()),
        "a manifest with a subject must be answered with OCI-Subject"
    );
    let (_, sbom_manifest) = push_referrer(&wharf, work.path(), "sbom", SBOM, &subject)?;

    let all = entries(&referrers(&wharf, "e2e/artifact", &subject.digest, None)?)?;
    assert_eq!(all.len(), 2, "{all:?}");
    let entry = entry_for(&all, &signature_manifest.digest)?;
    assert_eq!(entry["mediaType"], OCI_MANIFEST);
    assert_eq!(entry["artifactType"], SIGNATURE);
    assert_eq!(entry["size"], signature_manifest.size);
    assert_eq!(entry["annotations"]["org.example.kind"], "sig");
    assert_eq!(
        entry_for(&all, &sbom_manifest.digest)?["artifactType"],
        SBOM
    );

    let filtered = referrers(&wharf, "e2e/artifact", &subject.digest, Some(SIGNATURE))?;
    assert_eq!(filtered.header("OCI-Filters-Applied"), Some("artifactType"));
    let only = entries(&filtered)?;
    assert_eq!(only.len(), 1, "{only:?}");
    assert_eq!(only[0]["digest"], signature_manifest.digest);

    let none = referrers(
        &wharf,
        "e2e/artifact",
        &subject.digest,
        Some("application/vnd.example.none"),
    )?;
    assert_eq!(none.header("OCI-Filters-Applied"), Some("artifactType"));
    assert!(entries(&none)?.is_empty());
    Ok(())
}

#[test]
fn referrers_of_a_digest_without_referrers_is_an_empty_index() -> Result<()> {
    let wharf = Wharf::start()?;
    let unknown = digest::sha256(b"no manifest has this digest");
    let response = referrers(&wharf, "e2e/artifact", &unknown, None)?;
    assert!(entries(&response)?.is_empty());
    assert_eq!(response.header("OCI-Filters-Applied"), None);
    Ok(())
}

/// Size of the chunked file: several chunks plus a partial one.
const CHUNKED_FILE_BYTES: usize = 5 * 1024 * 1024 + 12_345;
/// Chunk size oras uses: smaller than the file, so it PATCHes six times.
const CHUNK_BYTES: usize = 1024 * 1024;

#[test]
fn chunked_push_of_several_mib_pulls_back_byte_identical() -> Result<()> {
    let wharf = Wharf::start()?;
    let work = tempfile::tempdir()?;
    let file = work.path().join("payload.bin");
    let content = seeded_bytes(5, CHUNKED_FILE_BYTES);
    std::fs::write(&file, &content)?;
    let target = format!("{}/e2e/chunked:v1", wharf.host());
    let options = PushOptions {
        chunk_size: Some(CHUNK_BYTES),
        ..PushOptions::default()
    };
    oras::push(&wharf.host(), &target, &file, &options)?;

    let patches = wharf
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.status == 202)
        .count();
    let expected = CHUNKED_FILE_BYTES.div_ceil(CHUNK_BYTES);
    assert_eq!(
        patches, expected,
        "oras should have sent {expected} PATCHes"
    );

    let out = work.path().join("pulled");
    std::fs::create_dir_all(&out)?;
    let files = oras::pull(&wharf.host(), &target, &out)?;
    assert_eq!(files.len(), 1, "{files:?}");
    let pulled = std::fs::read(out.join("payload.bin"))?;
    assert_eq!(pulled.len(), content.len());
    assert!(pulled == content, "pulled bytes differ from pushed bytes");
    Ok(())
}
