//! Object digests, computed in one streaming pass: MD5, SHA-1, SHA-256, CRC32, CRC32C and
//! CRC64NVME, each either over the whole object or *composite* — the digest of the
//! concatenated per-part digests, as S3 computes multipart ETags (`md5-of-part-md5s-N`) and
//! composite additional checksums (`...-N`). Composite digests need the object's real part
//! boundaries; they are an input here, never guessed.
//!
//! Pure and synchronous: a benchmark can feed it chunks of a file, the functions feed it the
//! chunks of an S3 body as they arrive. Memory use is constant whatever the object's size.

use base64::Engine;
use md5::Digest as _;
use serde::Serialize;

/// A digest algorithm S3 or a producer may record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    Md5,
    Sha1,
    Sha256,
    Crc32,
    Crc32c,
    Crc64Nvme,
}

impl Algorithm {
    pub const ALL: [Algorithm; 6] = [
        Self::Md5,
        Self::Sha1,
        Self::Sha256,
        Self::Crc32,
        Self::Crc32c,
        Self::Crc64Nvme,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Crc32 => "crc32",
            Self::Crc32c => "crc32c",
            Self::Crc64Nvme => "crc64nvme",
        }
    }

    /// Accepts the usual spellings: `sha256`, `SHA-256`, `crc64nvme`, `CRC64-NVME`, ...
    pub fn parse(s: &str) -> Option<Self> {
        let norm: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        Self::ALL.into_iter().find(|a| a.as_str() == norm)
    }

    /// Length of the raw digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One running digest.
enum State {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Crc32(crc_fast::Digest),
    Crc64(crc_fast::Digest),
}

impl State {
    fn new(a: Algorithm) -> Self {
        use crc_fast::CrcAlgorithm as C;
        match a {
            Algorithm::Md5 => Self::Md5(md5::Md5::new()),
            Algorithm::Sha1 => Self::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            Algorithm::Crc32 => Self::Crc32(crc_fast::Digest::new(C::Crc32IsoHdlc)),
            Algorithm::Crc32c => Self::Crc32(crc_fast::Digest::new(C::Crc32Iscsi)),
            Algorithm::Crc64Nvme => Self::Crc64(crc_fast::Digest::new(C::Crc64Nvme)),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Crc32(h) | Self::Crc64(h) => h.update(data),
        }
    }

    /// The raw digest; CRCs big-endian, as S3 encodes them.
    fn finish(self) -> Vec<u8> {
        match self {
            Self::Md5(h) => h.finalize().to_vec(),
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Crc32(h) => (h.finalize() as u32).to_be_bytes().to_vec(),
            Self::Crc64(h) => h.finalize().to_be_bytes().to_vec(),
        }
    }
}

/// The digest of `data` in one call.
pub fn digest(a: Algorithm, data: &[u8]) -> Vec<u8> {
    let mut s = State::new(a);
    s.update(data);
    s.finish()
}

/// What to compute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spec {
    pub algorithm: Algorithm,
    /// `Some(sizes)`: composite over parts of these sizes, in order; `None`: whole object.
    pub parts: Option<Vec<u64>>,
}

impl Spec {
    pub fn whole(algorithm: Algorithm) -> Self {
        Self {
            algorithm,
            parts: None,
        }
    }

    pub fn composite(algorithm: Algorithm, parts: Vec<u64>) -> Self {
        Self {
            algorithm,
            parts: Some(parts),
        }
    }
}

struct Composite {
    algorithm: Algorithm,
    sizes: Vec<u64>,
    index: usize,
    left_in_part: u64,
    current: State,
    /// The finished parts' raw digests, concatenated (at most 10,000 × 32 bytes).
    concatenated: Vec<u8>,
    /// More bytes arrived than the parts hold.
    overflow: bool,
}

