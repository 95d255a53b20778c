//! The payload chunks' AEAD: ring, or OpenSSL's ChaCha20-Poly1305 on CPUs with AVX-512.
//!
//! ring's ChaCha20-Poly1305 is the stitched AVX2 code of BoringSSL; on a CPU with
//! AVX-512 the system's OpenSSL (libcrypto 3) runs ChaCha20 and Poly1305 on 512-bit
//! registers and seals a 64 KiB chunk in about 0.72x the time (measured on the 2-core
//! AMD EPYC machine: 0.287 s against 0.395 s per GiB on one core). That is the margin
//! between keyward's two cores and the age CLI's one. So ChaCha20-Poly1305 chunks go to
//! OpenSSL where the CPU has AVX-512 (F and VL), and to ring everywhere else;
//! AES-256-GCM always goes to ring, whose VAES code is twice OpenSSL 3.0's here. Both
//! produce the same bytes (RFC 8439); a test checks it chunk by chunk, and the C2SP
//! vectors and the age CLI interop tests run through whichever the machine picks.
//! See ADR 0013.

use openssl::cipher::Cipher as SslCipher;
use openssl::cipher_ctx::CipherCtx;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::stream::{Cipher, TAG};

/// Which implementation seals and opens the chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Ring,
    OpenSsl,
}

impl Backend {
    /// The faster of the two for `cipher` on this CPU.
    pub fn for_cpu(cipher: Cipher) -> Backend {
        match cipher {
            Cipher::ChaCha20Poly1305 if avx512() => Backend::OpenSsl,
            _ => Backend::Ring,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512() -> bool {
    false
}

/// A payload key, ready to seal or open chunks on any thread.
pub struct PayloadKey {
    inner: Inner,
}

// One key per backup, made once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Ring(LessSafeKey),
    /// OpenSSL keeps its key schedule in a per-thread context, made per batch.
    OpenSsl(Zeroizing<[u8; 32]>),
}

impl PayloadKey {
    pub fn new(cipher: Cipher, key: &[u8; 32]) -> PayloadKey {
        PayloadKey::with(cipher, key, Backend::for_cpu(cipher))
    }

    /// `backend` is taken for ChaCha20-Poly1305 only; AES-256-GCM is always ring's.
    pub fn with(cipher: Cipher, key: &[u8; 32], backend: Backend) -> PayloadKey {
        let inner = match (cipher, backend) {
            (Cipher::ChaCha20Poly1305, Backend::OpenSsl) => Inner::OpenSsl(Zeroizing::new(*key)),
            (Cipher::ChaCha20Poly1305, Backend::Ring) => {
                Inner::Ring(ring_key(&aead::CHACHA20_POLY1305, key))
            }
            (Cipher::Aes256Gcm, _) => Inner::Ring(ring_key(&aead::AES_256_GCM, key)),
        };
        PayloadKey { inner }
    }

    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Ring(_) => Backend::Ring,
            Inner::OpenSsl(_) => Backend::OpenSsl,
        }
    }

    /// The state one thread uses for a run of chunks (a batch).
    pub fn chunks(&self) -> Chunks<'_> {
        Chunks { key: self, seal: None, open: None }
    }
}

fn ring_key(alg: &'static aead::Algorithm, key: &[u8; 32]) -> LessSafeKey {
    // Both algorithms take 32-byte keys, so construction cannot fail.
    LessSafeKey::new(
        UnboundKey::new(alg, key)
            .unwrap_or_else(|_| unreachable!("32-byte key for a 256-bit AEAD")),
    )
}

/// Seals and opens chunks with one key on one thread. OpenSSL's contexts are made on
/// first use and freed (and cleansed) on drop.
pub struct Chunks<'a> {
    key: &'a PayloadKey,
    seal: Option<CipherCtx>,
    open: Option<CipherCtx>,
}

/// The cipher refused: an OpenSSL error, or a chunk that does not authenticate.
#[derive(Debug)]
pub struct Refused;

