//! Finding a good copy of a corrupted object, read-only: the replica first, then (only when
//! the operator allowed a rollback) earlier versions, each verified against the same
//! expected digest. Every source tried is noted for the audit record.

use serde_json::{json, Value};

use selfheal_core::ports::objects::{ObjectRef, Objects, VersionInfo};
use selfheal_core::AwsError;

use crate::decide::{CopyKind, GoodCopy};
use crate::expect::Expected;
use crate::settings::Settings;
use crate::verify::verify;

/// What a search found, what it tried, and a retryable error met on the way (if nothing was
/// found, a retry may find the copy the error hid).
#[derive(Debug, Default)]
pub struct Search {
    pub good: Option<GoodCopy>,
    pub tried: Vec<Value>,
    pub transient: Option<AwsError>,
}

impl Search {
    fn note(&mut self, source: impl std::fmt::Display, result: impl Into<String>) {
        self.tried
            .push(json!({"source": source.to_string(), "result": result.into()}));
    }

    fn error(&mut self, source: impl std::fmt::Display, e: AwsError) {
        self.note(source, e.to_string());
        if e.retryable {
            self.transient = Some(e);
        }
    }

    /// Verifies one candidate; true when it is the good copy (the search stops there).
    async fn try_copy(
        &mut self,
        objects: &dyn Objects,
        kind: CopyKind,
        (object, size, etag): (ObjectRef, u64, Option<&str>),
        expected: &Expected,
    ) -> bool {
        let mismatch = match kind {
            CopyKind::Replica => "corrupt too",
            CopyKind::Version => "does not match",
        };
        match verify(objects, &object, etag, expected, None).await {
            Ok(v) if v.matched => {
                self.note(&object, "verified good");
                self.good = Some(GoodCopy {
                    kind,
                    object,
                    size,
                    etag: etag.map(str::to_string),
                });
                self.transient = None;
                true
            }
            Ok(v) => {
                self.note(&object, format!("{mismatch} (computed {})", v.computed));
                false
            }
            Err(e) => {
                self.error(&object, e);
                false
            }
        }
    }
}

/// A copy whose size differs from the expected size cannot match: not worth reading.
fn size_differs(expected: &Expected, size: u64) -> bool {
    expected.size.is_some_and(|s| s != size)
}

/// The earlier versions worth trying, newest first: not the latest, not the one examined.
pub fn earlier_versions(
    versions: Vec<VersionInfo>,
    current: Option<&String>,
    limit: usize,
) -> Vec<VersionInfo> {
    versions
        .into_iter()
        .filter(|v| !v.is_latest && Some(&v.version_id) != current)
        .take(limit)
        .collect()
}

/// Looks for a copy whose bytes match `expected`: the replica first, then earlier versions.
pub async fn find_good_copy(
    objects: &dyn Objects,
    settings: &Settings,
    current: &ObjectRef,
    expected: &Expected,
) -> Search {
    let mut search = Search::default();
    if try_replica(objects, settings, current, expected, &mut search).await {
        return search;
    }
    try_versions(objects, settings, current, expected, &mut search).await;
    search
}

async fn try_replica(
    objects: &dyn Objects,
    settings: &Settings,
    current: &ObjectRef,
    expected: &Expected,
    search: &mut Search,
) -> bool {
    let Some((rb, rk)) = settings.replica_of(&current.bucket, &current.key) else {
        search.note("replica", "none configured for this bucket");
        return false;
    };
    let replica = ObjectRef::new(rb, rk);
    match objects.head(&replica).await {
        Ok(None) => search.note(&replica, "missing"),
        Ok(Some(f)) if size_differs(expected, f.size) => {
            search.note(&replica, format!("size {} differs", f.size))
        }
        Ok(Some(f)) => {
            // Pinned to the version and ETag just seen, so what is verified is what is copied.
            let pinned = f.object.clone().unwrap_or(replica);
            let candidate = (pinned, f.size, f.etag.as_deref());
            return search
                .try_copy(objects, CopyKind::Replica, candidate, expected)
                .await;
        }
        Err(e) => search.error(&replica, e),
    }
    false
}

async fn try_versions(
    objects: &dyn Objects,
    settings: &Settings,
    current: &ObjectRef,
    expected: &Expected,
    search: &mut Search,
) {
    if !settings.allow_rollback {
        // An earlier version is older content, not a copy of this one: putting it back is a
        // rollback, which an operator must have allowed.
        return search.note(
            "versions",
            "not searched: a rollback to an earlier version needs SELFHEAL_RESTORE_ALLOW_ROLLBACK=true",
        );
    }
    match objects.versioning(&current.bucket).await {
        Ok(None) => return search.note("versions", "versioning is off"),
        Ok(Some(_)) => {}
        Err(e) => return search.error("versions", e),
    }
    let limit = settings.max_versions;
    // One more than the limit: the latest version is among them and is not a candidate.
    let versions = match objects
        .versions(&current.bucket, &current.key, limit.saturating_add(1))
        .await
    {
        Ok(v) => v,
        Err(e) => return search.error("versions", e),
    };
    for v in earlier_versions(versions, current.version_id.as_ref(), limit) {
        let obj = current.clone().version(Some(v.version_id.clone()));
        if size_differs(expected, v.size) {
            search.note(&obj, format!("size {} differs", v.size));
            continue;
        }
        if search
            .try_copy(
                objects,
                CopyKind::Version,
                (obj, v.size, v.etag.as_deref()),
                expected,
            )
            .await
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, is_latest: bool) -> VersionInfo {
        VersionInfo {
            version_id: id.into(),
            is_latest,
            size: 1,
            etag: None,
        }
    }

    #[test]
    fn earlier_versions_skip_the_latest_and_the_examined_one() {
        let all = || {
            vec![
                v("v3", true),
                v("v2", false),
                v("v1", false),
                v("v0", false),
            ]
        };
        let ids = |vs: Vec<VersionInfo>| vs.into_iter().map(|v| v.version_id).collect::<Vec<_>>();
        assert_eq!(ids(earlier_versions(all(), None, 10)), ["v2", "v1", "v0"]);
        assert_eq!(
            ids(earlier_versions(all(), Some(&"v2".to_string()), 10)),
            ["v1", "v0"]
        );
        assert_eq!(ids(earlier_versions(all(), None, 1)), ["v2"]);
        assert!(earlier_versions(all(), None, 0).is_empty());
    }
}
