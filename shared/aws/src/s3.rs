//! S3 behind the [`Objects`] port: facts with checksums, part boundaries, streamed bodies,
//! tags, versions, listing, and a server-side copy that keeps what matters.
//!
//! Every call goes to a client in the bucket's own region (found once per bucket with
//! HeadBucket's `x-amz-bucket-region`): the SDK does not follow S3's region redirects, so a
//! replica in another region would otherwise be unreadable.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, MetadataDirective,
    ObjectAttributes, ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockRetention,
    ObjectLockRetentionMode, ObjectOwnership, ServerSideEncryption, StorageClass, TaggingDirective,
    Type,
};
use aws_sdk_s3::Client;
use futures::{StreamExt, TryStreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use selfheal_core::checksums::Algorithm;
use selfheal_core::ports::objects::{
    copy_part_size, Body, ContentHeaders, CopySpec, Encryption, Grant, ListPage, ObjectFacts,
    ObjectLock, ObjectRef, Objects, VersionInfo, MAX_SINGLE_COPY,
};
use selfheal_core::AwsError;

use crate::error::from_sdk;

pub struct S3Objects {
    sdk: SdkConfig,
    /// The client in the function's own region.
    home: Client,
    /// Clients by region, built on first use.
    clients: Mutex<HashMap<String, Client>>,
    /// Each bucket's region, found once.
    regions: Mutex<HashMap<String, String>>,
}

impl S3Objects {
    /// The adapter over [`crate::config::s3_client`], with a client per bucket region.
    pub fn from_conf(sdk: &SdkConfig) -> Self {
        Self {
            sdk: sdk.clone(),
            home: crate::config::s3_client(sdk),
            clients: Mutex::new(HashMap::new()),
            regions: Mutex::new(HashMap::new()),
        }
    }

    /// The region `bucket` lives in, as S3 says (cached). HeadBucket answers with
    /// `x-amz-bucket-region` even when it refuses (301 from the wrong region, 403).
    async fn region_of(&self, bucket: &str) -> Option<String> {
        if let Some(r) = self
            .regions
            .lock()
            .ok()
            .and_then(|m| m.get(bucket).cloned())
        {
            return Some(r);
        }
        let found = match self.home.head_bucket().bucket(bucket).send().await {
            Ok(out) => out.bucket_region().map(str::to_string),
            Err(e) => e
                .raw_response()
                .and_then(|r| r.headers().get("x-amz-bucket-region"))
                .map(str::to_string),
        };
        let region = found.filter(|r| !r.is_empty())?;
        if let Ok(mut m) = self.regions.lock() {
            m.insert(bucket.to_string(), region.clone());
        }
        Some(region)
    }

    /// The client for `bucket`'s region; the home client when the region cannot be told (the
    /// call then fails or succeeds as it would have without this lookup).
    async fn client(&self, bucket: &str) -> Client {
        let Some(region) = self.region_of(bucket).await else {
            return self.home.clone();
        };
        if self.sdk.region().is_some_and(|r| r.as_ref() == region) {
            return self.home.clone();
        }
        let Ok(mut m) = self.clients.lock() else {
            return self.home.clone();
        };
        m.entry(region.clone())
            .or_insert_with(|| crate::config::s3_client_in(&self.sdk, Some(region)))
            .clone()
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
        let client = self.client(&obj.bucket).await;
        let out = match client
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
            bucket_key_enabled: out.bucket_key_enabled(),
            object_lock: ObjectLock {
                mode: out.object_lock_mode().map(|m| m.as_str().to_string()),
                retain_until: out
                    .object_lock_retain_until_date()
                    .and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
                legal_hold: out.object_lock_legal_hold_status()
                    == Some(&ObjectLockLegalHoldStatus::On),
            },
        }))
    }

    async fn part_sizes(&self, obj: &ObjectRef, count: u32) -> Result<Vec<u64>, AwsError> {
        let client = self.client(&obj.bucket).await;
        // GetObjectAttributes lists parts 1,000 at a time; it only knows them for objects
        // uploaded with an additional checksum, so HeadObject with PartNumber is the fallback.
        let mut sizes = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = client
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
            let out = client
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
        let client = self.client(&obj.bucket).await;
        let out = client
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
        let client = self.client(bucket).await;
        match client.get_bucket_tagging().bucket(bucket).send().await {
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
        let client = self.client(&obj.bucket).await;
        let out = client
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
        let client = self.client(bucket).await;
        let out = client
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
        let client = self.client(bucket).await;
        let mut found = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let out = client
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
        let client = self.client(bucket).await;
        let out = client
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
        // CopyObject and UploadPartCopy are sent to the destination's region; S3 reads the
        // source across regions itself.
        let client = self.client(&spec.dest_bucket).await;
        let dest = format!("s3://{}/{}", spec.dest_bucket, spec.dest_key);
        let metadata: HashMap<String, String> = spec
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
        let grants = GrantHeaders::from(spec.grants.as_deref());
        let threshold = spec.multipart_threshold.min(MAX_SINGLE_COPY);
        if spec.size <= threshold {
            let out = client
                .copy_object()
                .copy_source(copy_source(&spec.source))
                .set_copy_source_if_match(spec.source_if_match.as_deref().map(quote))
                .set_if_match(spec.dest_if_match.as_deref().map(quote))
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
                .set_bucket_key_enabled(spec.bucket_key_enabled)
                .set_storage_class(storage)
                .set_checksum_algorithm(checksum)
                .set_grant_full_control(grants.full_control)
                .set_grant_read(grants.read)
                .set_grant_read_acp(grants.read_acp)
                .set_grant_write_acp(grants.write_acp)
                .customize()
                .config_override(crate::config::copy_timeouts())
                .send()
                .await
                .map_err(|e| from_sdk("s3:CopyObject", &dest, e))?;
            return Ok(out.version_id().map(str::to_string));
        }
        let created = client
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
            .set_bucket_key_enabled(spec.bucket_key_enabled)
            .set_storage_class(storage)
            .set_checksum_algorithm(checksum.clone())
            .set_grant_full_control(grants.full_control)
            .set_grant_read(grants.read)
            .set_grant_read_acp(grants.read_acp)
            .set_grant_write_acp(grants.write_acp)
            .send()
            .await
            .map_err(|e| from_sdk("s3:CreateMultipartUpload", &dest, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = copy_parts(&client, spec, &upload_id, &dest).await;
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                // Abandoned parts cost money; aborting removes only the unfinished upload. An
                // invocation killed before this line leaves them to the bucket's
                // AbortIncompleteMultipartUpload lifecycle rule (README).
                let _ = client
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

    async fn acl(&self, obj: &ObjectRef) -> Result<Option<Vec<Grant>>, AwsError> {
        let client = self.client(&obj.bucket).await;
        match client
            .get_bucket_ownership_controls()
            .bucket(&obj.bucket)
            .send()
            .await
        {
            Ok(out) => {
                let enforced = out.ownership_controls().is_some_and(|c| {
                    c.rules()
                        .iter()
                        .any(|r| r.object_ownership() == &ObjectOwnership::BucketOwnerEnforced)
                });
                if enforced {
                    return Ok(None);
                }
            }
            Err(e) => {
                let err = from_sdk("s3:GetBucketOwnershipControls", &obj.bucket, e);
                // No ownership controls: a bucket from before them, ACLs in force.
                if !err.is_code("OwnershipControlsNotFoundError") {
                    return Err(err);
                }
            }
        }
        let out = client
            .get_object_acl()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .set_version_id(obj.version_id.clone())
            .send()
            .await
            .map_err(|e| from_sdk("s3:GetObjectAcl", obj.to_string(), e))?;
        let grants = out
            .grants()
            .iter()
            .filter_map(|g| {
                let grantee = g.grantee()?;
                let who = match grantee.r#type() {
                    Type::CanonicalUser => format!("id=\"{}\"", grantee.id()?),
                    Type::Group => format!("uri=\"{}\"", grantee.uri()?),
                    Type::AmazonCustomerByEmail => {
                        format!("emailAddress=\"{}\"", grantee.email_address()?)
                    }
                    _ => return None,
                };
                Some(Grant {
                    grantee: who,
                    permission: g.permission()?.as_str().to_string(),
                })
            })
            .collect();
        Ok(Some(grants))
    }

    async fn put_object_lock(&self, obj: &ObjectRef, lock: &ObjectLock) -> Result<(), AwsError> {
        // Separate requests after the copy, not headers on it: S3 wants an integrity check
        // (Content-MD5 or a checksum) on a write that carries Object Lock settings, which the
        // SDK computes for these two operations and a bodiless CopyObject cannot carry.
        let client = self.client(&obj.bucket).await;
        if lock.legal_hold {
            client
                .put_object_legal_hold()
                .bucket(&obj.bucket)
                .key(&obj.key)
                .set_version_id(obj.version_id.clone())
                .legal_hold(
                    ObjectLockLegalHold::builder()
                        .status(ObjectLockLegalHoldStatus::On)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| from_sdk("s3:PutObjectLegalHold", obj.to_string(), e))?;
        }
        if let (Some(mode), Some(until)) = (&lock.mode, &lock.retain_until) {
            let until = aws_smithy_types::DateTime::from_str(
                until,
                aws_smithy_types::date_time::Format::DateTime,
            )
            .map_err(|e| {
                AwsError::new(
                    "s3:PutObjectRetention",
                    obj.to_string(),
                    format!("retain-until date {until:?}: {e}"),
                )
            })?;
            client
                .put_object_retention()
                .bucket(&obj.bucket)
                .key(&obj.key)
                .set_version_id(obj.version_id.clone())
                .retention(
                    ObjectLockRetention::builder()
                        .mode(ObjectLockRetentionMode::from(mode.as_str()))
                        .retain_until_date(until)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| from_sdk("s3:PutObjectRetention", obj.to_string(), e))?;
        }
        Ok(())
    }

    async fn object_lock_enabled(&self, bucket: &str) -> Result<bool, AwsError> {
        let client = self.client(bucket).await;
        match client
            .get_object_lock_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                .is_some_and(|e| e.as_str() == "Enabled")),
            Err(e) => {
                let err = from_sdk("s3:GetObjectLockConfiguration", bucket, e);
                if err.is_code("ObjectLockConfigurationNotFoundError") {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }
}

fn quote(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// An ACL as CopyObject's grant headers: grantees per permission, comma-separated.
#[derive(Default)]
struct GrantHeaders {
    full_control: Option<String>,
    read: Option<String>,
    read_acp: Option<String>,
    write_acp: Option<String>,
}

impl From<Option<&[Grant]>> for GrantHeaders {
    fn from(grants: Option<&[Grant]>) -> Self {
        let mut h = Self::default();
        for g in grants.unwrap_or_default() {
            let slot = match g.permission.as_str() {
                "FULL_CONTROL" => &mut h.full_control,
                "READ" => &mut h.read,
                "READ_ACP" => &mut h.read_acp,
                "WRITE_ACP" => &mut h.write_acp,
                // WRITE has no meaning on an object.
                _ => continue,
            };
            match slot {
                Some(s) => {
                    s.push_str(", ");
                    s.push_str(&g.grantee);
                }
                None => *slot = Some(g.grantee.clone()),
            }
        }
        h
    }
}

/// The byte ranges of a multipart copy: (part number, first byte, last byte).
fn part_ranges(size: u64, part: u64) -> Vec<(i32, u64, u64)> {
    let mut ranges = Vec::new();
    let mut start = 0u64;
    let mut number = 1i32;
    while start < size {
        let end = (start + part).min(size) - 1;
        ranges.push((number, start, end));
        start = end + 1;
        number += 1;
    }
    ranges
}

/// Runs `work` over every part, at most `concurrency` at a time; the results come back in the
/// parts' order. The first error ends it (the caller aborts the upload).
async fn in_parallel<T, F, Fut>(
    ranges: Vec<(i32, u64, u64)>,
    concurrency: usize,
    work: F,
) -> Result<Vec<T>, AwsError>
where
    F: Fn((i32, u64, u64)) -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    let mut done: Vec<(i32, T)> = futures::stream::iter(ranges)
        .map(|r| {
            let fut = work(r);
            async move { fut.await.map(|t| (r.0, t)) }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    done.sort_by_key(|(n, _)| *n);
    Ok(done.into_iter().map(|(_, t)| t).collect())
}

/// Copies the parts, `part_concurrency` at a time, each only from the verified source, and
/// completes the upload only over the object examined.
async fn copy_parts(
    client: &Client,
    spec: &CopySpec,
    upload_id: &str,
    dest: &str,
) -> Result<Option<String>, AwsError> {
    let part = copy_part_size(spec.size, spec.part_size);
    let source = copy_source(&spec.source);
    let ranges = part_ranges(spec.size, part);
    let parts: Vec<CompletedPart> =
        in_parallel(ranges, spec.part_concurrency, |(number, start, end)| {
            let req = client
                .upload_part_copy()
                .bucket(&spec.dest_bucket)
                .key(&spec.dest_key)
                .upload_id(upload_id)
                .part_number(number)
                .copy_source(&source)
                .set_copy_source_if_match(spec.source_if_match.as_deref().map(quote))
                .copy_source_range(format!("bytes={start}-{end}"))
                .customize()
                .config_override(crate::config::copy_timeouts());
            async move {
                let out = req
                    .send()
                    .await
                    .map_err(|e| from_sdk("s3:UploadPartCopy", dest, e))?;
                let r = out.copy_part_result();
                let s = |f: fn(&aws_sdk_s3::types::CopyPartResult) -> Option<&str>| {
                    r.and_then(f).map(str::to_string)
                };
                Ok::<_, AwsError>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(s(|r| r.e_tag()))
                        .set_checksum_crc32(s(|r| r.checksum_crc32()))
                        .set_checksum_crc32_c(s(|r| r.checksum_crc32_c()))
                        .set_checksum_crc64_nvme(s(|r| r.checksum_crc64_nvme()))
                        .set_checksum_sha1(s(|r| r.checksum_sha1()))
                        .set_checksum_sha256(s(|r| r.checksum_sha256()))
                        .build(),
                )
            }
        })
        .await?;
    let out = client
        .complete_multipart_upload()
        .bucket(&spec.dest_bucket)
        .key(&spec.dest_key)
        .upload_id(upload_id)
        .set_if_match(spec.dest_if_match.as_deref().map(quote))
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .customize()
        .config_override(crate::config::copy_timeouts())
        .send()
        .await
        .map_err(|e| from_sdk("s3:CompleteMultipartUpload", dest, e))?;
    Ok(out.version_id().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_ranges_cover_the_object_once() {
        assert_eq!(part_ranges(10, 4), vec![(1, 0, 3), (2, 4, 7), (3, 8, 9)]);
        assert_eq!(part_ranges(8, 4), vec![(1, 0, 3), (2, 4, 7)]);
        assert!(part_ranges(0, 4).is_empty());
    }

    #[tokio::test]
    async fn parts_are_copied_in_parallel_within_the_bound_and_come_back_in_order() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let out = in_parallel(part_ranges(100, 10), 3, |(n, start, _)| {
            let (now, most) = (&now, &most);
            async move {
                let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(in_flight, Ordering::SeqCst);
                // Later parts finish first.
                tokio::time::sleep(std::time::Duration::from_millis(20 - n as u64)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, AwsError>((n, start))
            }
        })
        .await
        .unwrap();
        assert_eq!(
            most.load(Ordering::SeqCst),
            3,
            "three parts in flight at once"
        );
        let numbers: Vec<i32> = out.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, (1..=10).collect::<Vec<_>>());
        let failed = in_parallel(part_ranges(100, 10), 3, |(n, _, _)| async move {
            if n == 4 {
                Err(AwsError::new("s3:UploadPartCopy", "d", "refused"))
            } else {
                Ok(n)
            }
        })
        .await;
        assert!(failed.is_err(), "one failed part fails the copy");
    }

    #[test]
    fn grants_become_grant_headers() {
        let g = |who: &str, p: &str| Grant {
            grantee: who.into(),
            permission: p.into(),
        };
        let h = GrantHeaders::from(Some(
            &[
                g("id=\"o\"", "FULL_CONTROL"),
                g(
                    "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"",
                    "READ",
                ),
                g("id=\"x\"", "READ"),
                g("id=\"y\"", "WRITE"),
            ][..],
        ));
        assert_eq!(h.full_control.as_deref(), Some("id=\"o\""));
        assert_eq!(
            h.read.as_deref(),
            Some("uri=\"http://acs.amazonaws.com/groups/global/AllUsers\", id=\"x\"")
        );
        assert!(h.read_acp.is_none() && h.write_acp.is_none());
    }

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