impl Chunks<'_> {
    /// Encrypts `plain` in place and returns its tag.
    pub fn seal(&mut self, nonce: [u8; 12], plain: &mut [u8]) -> Result<[u8; TAG], Refused> {
        match &self.key.inner {
            Inner::Ring(k) => {
                let tag = k
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::empty(),
                        plain,
                    )
                    .map_err(|_| Refused)?;
                let mut out = [0u8; TAG];
                out.copy_from_slice(tag.as_ref());
                Ok(out)
            }
            Inner::OpenSsl(key) => {
                let ctx = context(&mut self.seal, key, true)?;
                ctx.encrypt_init(None, None, Some(&nonce)).map_err(|_| Refused)?;
                update_in_place(ctx, plain)?;
                ctx.cipher_final(&mut []).map_err(|_| Refused)?;
                let mut tag = [0u8; TAG];
                ctx.tag(&mut tag).map_err(|_| Refused)?;
                Ok(tag)
            }
        }
    }

    /// Decrypts `chunk` (ciphertext, then its tag) in place and returns the plaintext
    /// length. A chunk that does not authenticate is zeroed here, whichever
    /// implementation refused it, so no unauthenticated byte stays in the buffer.
    pub fn open(&mut self, nonce: [u8; 12], chunk: &mut [u8]) -> Result<usize, Refused> {
        let opened = self.try_open(nonce, chunk);
        if opened.is_err() {
            chunk.fill(0);
        }
        opened
    }

    fn try_open(&mut self, nonce: [u8; 12], chunk: &mut [u8]) -> Result<usize, Refused> {
        let n = chunk.len().checked_sub(TAG).ok_or(Refused)?;
        match &self.key.inner {
            Inner::Ring(k) => k
                .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), chunk)
                .map(|p| p.len())
                .map_err(|_| Refused),
            Inner::OpenSsl(key) => {
                let ctx = context(&mut self.open, key, false)?;
                ctx.decrypt_init(None, None, Some(&nonce)).map_err(|_| Refused)?;
                let (body, tag) = chunk.split_at_mut(n);
                ctx.set_tag(tag).map_err(|_| Refused)?;
                update_in_place(ctx, body)?;
                ctx.cipher_final(&mut []).map_err(|_| Refused)?;
                Ok(n)
            }
        }
    }
}

/// The thread's OpenSSL context for one direction, keyed on first use.
fn context<'c>(
    slot: &'c mut Option<CipherCtx>,
    key: &[u8; 32],
    seal: bool,
) -> Result<&'c mut CipherCtx, Refused> {
    if let Some(ctx) = slot {
        return Ok(ctx);
    }
    let mut ctx = CipherCtx::new().map_err(|_| Refused)?;
    let c = SslCipher::chacha20_poly1305();
    if seal {
        ctx.encrypt_init(Some(c), Some(key), None).map_err(|_| Refused)?;
    } else {
        ctx.decrypt_init(Some(c), Some(key), None).map_err(|_| Refused)?;
    }
    Ok(slot.insert(ctx))
}

fn update_in_place(ctx: &mut CipherCtx, data: &mut [u8]) -> Result<(), Refused> {
    if data.is_empty() {
        return Ok(());
    }
    let len = data.len();
    // A stream cipher: exactly `len` bytes come out, over the bytes that went in.
    match ctx.cipher_update_inplace(data, len) {
        Ok(n) if n == len => Ok(()),
        _ => Err(Refused),
    }
}

#[cfg(test)]
mod tests {
    use super::super::stream::nonce;
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [0x42; 32];

