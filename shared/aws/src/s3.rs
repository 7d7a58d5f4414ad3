//! S3 behind the [`Objects`] port: facts with checksums, part boundaries, streamed bodies,
//! tags, versions, listing, and a server-side copy that keeps what matters.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, MetadataDirective,
    ObjectAttributes, ServerSideEncryption, StorageClass, TaggingDirective,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use selfheal_core::checksums::Algorithm;
use selfheal_core::ports::objects::{
    copy_part_size, Body, ContentHeaders, CopySpec, Encryption, ListPage, ObjectFacts, ObjectRef,
    Objects, VersionInfo, MAX_SINGLE_COPY,
};
use selfheal_core::AwsError;

use crate::error::from_sdk;

pub struct S3Objects(pub aws_sdk_s3::Client);

impl S3Objects {
    /// The adapter over [`crate::config::s3_client`].
    pub fn from_conf(sdk: &SdkConfig) -> Self {
        Self(crate::config::s3_client(sdk))
    }
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

fn to_sdk_algorithm(a: Algorithm) -> Option<ChecksumAlgorithm> {
    Some(match a {
        Algorithm::Crc32 => ChecksumAlgorithm::Crc32,
        Algorithm::Crc32c => ChecksumAlgorithm::Crc32C,
        Algorithm::Crc64Nvme => ChecksumAlgorithm::Crc64Nvme,
        Algorithm::Sha1 => ChecksumAlgorithm::Sha1,
        Algorithm::Sha256 => ChecksumAlgorithm::Sha256,
        Algorithm::Md5 => return None,
    })
}

/// Characters escaped in `x-amz-copy-source` and in the tagging query: everything but
/// unreserved characters (and `/` in keys).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const PATH: &AsciiSet = &QUERY.remove(b'/');

fn copy_source(src: &ObjectRef) -> String {
    let mut s = format!("{}/{}", src.bucket, utf8_percent_encode(&src.key, PATH));
    if let Some(v) = &src.version_id {
        s.push_str("?versionId=");
        s.push_str(&utf8_percent_encode(v, QUERY).to_string());
    }
    s
}

fn tagging(tags: &[(String, String)]) -> String {
    tags.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, QUERY),
                utf8_percent_encode(v, QUERY)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[async_trait]
impl Objects for S3Objects {
    async fn head(&self, obj: &ObjectRef) -> Result<Option<ObjectFacts>, AwsError> {
        let out = match self
            .0
            .head_object()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .set_version_id(obj.version_id.clone())
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let err = from_sdk("s3:HeadObject", obj.to_string(), e);
                // HeadObject has no body: a missing object is a bare 404.
                if err.is_code("NotFound") || err.is_code("NoSuchKey") || err.is_code("404") {
                    return Ok(None);
                }
                return Err(err);
            }
        };
        let mut checksums = BTreeMap::new();
        for (a, v) in [
            (Algorithm::Crc64Nvme, out.checksum_crc64_nvme()),
            (Algorithm::Crc32c, out.checksum_crc32_c()),
            (Algorithm::Crc32, out.checksum_crc32()),
            (Algorithm::Sha256, out.checksum_sha256()),
            (Algorithm::Sha1, out.checksum_sha1()),
        ] {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                checksums.insert(a, v.to_string());
            }
        }
        let s = |v: Option<&str>| v.map(str::to_string);
        Ok(Some(ObjectFacts {
            object: Some(ObjectRef {
                bucket: obj.bucket.clone(),
                key: obj.key.clone(),
                version_id: s(out.version_id()).or_else(|| obj.version_id.clone()),
            }),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().map(unquote),
            metadata: out
                .metadata()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            checksums,
            checksum_type: out.checksum_type().map(|t| t.as_str().to_string()),
            encryption: Encryption {
                algorithm: out.server_side_encryption().map(|a| a.as_str().to_string()),
                kms_key_id: s(out.ssekms_key_id()),
                customer_key: out.sse_customer_algorithm().is_some(),
            },
            headers: ContentHeaders {
                content_type: s(out.content_type()),
                cache_control: s(out.cache_control()),
                content_disposition: s(out.content_disposition()),
                content_encoding: s(out.content_encoding()),
                content_language: s(out.content_language()),
            },
            storage_class: out.storage_class().map(|c| c.as_str().to_string()),
        }))
    }

    async fn part_sizes(&self, obj: &ObjectRef, count: u32) -> Result<Vec<u64>, AwsError> {
        // GetObjectAttributes lists parts 1,000 at a time; it only knows them for objects
        // uploaded with an additional checksum, so HeadObject with PartNumber is the fallback.
        let mut sizes = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .0
                .get_object_attributes()
                .bucket(&obj.bucket)
                .key(&obj.key)
                .set_version_id(obj.version_id.clone())
                .object_attributes(ObjectAttributes::ObjectParts)
                .max_parts(1000)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let Ok(out) = out else { break };
            let Some(parts) = out.object_parts() else {
                break;
            };
            let before = sizes.len();
            sizes.extend(
                parts
                    .parts()
                    .iter()
                    .filter_map(|p| p.size())
                    .map(|s| s.max(0) as u64),
            );
            let next = parts.next_part_number_marker().map(str::to_string);
            if parts.is_truncated() != Some(true)
                || next.is_none()
                || next == marker
                || sizes.len() == before
            {
                break;
            }
            marker = next;
        }
        if sizes.len() == count as usize {
            return Ok(sizes);
        }
        let mut sizes = Vec::with_capacity(count as usize);
        for n in 1..=count {
            let out = self
                .0
                .head_object()
                .bucket(&obj.bucket)
                .key(&obj.key)
                .set_version_id(obj.version_id.clone())
                .part_number(n as i32)
                .send()
                .await
                .map_err(|e| from_sdk("s3:HeadObject(PartNumber)", obj.to_string(), e))?;
            if out.parts_count().is_some_and(|c| c as u32 != count) {
                return Err(AwsError::new(
                    "s3:HeadObject(PartNumber)",
                    obj.to_string(),
                    format!("object has {:?} parts, expected {count}", out.parts_count()),
                ));
            }
            sizes.push(out.content_length().unwrap_or(0).max(0) as u64);
        }
        Ok(sizes)
    }

    async fn read(&self, obj: &ObjectRef, if_match: Option<&str>) -> Result<Body, AwsError> {
        let out = self
            .0
            .get_object()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .set_version_id(obj.version_id.clone())
            .set_if_match(if_match.map(|e| format!("\"{e}\"")))
            .send()
            .await
            .map_err(|e| from_sdk("s3:GetObject", obj.to_string(), e))?;
        let name = obj.to_string();
        let body = futures::stream::unfold((out.body, name), |(mut body, name)| async move {
            match body.next().await {
                None => None,
                Some(Ok(b)) => Some((Ok(b), (body, name))),
                Some(Err(e)) => {
                    let err = AwsError {
                        operation: "s3:GetObject(body)",
                        resource: name.clone(),
                        code: None,
                        message: e.to_string(),
                        retryable: true,
                    };
                    Some((Err(err), (body, name)))
                }
            }
        });
        Ok(Box::pin(body))
    }

    async fn bucket_tags(&self, bucket: &str) -> Result<Vec<(String, String)>, AwsError> {
        match self.0.get_bucket_tagging().bucket(bucket).send().await {
            Ok(out) => Ok(out
                .tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()),
            Err(e) => {
                let err = from_sdk("s3:GetBucketTagging", bucket, e);
                if err.is_code("NoSuchTagSet") || err.is_code("NoSuchTagSetError") {
                    Ok(Vec::new())
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn object_tags(&self, obj: &ObjectRef) -> Result<Vec<(String, String)>, AwsError> {
        let out = self
            .0
            .get_object_tagging()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .set_version_id(obj.version_id.clone())
            .send()
            .await
            .map_err(|e| from_sdk("s3:GetObjectTagging", obj.to_string(), e))?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect())
    }

    async fn versioning(&self, bucket: &str) -> Result<Option<String>, AwsError> {
        let out = self
            .0
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| from_sdk("s3:GetBucketVersioning", bucket, e))?;
        Ok(out.status().map(|s| s.as_str().to_string()))
    }

    async fn versions(
        &self,
        bucket: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<VersionInfo>, AwsError> {
        let mut found = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let out = self
                .0
                .list_object_versions()
                .bucket(bucket)
                .prefix(key)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .map_err(|e| from_sdk("s3:ListObjectVersions", bucket, e))?;
            // The prefix also matches longer keys; only exactly this key counts.
            for v in out.versions().iter().filter(|v| v.key() == Some(key)) {
                let Some(id) = v.version_id() else { continue };
                found.push(VersionInfo {
                    version_id: id.to_string(),
                    is_latest: v.is_latest() == Some(true),
                    size: v.size().unwrap_or(0).max(0) as u64,
                    etag: v.e_tag().map(unquote),
                });
            }
            // Versions of one key come newest first; once past the key, stop.
            let past_key = out.next_key_marker().is_some_and(|k| k > key);
            if found.len() >= limit || out.is_truncated() != Some(true) || past_key {
                break;
            }
            let (k, v) = (
                out.next_key_marker().map(str::to_string),
                out.next_version_id_marker().map(str::to_string),
            );
            if k.is_none() || (k == key_marker && v == version_marker) {
                break;
            }
            key_marker = k;
            version_marker = v;
        }
        found.truncate(limit);
        Ok(found)
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: i32,
    ) -> Result<ListPage, AwsError> {
        let out = self
            .0
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(str::to_string))
            .max_keys(max_keys)
            .send()
            .await
            .map_err(|e| from_sdk("s3:ListObjectsV2", bucket, e))?;
        Ok(ListPage {
            keys: out
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .collect(),
            truncated: out.is_truncated() == Some(true),
        })
    }

    async fn copy(&self, spec: &CopySpec) -> Result<Option<String>, AwsError> {
        let dest = format!("s3://{}/{}", spec.dest_bucket, spec.dest_key);
        let metadata = spec
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let h = &spec.headers;
        let sse = spec
            .encryption
            .algorithm
            .as_deref()
            .map(ServerSideEncryption::from);
        let storage = spec.storage_class.as_deref().map(StorageClass::from);
        let checksum = spec.checksum.and_then(to_sdk_algorithm);
        let threshold = spec.multipart_threshold.min(MAX_SINGLE_COPY);
        if spec.size <= threshold {
            let out = self
                .0
                .copy_object()
                .copy_source(copy_source(&spec.source))
                .bucket(&spec.dest_bucket)
                .key(&spec.dest_key)
                .metadata_directive(MetadataDirective::Replace)
                .set_metadata(Some(metadata))
                .set_content_type(h.content_type.clone())
                .set_cache_control(h.cache_control.clone())
                .set_content_disposition(h.content_disposition.clone())
                .set_content_encoding(h.content_encoding.clone())
                .set_content_language(h.content_language.clone())
                .tagging_directive(TaggingDirective::Replace)
                .tagging(tagging(&spec.tags))
                .set_server_side_encryption(sse)
                .set_ssekms_key_id(spec.encryption.kms_key_id.clone())
                .set_storage_class(storage)
                .set_checksum_algorithm(checksum)
                .send()
                .await
                .map_err(|e| from_sdk("s3:CopyObject", &dest, e))?;
            return Ok(out.version_id().map(str::to_string));
        }
        let created = self
            .0
            .create_multipart_upload()
            .bucket(&spec.dest_bucket)
            .key(&spec.dest_key)
            .set_metadata(Some(metadata))
            .set_content_type(h.content_type.clone())
            .set_cache_control(h.cache_control.clone())
            .set_content_disposition(h.content_disposition.clone())
            .set_content_encoding(h.content_encoding.clone())
            .set_content_language(h.content_language.clone())
            .tagging(tagging(&spec.tags))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(spec.encryption.kms_key_id.clone())
            .set_storage_class(storage)
            .set_checksum_algorithm(checksum.clone())
            .send()
            .await
            .map_err(|e| from_sdk("s3:CreateMultipartUpload", &dest, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = self.copy_parts(spec, &upload_id, &dest).await;
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                // Abandoned parts cost money; aborting removes only the unfinished upload.
                let _ = self
                    .0
                    .abort_multipart_upload()
                    .bucket(&spec.dest_bucket)
                    .key(&spec.dest_key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }
}

impl S3Objects {
    async fn copy_parts(
        &self,
        spec: &CopySpec,
        upload_id: &str,
        dest: &str,
    ) -> Result<Option<String>, AwsError> {
        let part = copy_part_size(spec.size, spec.part_size);
        let mut parts = Vec::new();
        let mut start = 0u64;
        let mut number = 1i32;
        while start < spec.size {
            let end = (start + part).min(spec.size) - 1;
            let out = self
                .0
                .upload_part_copy()
                .bucket(&spec.dest_bucket)
                .key(&spec.dest_key)
                .upload_id(upload_id)
                .part_number(number)
                .copy_source(copy_source(&spec.source))
                .copy_source_range(format!("bytes={start}-{end}"))
                .send()
                .await
                .map_err(|e| from_sdk("s3:UploadPartCopy", dest, e))?;
            let r = out.copy_part_result();
            let s = |f: fn(&aws_sdk_s3::types::CopyPartResult) -> Option<&str>| {
                r.and_then(f).map(str::to_string)
            };
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(s(|r| r.e_tag()))
                    .set_checksum_crc32(s(|r| r.checksum_crc32()))
                    .set_checksum_crc32_c(s(|r| r.checksum_crc32_c()))
                    .set_checksum_crc64_nvme(s(|r| r.checksum_crc64_nvme()))
                    .set_checksum_sha1(s(|r| r.checksum_sha1()))
                    .set_checksum_sha256(s(|r| r.checksum_sha256()))
                    .build(),
            );
            start = end + 1;
            number += 1;
        }
        let out = self
            .0
            .complete_multipart_upload()
            .bucket(&spec.dest_bucket)
            .key(&spec.dest_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| from_sdk("s3:CompleteMultipartUpload", dest, e))?;
        Ok(out.version_id().map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_is_escaped() {
        let src = ObjectRef::new("b", "dir/a b+c%/é.txt").version(Some("v+1".into()));
        assert_eq!(
            copy_source(&src),
            "b/dir/a%20b%2Bc%25/%C3%A9.txt?versionId=v%2B1"
        );
        assert_eq!(
            tagging(&[("k 1".into(), "v&=".into()), ("a".into(), "".into())]),
            "k%201=v%26%3D&a="
        );
    }
}
