//! Manifest and index parsing: which media type a pushed manifest has, what it references and
//! what it says about itself as a referrer. Wire types come from `oci-spec`; every digest inside
//! is re-validated into Wharf's own [`Digest`].

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;

use super::digest::Digest;
use super::error::{ErrorCode, OciError};
use super::media;

/// Largest manifest Wharf accepts (the spec suggests registries accept at least 4 MiB and answer
/// 413 above their limit). Bounded so a manifest always fits in memory and in one response.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// What a referrer entry records about a manifest that has a `subject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    /// The subject manifest's digest.
    pub subject: Digest,
    /// `artifactType`, or the config media type for an image manifest without one.
    pub artifact_type: Option<String>,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A manifest that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    /// The effective media type (body `mediaType`, else `Content-Type`).
    pub media_type: String,
    /// Blobs that must exist in the repository: config and distributable layers.
    pub blobs: Vec<Digest>,
    /// Manifests that must exist in the repository: the children of an index.
    pub manifests: Vec<Digest>,
    /// Set when the manifest has a `subject`.
    pub referrer: Option<Referrer>,
}

/// Just enough of any manifest to learn its declared media type and schema version.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    schema_version: Option<u32>,
    media_type: Option<String>,
}

fn invalid(message: impl Into<String>) -> OciError {
    OciError::new(ErrorCode::ManifestInvalid, message)
}

/// Parses and validates a pushed manifest. `content_type` is the request's `Content-Type`.
pub fn parse_manifest(
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<ParsedManifest, OciError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(too_large());
    }
    let envelope: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim())
        .filter(|c| !c.is_empty());
    let media_type = match (envelope.media_type.as_deref(), content_type) {
        (Some(body), Some(header)) if body != header => {
            return Err(invalid(format!(
                "Content-Type {header:?} does not match the manifest's mediaType {body:?}"
            )));
        }
        (Some(body), _) => body.to_owned(),
        (None, Some(header)) => header.to_owned(),
        (None, None) => return Err(invalid("manifest has no mediaType and no Content-Type")),
    };
    if media_type == media::DOCKER_SCHEMA1 || media_type == media::DOCKER_SCHEMA1_SIGNED {
        return Err(invalid("Docker schema 1 manifests are not supported"));
    }
    if !media::is_manifest(&media_type) {
        return Err(invalid(format!(
            "unsupported manifest media type {media_type:?}"
        )));
    }
    if envelope.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    if media::is_index(&media_type) {
        parse_index(media_type, bytes)
    } else {
        parse_image(media_type, bytes)
    }
}

/// The error for a manifest over [`MAX_MANIFEST_BYTES`].
pub fn too_large() -> OciError {
    invalid(format!(
        "manifest is larger than the {MAX_MANIFEST_BYTES}-byte limit"
    ))
    .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
}

fn parse_image(media_type: String, bytes: &[u8]) -> Result<ParsedManifest, OciError> {
    let manifest: ImageManifest = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("invalid image manifest: {e}")))?;
    let mut blobs = vec![descriptor_digest(manifest.config())?];
    for layer in manifest.layers() {
        if is_foreign(layer) {
            continue;
        }
        blobs.push(descriptor_digest(layer)?);
    }
    let referrer = match manifest.subject() {
        Some(subject) => Some(Referrer {
            subject: descriptor_digest(subject)?,
            artifact_type: Some(
                manifest
                    .artifact_type()
                    .as_ref()
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| manifest.config().media_type().to_string()),
            ),
            annotations: annotations(manifest.annotations().as_ref()),
        }),
        None => None,
    };
    Ok(ParsedManifest {
        media_type,
        blobs,
        manifests: Vec::new(),
        referrer,
    })
}

fn parse_index(media_type: String, bytes: &[u8]) -> Result<ParsedManifest, OciError> {
    let index: ImageIndex =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid image index: {e}")))?;
    let manifests = index
        .manifests()
        .iter()
        .map(descriptor_digest)
        .collect::<Result<_, _>>()?;
    let referrer = match index.subject() {
        Some(subject) => Some(Referrer {
            subject: descriptor_digest(subject)?,
            artifact_type: index.artifact_type().as_ref().map(|t| t.to_string()),
            annotations: annotations(index.annotations().as_ref()),
        }),
        None => None,
    };
    Ok(ParsedManifest {
        media_type,
        blobs: Vec::new(),
        manifests,
        referrer,
    })
}

fn descriptor_digest(d: &Descriptor) -> Result<Digest, OciError> {
    Digest::parse(d.digest().as_ref()).map_err(|e| {
        invalid(format!(
            "descriptor digest {:?}: {e}",
            d.digest().to_string()
        ))
    })
}

