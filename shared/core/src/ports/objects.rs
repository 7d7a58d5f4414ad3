//! S3 objects, as the functions need them: facts (with checksums), part boundaries, a
//! streamed body, tags, versions, listing, and a server-side copy that keeps what matters.

use std::collections::BTreeMap;
use std::pin::Pin;

/// The macro the port is declared with, for implementations outside this crate (test
/// wrappers around the adapter) that do not depend on it themselves.
pub use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use serde::Serialize;

use crate::checksums::Algorithm;
use crate::error::AwsError;

/// One object (a version of it when `version_id` is set).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
}

impl ObjectRef {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
            version_id: None,
        }
    }

    pub fn version(mut self, v: Option<String>) -> Self {
        self.version_id = v;
        self
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)?;
        if let Some(v) = &self.version_id {
            write!(f, "?versionId={v}")?;
        }
        Ok(())
    }
}

/// Standard HTTP headers of an object that a copy must keep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContentHeaders {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
}

/// Server-side encryption of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Encryption {
    /// `AES256`, `aws:kms`, `aws:kms:dsse` (None: not reported).
    pub algorithm: Option<String>,
    pub kms_key_id: Option<String>,
    /// SSE-C: the body cannot be read without the customer's key, and the ETag is not an MD5.
    pub customer_key: bool,
}

impl Encryption {
    pub fn is_kms(&self) -> bool {
        self.algorithm
            .as_deref()
            .is_some_and(|a| a.starts_with("aws:kms"))
    }
}

/// What HeadObject (checksum mode enabled) says about an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectFacts {
    pub object: Option<ObjectRef>,
    pub size: u64,
    /// Without the quotes.
    pub etag: Option<String>,
    /// User metadata, keys lower-case without `x-amz-meta-`.
    pub metadata: BTreeMap<String, String>,
    /// Additional checksums as S3 returns them (base64, composite ones may end in `-N`).
    pub checksums: BTreeMap<Algorithm, String>,
    /// `FULL_OBJECT` or `COMPOSITE` when S3 says.
    pub checksum_type: Option<String>,
    pub encryption: Encryption,
    pub headers: ContentHeaders,
    pub storage_class: Option<String>,
    /// `x-amz-server-side-encryption-bucket-key-enabled` as S3 reported it.
    pub bucket_key_enabled: Option<bool>,
    pub object_lock: ObjectLock,
}

/// Object Lock settings of one object version (all empty when it has none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectLock {
    /// `GOVERNANCE` or `COMPLIANCE`.
    pub mode: Option<String>,
    /// RFC 3339.
    pub retain_until: Option<String>,
    pub legal_hold: bool,
}

impl ObjectLock {
    pub fn is_empty(&self) -> bool {
        self.mode.is_none() && self.retain_until.is_none() && !self.legal_hold
    }
}

/// One grant of an object's ACL: the grantee as S3's grant headers name it
/// (`id="…"`, `uri="…"`, `emailAddress="…"`) and the permission (`READ`, `FULL_CONTROL`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub grantee: String,
    pub permission: String,
}

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub version_id: String,
    pub is_latest: bool,
    pub size: u64,
    pub etag: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub keys: Vec<String>,
    /// More keys follow the last one.
    pub truncated: bool,
}

/// A server-side copy that keeps the destination's identity (metadata, headers, tags,
/// encryption, storage class).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopySpec {
    pub source: ObjectRef,
    /// Size of the source (decides single or multipart copy).
    pub size: u64,
    pub dest_bucket: String,
    pub dest_key: String,
    pub metadata: BTreeMap<String, String>,
    pub headers: ContentHeaders,
    pub tags: Vec<(String, String)>,
    pub encryption: Encryption,
    pub storage_class: Option<String>,
    /// Ask S3 to store this additional checksum on the copy.
    pub checksum: Option<Algorithm>,
    /// Above this size the copy is multipart (UploadPartCopy). CopyObject's limit is 5 GiB.
    pub multipart_threshold: u64,
    pub part_size: u64,
    /// Parts copied at once by a multipart copy.
    pub part_concurrency: usize,
    /// The source's ETag as verified: sent as `x-amz-copy-source-if-match` on CopyObject and
    /// every UploadPartCopy, so that other bytes than the verified ones are never copied.
    pub source_if_match: Option<String>,
    /// The destination's ETag as examined: sent as `If-Match` on CopyObject and
    /// CompleteMultipartUpload, so that a newer write is never replaced.
    pub dest_if_match: Option<String>,
    /// Keep the S3 Bucket Key setting of the object (SSE-KMS).
    pub bucket_key_enabled: Option<bool>,
    /// The ACL grants to put on the copy (only set on buckets whose ownership allows ACLs).
    pub grants: Option<Vec<Grant>>,
}

