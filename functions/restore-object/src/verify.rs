//! Reading an object end to end through the hashers its expected digest needs: used on the
//! object itself, on every candidate good copy, and on the result of a restore.

use futures::StreamExt;

use selfheal_core::checksums::Hasher;
use selfheal_core::ports::objects::{ObjectRef, Objects};
use selfheal_core::AwsError;

use crate::decide::Verified;
use crate::expect::{self, Expected};

/// Streams the object through the hashers of `expected`, in one pass, in bounded memory.
/// With a `witness` (S3's own checksum or MD5 ETag, next to a producer's metadata digest),
/// its hashers run in the same pass: whether it agrees tells new content with a stale
/// recorded digest from corruption.
/// `if_match` pins the read to the ETag that was examined: a replaced object fails the read
/// (`PreconditionFailed`) rather than being judged on bytes that were never examined.
pub async fn verify(
    objects: &dyn Objects,
    obj: &ObjectRef,
    if_match: Option<&str>,
    expected: &Expected,
    witness: Option<&Expected>,
) -> Result<Verified, AwsError> {
    let mut body = objects.read(obj, if_match).await?;
    let mut specs = expected.specs.clone();
    specs.extend(witness.iter().flat_map(|w| w.specs.iter().cloned()));
    let mut h = Hasher::new(&specs);
    while let Some(chunk) = body.next().await {
        h.update(&chunk?);
    }
    let bytes = h.bytes();
    let mut all = h.finish();
    let of_witness = all.split_off(expected.specs.len());
    let (matched, computed) = expect::matches(expected, &all);
    let agrees_with = witness
        .filter(|w| expect::matches(w, &of_witness).0)
        .map(|w| w.label.clone());
    Ok(Verified {
        matched,
        computed,
        bytes,
        agrees_with,
    })
}