impl Composite {
    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.left_in_part == 0 {
                let Some(next) = self.sizes.get(self.index + 1).copied() else {
                    self.overflow = true;
                    return;
                };
                let done = std::mem::replace(&mut self.current, State::new(self.algorithm));
                self.concatenated.extend_from_slice(&done.finish());
                self.index += 1;
                self.left_in_part = next;
                continue;
            }
            let n = usize::try_from(self.left_in_part)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let (head, tail) = data.split_at(n);
            self.current.update(head);
            self.left_in_part -= n as u64;
            data = tail;
        }
    }

    fn finish(mut self) -> Option<Vec<u8>> {
        let complete =
            !self.overflow && self.left_in_part == 0 && self.index + 1 == self.sizes.len();
        if !complete {
            return None;
        }
        self.concatenated.extend_from_slice(&self.current.finish());
        Some(digest(self.algorithm, &self.concatenated))
    }
}

enum Running {
    Whole(State),
    Composite(Composite),
}

/// The result for one `Spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Computed {
    pub spec: Spec,
    /// The raw digest; `None` for a composite whose parts do not add up to the bytes read
    /// (the object cannot be the one the expected digest was recorded for).
    pub value: Option<Vec<u8>>,
}

/// Computes several digests over one stream of chunks.
pub struct Hasher {
    specs: Vec<Spec>,
    running: Vec<Running>,
    bytes: u64,
}