/// Foreign and non-distributable layers are fetched from their `urls`, never pushed here.
fn is_foreign(d: &Descriptor) -> bool {
    let media_type = d.media_type().to_string();
    media_type == media::DOCKER_FOREIGN_LAYER
        || media_type.starts_with(media::OCI_NONDISTRIBUTABLE_PREFIX)
}

fn annotations(a: Option<&std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    a.map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    fn image(extra: serde_json::Value) -> Vec<u8> {
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(1), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d(2), "size": 10}]
        });
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(extra.clone());
        }
        serde_json::to_vec(&m).expect("json")
    }

    #[test]
    fn image_manifest_lists_config_and_layers() {
        let p = parse_manifest(Some(media::OCI_MANIFEST), &image(json!({}))).expect("valid");
        assert_eq!(p.media_type, media::OCI_MANIFEST);
        assert_eq!(
            p.blobs.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
            vec![d(1), d(2)]
        );
        assert!(p.referrer.is_none());
    }

    #[test]
    fn artifact_with_subject_is_a_referrer() {
        let body = image(json!({
            "artifactType": "application/vnd.example.sbom",
            "subject": {"mediaType": media::OCI_MANIFEST, "digest": d(9), "size": 100},
            "annotations": {"org.example": "yes"}
        }));
        let p = parse_manifest(None, &body).expect("valid");
        let r = p.referrer.expect("referrer");
        assert_eq!(r.subject.to_string(), d(9));
        assert_eq!(
            r.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(
            r.annotations.get("org.example").map(String::as_str),
            Some("yes")
        );
    }

    #[test]
    fn referrer_without_artifact_type_uses_config_media_type() {
        let body = image(json!({
            "subject": {"mediaType": media::OCI_MANIFEST, "digest": d(9), "size": 100}
        }));
        let r = parse_manifest(None, &body)
            .expect("valid")
            .referrer
            .expect("referrer");
        assert_eq!(
            r.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn docker_schema2_and_manifest_list_parse() {
        let m = json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": d(1), "size": 2},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d(2), "size": 3},
                {"mediaType": media::DOCKER_FOREIGN_LAYER, "digest": d(3), "size": 3, "urls": ["https://example.invalid/x"]}
            ]
        });
        let p = parse_manifest(
            Some(media::DOCKER_MANIFEST),
            &serde_json::to_vec(&m).expect("json"),
        )
        .expect("valid");
        assert_eq!(p.blobs.len(), 2, "foreign layer is not required");
        let list = json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_MANIFEST_LIST,
            "manifests": [{"mediaType": media::DOCKER_MANIFEST, "digest": d(4), "size": 5,
                           "platform": {"architecture": "amd64", "os": "linux"}}]
        });
        let p = parse_manifest(None, &serde_json::to_vec(&list).expect("json")).expect("valid");
        assert_eq!(
            p.manifests
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>(),
            vec![d(4)]
        );
    }

    #[test]
    fn invalid_manifests_are_refused() {
        let cases: Vec<(Option<&str>, Vec<u8>)> = vec![
            (None, b"not json".to_vec()),
            (None, b"{}".to_vec()),
            (Some(media::DOCKER_MANIFEST), image(json!({}))),
            (Some("text/plain"), br#"{"schemaVersion":2}"#.to_vec()),
            (None, image(json!({"schemaVersion": 1}))),
            (
                None,
                image(json!({"mediaType": media::DOCKER_SCHEMA1_SIGNED})),
            ),
            (
                None,
                image(json!({"config": {"mediaType": "x/y", "digest": "sha256:abc", "size": 1}})),
            ),
            (
                None,
                image(json!({"layers": [{"mediaType": "x/y", "digest": "md5:00", "size": 1}]})),
            ),
            (None, image(json!({"config": null}))),
            (
                None,
                format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            ),
        ];
        for (i, (ct, body)) in cases.into_iter().enumerate() {
            let err = parse_manifest(ct, &body).expect_err(&format!("case {i} must fail"));
            assert_eq!(err.code(), ErrorCode::ManifestInvalid, "case {i}");
        }
    }

    #[test]
    fn oversized_manifest_is_413() {
        let body = vec![b' '; MAX_MANIFEST_BYTES + 1];
        let err = parse_manifest(None, &body).expect_err("too big");
        assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn content_type_parameters_are_ignored() {
        let ct = format!("{}; charset=utf-8", media::OCI_MANIFEST);
        assert!(parse_manifest(Some(&ct), &image(json!({}))).is_ok());
    }
}