    /// Seals `data` as chunks with the backend, returning each chunk's ciphertext and tag.
    fn seal_all(backend: Backend, data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let k = PayloadKey::with(Cipher::ChaCha20Poly1305, &KEY, backend);
        assert_eq!(k.backend(), backend);
        let mut c = k.chunks();
        let pieces: Vec<&[u8]> =
            if data.is_empty() { vec![&[][..]] } else { data.chunks(chunk).collect() };
        let last = pieces.len() - 1;
        pieces
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut b = p.to_vec();
                let tag = c.seal(nonce(i as u64, i == last), &mut b).unwrap();
                b.extend_from_slice(&tag);
                b
            })
            .collect()
    }

    #[test]
    fn rfc8439_aead_vector_through_openssl() {
        // RFC 8439 §2.8.2, without the AAD: the tag differs from the RFC's, so the
        // ciphertext is checked against the RFC and the whole chunk against ring.
        let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let nonce = [0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47];
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let seal = |backend| {
            let k = PayloadKey::with(Cipher::ChaCha20Poly1305, &key, backend);
            let mut b = plain.to_vec();
            let tag = k.chunks().seal(nonce, &mut b).unwrap();
            (b, tag)
        };
        let (ct, tag) = seal(Backend::OpenSsl);
        assert_eq!(hex::encode(&ct[..16]), "d31a8d34648e60db7b86afbc53ef7ec2");
        assert_eq!((ct, tag), seal(Backend::Ring));
    }

    #[test]
    fn both_backends_seal_the_same_bytes_and_open_each_other() {
        for len in [0, 1, 15, 16, 17, 4095, 65535, 65536, 65537, 3 * 65536 + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let ring = seal_all(Backend::Ring, &data, 65536);
            let ssl = seal_all(Backend::OpenSsl, &data, 65536);
            assert_eq!(ring, ssl, "{len} bytes");
            for (open_with, sealed) in [(Backend::Ring, &ssl), (Backend::OpenSsl, &ring)] {
                let k = PayloadKey::with(Cipher::ChaCha20Poly1305, &KEY, open_with);
                let mut c = k.chunks();
                let last = sealed.len() - 1;
                let mut plain = Vec::new();
                for (i, s) in sealed.iter().enumerate() {
                    let mut b = s.clone();
                    let n = c.open(nonce(i as u64, i == last), &mut b).unwrap();
                    plain.extend_from_slice(&b[..n]);
                }
                assert_eq!(plain, data, "{len} bytes opened by {open_with:?}");
            }
        }
    }

    #[test]
    fn a_failed_open_is_refused_and_zeroed_and_the_context_goes_on() {
        let sealed = seal_all(Backend::Ring, &[5u8; 70000], 65536);
        for backend in [Backend::Ring, Backend::OpenSsl] {
            let k = PayloadKey::with(Cipher::ChaCha20Poly1305, &KEY, backend);
            let mut c = k.chunks();
            // Wrong flag, flipped bit, wrong counter, too short: refused, nothing left.
            let mut flipped = sealed[0].clone();
            flipped[100] ^= 1;
            for (nonce, mut chunk) in [
                (nonce(0, true), sealed[0].clone()),
                (nonce(0, false), flipped),
                (nonce(1, false), sealed[0].clone()),
                (nonce(0, false), vec![1u8; TAG - 1]),
            ] {
                assert!(c.open(nonce, &mut chunk).is_err(), "{backend:?}");
                assert!(chunk.iter().all(|&b| b == 0), "{backend:?}");
            }
            // The same context then opens the good chunks.
            let mut a = sealed[0].clone();
            assert_eq!(c.open(nonce(0, false), &mut a).unwrap(), 65536);
            let mut b = sealed[1].clone();
            assert_eq!(c.open(nonce(1, true), &mut b).unwrap(), 70000 - 65536);
            assert!(a[..65536].iter().chain(&b[..70000 - 65536]).all(|&x| x == 5));
        }
    }

    #[test]
    fn aes_is_always_ring() {
        let k = PayloadKey::with(Cipher::Aes256Gcm, &KEY, Backend::OpenSsl);
        assert_eq!(k.backend(), Backend::Ring);
        assert_eq!(Backend::for_cpu(Cipher::Aes256Gcm), Backend::Ring);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn backends_agree(data in proptest::collection::vec(any::<u8>(), 0..200_000), chunk in 1usize..70_000) {
            prop_assert_eq!(seal_all(Backend::Ring, &data, chunk), seal_all(Backend::OpenSsl, &data, chunk));
        }
    }
}