impl Hasher {
    pub fn new(specs: &[Spec]) -> Self {
        let running = specs
            .iter()
            .map(|s| match &s.parts {
                None => Running::Whole(State::new(s.algorithm)),
                Some(sizes) => Running::Composite(Composite {
                    algorithm: s.algorithm,
                    sizes: sizes.clone(),
                    index: 0,
                    left_in_part: sizes.first().copied().unwrap_or(0),
                    current: State::new(s.algorithm),
                    concatenated: Vec::with_capacity(sizes.len() * s.algorithm.digest_len()),
                    // No parts at all: nothing can match.
                    overflow: sizes.is_empty(),
                }),
            })
            .collect();
        Self {
            specs: specs.to_vec(),
            running,
            bytes: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        for r in &mut self.running {
            match r {
                Running::Whole(s) => s.update(data),
                Running::Composite(c) => c.update(data),
            }
        }
    }

    /// Bytes seen so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn finish(self) -> Vec<Computed> {
        self.specs
            .into_iter()
            .zip(self.running)
            .map(|(spec, r)| Computed {
                spec,
                value: match r {
                    Running::Whole(s) => Some(s.finish()),
                    Running::Composite(c) => c.finish(),
                },
            })
            .collect()
    }
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

pub fn to_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Standard or URL-safe base64, padded or not.
pub fn from_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

/// Reads a recorded digest of `a`, written as hex or base64 (whichever has the right length).
pub fn decode_digest(a: Algorithm, s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let want = a.digest_len();
    if s.len() == want * 2 {
        if let Some(b) = from_hex(s) {
            return Some(b);
        }
    }
    from_base64(s).filter(|b| b.len() == want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        let cases = [
            (Algorithm::Md5, "5d41402abc4b2a76b9719d911017c592"),
            (Algorithm::Sha1, "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
            (
                Algorithm::Sha256,
                "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            ),
            (Algorithm::Crc32, "3610a686"),
            (Algorithm::Crc32c, "9a71bb4c"),
        ];
        for (a, want) in cases {
            assert_eq!(to_hex(&digest(a, b"hello")), want, "{a}");
        }
        // CRC64/NVME check value of "123456789".
        assert_eq!(
            to_hex(&digest(Algorithm::Crc64Nvme, b"123456789")),
            "ae8b14860a799888"
        );
    }

    #[test]
    fn composite_is_digest_of_part_digests() {
        let p1 = vec![b'a'; 5 * 1024 * 1024];
        let p2 = vec![b'b'; 1000];
        let mut h = Hasher::new(&[
            Spec::composite(Algorithm::Sha256, vec![p1.len() as u64, 1000]),
            Spec::composite(Algorithm::Md5, vec![p1.len() as u64, 1000]),
            Spec::composite(Algorithm::Crc32, vec![p1.len() as u64, 1000]),
            Spec::whole(Algorithm::Crc32),
        ]);
        // Chunks that straddle the part boundary.
        let all: Vec<u8> = p1.iter().chain(p2.iter()).copied().collect();
        for c in all.chunks(7777) {
            h.update(c);
        }
        let out = h.finish();
        let v = |i: usize| out[i].value.clone().unwrap();
        // Values as S3 (and an independent implementation) compute them.
        assert_eq!(
            to_base64(&v(0)),
            "gzKREhG1RwKmrTCIEhem1Qh4SLYssbnaSjmwJsKJ6aA="
        );
        assert_eq!(to_hex(&v(1)), "8c6f96fe400c627d9394af6161f5921d");
        assert_eq!(to_base64(&v(2)), "MQVsmQ==");
        assert_eq!(to_base64(&v(3)), "rRO7Ng==");
    }

    #[test]
    fn composite_with_wrong_layout_has_no_value() {
        for (sizes, data_len) in [
            (vec![4u64, 4], 9usize),
            (vec![4, 4], 7),
            (vec![], 3),
            (vec![], 0),
        ] {
            let mut h = Hasher::new(&[Spec::composite(Algorithm::Md5, sizes.clone())]);
            h.update(&vec![1u8; data_len]);
            assert_eq!(h.finish()[0].value, None, "{sizes:?} {data_len}");
        }
    }

    #[test]
    fn decoding_recorded_digests() {
        let md5 = digest(Algorithm::Md5, b"hello");
        assert_eq!(
            decode_digest(Algorithm::Md5, "5d41402abc4b2a76b9719d911017c592"),
            Some(md5.clone())
        );
        assert_eq!(
            decode_digest(Algorithm::Md5, "XUFAKrxLKna5cZ2REBfFkg=="),
            Some(md5.clone())
        );
        assert_eq!(
            decode_digest(Algorithm::Md5, "XUFAKrxLKna5cZ2REBfFkg"),
            Some(md5)
        );
        assert_eq!(
            decode_digest(Algorithm::Crc32c, "9a71bb4c"),
            Some(vec![0x9a, 0x71, 0xbb, 0x4c])
        );
        assert_eq!(
            decode_digest(Algorithm::Crc32c, "mnG7TA=="),
            Some(vec![0x9a, 0x71, 0xbb, 0x4c])
        );
        assert_eq!(decode_digest(Algorithm::Sha256, "5d41402a"), None);
        assert_eq!(decode_digest(Algorithm::Md5, "not a digest"), None);
        assert_eq!(Algorithm::parse("SHA-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::parse("crc64-nvme"), Some(Algorithm::Crc64Nvme));
        assert_eq!(Algorithm::parse("whirlpool"), None);
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_result(data in proptest::collection::vec(any::<u8>(), 0..4000),
                                             chunk in 1usize..600, split in 1u64..2000) {
            let len = data.len() as u64;
            let parts = if len > split { vec![split, len - split] } else { vec![len] };
            let specs = [Spec::whole(Algorithm::Sha256), Spec::composite(Algorithm::Crc32c, parts.clone())];
            let mut one = Hasher::new(&specs);
            one.update(&data);
            let mut many = Hasher::new(&specs);
            for c in data.chunks(chunk) { many.update(c); }
            let (a, b) = (one.finish(), many.finish());
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a[0].value.clone().unwrap(), digest(Algorithm::Sha256, &data));
            let mut concat = Vec::new();
            let mut at = 0usize;
            for p in &parts { concat.extend(digest(Algorithm::Crc32c, &data[at..at + *p as usize])); at += *p as usize; }
            prop_assert_eq!(a[1].value.clone().unwrap(), digest(Algorithm::Crc32c, &concat));
        }
    }
}