/// A streamed object body: chunks as they arrive, never the whole object.
pub type Body = Pin<Box<dyn Stream<Item = Result<Bytes, AwsError>> + Send>>;

#[async_trait]
pub trait Objects: Send + Sync {
    /// The object's facts; `None` when it does not exist.
    async fn head(&self, obj: &ObjectRef) -> Result<Option<ObjectFacts>, AwsError>;
    /// The sizes of the object's `count` parts, in order, as S3 reports them.
    async fn part_sizes(&self, obj: &ObjectRef, count: u32) -> Result<Vec<u64>, AwsError>;
    /// The object's body; with `if_match`, only if its ETag is still that.
    async fn read(&self, obj: &ObjectRef, if_match: Option<&str>) -> Result<Body, AwsError>;
    /// The bucket's tags (empty when it has none).
    async fn bucket_tags(&self, bucket: &str) -> Result<Vec<(String, String)>, AwsError>;
    async fn object_tags(&self, obj: &ObjectRef) -> Result<Vec<(String, String)>, AwsError>;
    /// `Enabled`, `Suspended`, or `None` when versioning was never turned on.
    async fn versioning(&self, bucket: &str) -> Result<Option<String>, AwsError>;
    /// Versions of exactly `key` (no delete markers), newest first, at most `limit`.
    async fn versions(
        &self,
        bucket: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<VersionInfo>, AwsError>;
    /// Keys under `prefix` after `start_after`, in S3's (UTF-8 binary) order.
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: i32,
    ) -> Result<ListPage, AwsError>;
    /// Copies server-side; returns the new version id (when versioned). A condition that no
    /// longer holds fails with the code `PreconditionFailed`.
    async fn copy(&self, spec: &CopySpec) -> Result<Option<String>, AwsError>;
    /// The object's ACL grants; `None` when the bucket's ownership setting disables ACLs
    /// (BucketOwnerEnforced): there is nothing to keep.
    async fn acl(&self, obj: &ObjectRef) -> Result<Option<Vec<Grant>>, AwsError>;
    /// Whether the bucket has Object Lock enabled.
    async fn object_lock_enabled(&self, bucket: &str) -> Result<bool, AwsError>;
    /// Puts a legal hold and a retention (where `lock` has them) on one object version.
    async fn put_object_lock(&self, obj: &ObjectRef, lock: &ObjectLock) -> Result<(), AwsError>;
}

/// The S3 key limit (bytes of UTF-8).
pub const MAX_KEY_BYTES: usize = 1024;

/// CopyObject's own limit for a single request.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// S3's smallest part (but the last).
pub const MIN_PART: u64 = 5 * 1024 * 1024;
pub const MAX_PARTS: u64 = 10_000;

/// Part size for a multipart copy: the configured size, raised so that at most 10,000 parts
/// are needed, and kept within S3's limits.
pub fn copy_part_size(size: u64, wanted: u64) -> u64 {
    let floor = size.div_ceil(MAX_PARTS);
    wanted.max(floor).clamp(MIN_PART, MAX_SINGLE_COPY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_stay_within_limits() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(copy_part_size(10 * MIB, MIB), MIN_PART);
        assert_eq!(copy_part_size(6 << 30, 512 * MIB), 512 * MIB);
        // 5 TiB in 512 MiB parts would need 10,240 parts: raised.
        let big = 5u64 << 40;
        let p = copy_part_size(big, 512 * MIB);
        assert!(big.div_ceil(p) <= MAX_PARTS);
        assert!(copy_part_size(big, u64::MAX) <= MAX_SINGLE_COPY);
    }
}
