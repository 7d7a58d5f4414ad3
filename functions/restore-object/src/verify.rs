//! Reading an object end to end through the hashers its expected digest needs: used on the
//! object itself, on every candidate good copy, and on the result of a restore.

use futures::StreamExt;

use selfheal_core::checksums::Hasher;
use selfheal_core::ports::objects::{ObjectRef, Objects};
use selfheal_core::AwsError;

use crate::decide::Verified;
use crate::expect::{self, Expected};

/// Streams the object through the hashers of `expected`, in one pass, in bounded memory.
/// `if_match` pins the read to the ETag that was examined: a replaced object fails the read
/// (`PreconditionFailed`) rather than being judged on bytes that were never examined.
pub async fn verify(
    objects: &dyn Objects,
    obj: &ObjectRef,
    if_match: Option<&str>,
    expected: &Expected,
) -> Result<Verified, AwsError> {
    let mut body = objects.read(obj, if_match).await?;
    let mut h = Hasher::new(&expected.specs);
    while let Some(chunk) = body.next().await {
        h.update(&chunk?);
    }
    let bytes = h.bytes();
    let (matched, computed) = expect::matches(expected, &h.finish());
    Ok(Verified {
        matched,
        computed,
        bytes,
    })
}
