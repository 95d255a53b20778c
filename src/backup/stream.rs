//! The payload: STREAM (64 KiB chunks, 11-byte big-endian counter and a last-chunk
//! flag as nonce) encrypted and decrypted on every core, in constant memory.
//!
//! A reader thread fills large buffers (a batch of 16 chunks) taken from a fixed pool,
//! worker threads seal or open the chunks of a batch in place (see `aead`), and the calling
//! thread writes batches strictly in order and returns their buffers to the pool. The
//! pool size bounds the memory in flight whatever the input size. Decryption releases
//! plaintext only in order and only up to the last chunk that authenticated; the final
//! chunk is recognised by EOF, so a truncated, extended, reordered or tampered payload
//! fails. This module holds the payload key only; it knows nothing of headers.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use super::aead::{Chunks, PayloadKey};
use crossbeam_channel::{Receiver, Sender, bounded};

pub const CHUNK: usize = 64 * 1024;
pub const TAG: usize = 16;
pub const CT_CHUNK: usize = CHUNK + TAG;
/// Chunks per batch: one buffer of about 1 MiB per read.
pub const BATCH: usize = 16;
/// The most bytes given to one write, and the file offsets at which writes are cut.
///
/// The kernel fills a write with page-cache folios as large as the write and its
/// offset's alignment allow. Folios of 32 KiB (order 3) and smaller come from per-CPU
/// lists of recently freed pages; larger ones come from the global free lists, whose
/// memory this project's virtual machine hands back to its host and must fault in
/// again. Measured on the 2-core machine, decrypting 1 GiB (plaintext at aligned
/// offsets) cost 0.3–0.4 s of system time in every run with 32 KiB aligned writes,
/// against 0.28–1.43 s with 64 KiB writes (half the runs above 0.6 s); encryption
/// (ciphertext at unaligned offsets) gained 0.03–0.05 s from being cut at 32 KiB
/// offsets. Smaller writes cost more calls (16 KiB: 0.4–0.6 s).
pub const WRITE_PIECE: usize = 32 * 1024;

/// Splits `len` bytes that go to offset `at` of the output into writes of at most
/// [`WRITE_PIECE`] that end at its multiples: ranges of the buffer, in order.
pub fn pieces(at: u64, len: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let mut done = 0usize;
    std::iter::from_fn(move || {
        if done == len {
            return None;
        }
        let into = ((at + done as u64) % WRITE_PIECE as u64) as usize;
        let n = (WRITE_PIECE - into).min(len - done);
        done += n;
        Some(done - n..done)
    })
}

/// The payload cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    ChaCha20Poly1305,
    Aes256Gcm,
}

/// Why a payload did not decrypt. `released` plaintext bytes were written before.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{what}")]
    Payload { what: String, released: u64 },
    #[error("{op}: {source}")]
    Io { op: &'static str, source: io::Error, released: u64 },
}

impl StreamError {
    pub fn released(&self) -> u64 {
        match self {
            StreamError::Payload { released, .. } | StreamError::Io { released, .. } => *released,
        }
    }
}

/// Progress callback: called with the number of input bytes consumed so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

pub(super) fn nonce(counter: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Number of worker threads: every core.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 64)
}

struct Batch {
    seq: u64,
    buf: Vec<u8>,
    /// Bytes of input in `buf` (encrypt: plaintext in chunk slots; decrypt: ciphertext).
    len: usize,
    last: bool,
    /// After processing: how many bytes at the start of `buf` to write (contiguous,
    /// cut by [`pieces`]), and an error after them.
    out: usize,
    error: Option<String>,
}

/// Reads until `buf` is full or EOF; returns the number of bytes read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads plaintext into the chunk slots of `buf` (each `CHUNK` bytes followed by a
/// tag-sized gap) with vectored reads, until the slots are full or EOF.
fn fill_slots(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut total = 0;
    while total < BATCH * CHUNK {
        let (slot, off) = (total / CHUNK, total % CHUNK);
        let mut slices: Vec<io::IoSliceMut<'_>> = buf
            .chunks_mut(CT_CHUNK)
            .take(BATCH)
            .skip(slot)
            .enumerate()
            .map(|(j, c)| {
                io::IoSliceMut::new(if j == 0 { &mut c[off..CHUNK] } else { &mut c[..CHUNK] })
            })
            .collect();
        match r.read_vectored(&mut slices) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Fills one batch buffer from the input; returns the bytes read.
type ReadBatch = dyn Fn(&mut dyn Read, &mut [u8]) -> io::Result<usize> + Sync;

/// Shared pipeline: the reader fills batches, workers run `work`, the caller writes.
fn pipeline(
    input: &mut (dyn Read + Send),
    output: &mut dyn Write,
    buf_size: usize,
    full: usize,
    read_batch: &ReadBatch,
    work: &(dyn Fn(&mut Batch) + Sync),
    progress: Option<Progress<'_>>,
) -> Result<u64, StreamError> {
    let threads = workers();
    let pool = 2 * threads + 2;
    let (free_tx, free_rx): (Sender<Vec<u8>>, Receiver<Vec<u8>>) = bounded(pool);
    for _ in 0..pool {
        // The channel holds exactly `pool` buffers.
        let _ = free_tx.send(vec![0u8; buf_size]);
    }
    let (work_tx, work_rx) = bounded::<Batch>(pool);
    let (done_tx, done_rx) = bounded::<Batch>(pool);
    std::thread::scope(|s| {
        let reader = s.spawn(move || -> io::Result<()> {
            let mut pending: Option<Batch> = None;
            let mut seq = 0u64;
            loop {
                let Ok(mut buf) = free_rx.recv() else { return Ok(()) };
                let len = read_batch(input, &mut buf)?;
                let short = len < full;
                let batch = Batch { seq, buf, len, last: false, out: 0, error: None };
                seq += 1;
                if len == 0 {
                    let mut last = pending.take().unwrap_or(batch);
                    last.last = true;
                    let _ = work_tx.send(last);
                    return Ok(());
                }
                if let Some(p) = pending.take()
                    && work_tx.send(p).is_err()
                {
                    return Ok(());
                }
                if short {
                    let mut b = batch;
                    b.last = true;
                    let _ = work_tx.send(b);
                    return Ok(());
                }
                pending = Some(batch);
            }
        });
        for _ in 0..threads {
            let rx = work_rx.clone();
            let tx = done_tx.clone();
            s.spawn(move || {
                for mut b in rx {
                    work(&mut b);
                    if tx.send(b).is_err() {
                        return;
                    }
                }
            });
        }
        drop(work_rx);
        drop(done_tx);
        let written = write_in_order(done_rx, free_tx, output, progress);
        let read = reader.join();
        match (written, read) {
            (Err(e), _) => Err(e),
            (Ok(n), Ok(Ok(()))) => Ok(n),
            (Ok(n), Ok(Err(e))) => {
                Err(StreamError::Io { op: "read the input", source: e, released: n })
            }
            (Ok(n), Err(_)) => Err(StreamError::Io {
                op: "read the input",
                source: io::Error::other("the reader thread panicked"),
                released: n,
            }),
        }
    })
}

fn write_in_order(
    done: Receiver<Batch>,
    free: Sender<Vec<u8>>,
    output: &mut dyn Write,
    progress: Option<Progress<'_>>,
) -> Result<u64, StreamError> {
    let mut next = 0u64;
    let mut waiting = BTreeMap::new();
    let mut written = 0u64;
    let mut consumed = 0u64;
    let mut saw_last = false;
    for b in done {
        waiting.insert(b.seq, b);
        while let Some(b) = waiting.remove(&next) {
            next += 1;
            // The payload's own offset: the header before it is not counted.
            if let Err(e) = pieces(written, b.out).try_for_each(|r| output.write_all(&b.buf[r])) {
                return Err(StreamError::Io {
                    op: "write the output",
                    source: e,
                    released: written,
                });
            }
            written += b.out as u64;
            consumed += b.len as u64;
            if let Some(p) = progress {
                p(consumed);
            }
            if let Some(what) = b.error {
                return Err(StreamError::Payload { what, released: written });
            }
            saw_last |= b.last;
            let _ = free.send(b.buf);
        }
    }
    if !saw_last {
        // Workers stopped without the last batch: the reader failed; it reports why.
        return Ok(written);
    }
    if let Err(e) = output.flush() {
        return Err(StreamError::Io { op: "write the output", source: e, released: written });
    }
    Ok(written)
}

/// Encrypts `input` to `output` (payload only, after the header and nonce).
/// Returns the number of plaintext bytes.
pub fn encrypt(
    cipher: Cipher,
    payload_key: &[u8; 32],
    input: &mut (dyn Read + Send),
    output: &mut dyn Write,
    progress: Option<Progress<'_>>,
) -> Result<u64, StreamError> {
    let k = PayloadKey::new(cipher, payload_key);
    // Plaintext is read into chunk slots with a tag-sized gap after each, so sealing in
    // place leaves the ciphertext contiguous.
    let read_batch = |r: &mut dyn Read, buf: &mut [u8]| fill_slots(r, buf);
    let counted = std::sync::atomic::AtomicU64::new(0);
    let work = |b: &mut Batch| {
        let mut chunks = b.len.div_ceil(CHUNK);
        if chunks == 0 {
            // Only the empty payload gets an empty (final) chunk.
            chunks = 1;
        }
        let mut out = 0;
        let mut sealer = k.chunks();
        for i in 0..chunks {
            let n = (b.len - i * CHUNK).min(CHUNK);
            let counter = b.seq * BATCH as u64 + i as u64;
            let last = b.last && i + 1 == chunks;
            let start = i * CT_CHUNK;
            if let Err(what) =
                seal_chunk(&mut sealer, &mut b.buf[start..start + n + TAG], counter, last)
            {
                b.error = Some(what);
                break;
            }
            out = start + n + TAG;
        }
        b.out = out;
        counted.fetch_add(b.len as u64, std::sync::atomic::Ordering::Relaxed);
    };
    pipeline(input, output, BATCH * CT_CHUNK, BATCH * CHUNK, &read_batch, &work, progress)?;
    Ok(counted.load(std::sync::atomic::Ordering::Relaxed))
}

/// Decrypts a payload (what follows the nonce). Returns the plaintext length.
pub fn decrypt(
    cipher: Cipher,
    payload_key: &[u8; 32],
    input: &mut (dyn Read + Send),
    output: &mut dyn Write,
    progress: Option<Progress<'_>>,
) -> Result<u64, StreamError> {
    let k = PayloadKey::new(cipher, payload_key);
    let read_batch = |r: &mut dyn Read, buf: &mut [u8]| fill(r, buf);
    let work = |b: &mut Batch| {
        let first = b.seq * BATCH as u64;
        if b.len == 0 {
            // Only reachable for an empty input: a payload needs at least one chunk.
            b.error = Some(if first == 0 {
                "the payload is missing (no chunks after the header): the file is truncated".into()
            } else {
                "internal: empty batch".into()
            });
            return;
        }
        let chunks = b.len.div_ceil(CT_CHUNK);
        // Chunks open in place. A chunk that may need a second try is copied first,
        // because a chunk that fails is zeroed (see `open_chunk`).
        let mut backup = vec![0u8; CT_CHUNK];
        let mut opener = k.chunks();
        let mut plain = 0;
        for i in 0..chunks {
            let start = i * CT_CHUNK;
            let n = (b.len - start).min(CT_CHUNK);
            let counter = first + i as u64;
            let at_eof = b.last && i + 1 == chunks;
            let chunk = &mut b.buf[start..start + n];
            if retried(n, at_eof) {
                backup[..n].copy_from_slice(chunk);
            }
            let mut restore = |c: &mut [u8]| {
                c.copy_from_slice(&backup[..c.len()]);
                true
            };
            let (len, error) = open_chunk(&mut opener, chunk, counter, at_eof, &mut restore);
            // Plaintext moves down over the tags: one buffer to write.
            b.buf.copy_within(start..start + len, plain);
            plain += len;
            if error.is_some() {
                b.error = error;
                break;
            }
        }
        b.out = plain;
    };
    pipeline(input, output, BATCH * CT_CHUNK, BATCH * CT_CHUNK, &read_batch, &work, progress)
}

/// Seals chunk `counter` in place: `slot` holds its plaintext followed by room for
/// the tag, and holds its ciphertext afterwards.
pub(super) fn seal_chunk(
    cipher: &mut Chunks<'_>,
    slot: &mut [u8],
    counter: u64,
    last: bool,
) -> Result<(), String> {
    let (plain, tag_room) = slot.split_at_mut(slot.len() - TAG);
    let tag = cipher
        .seal(nonce(counter, last), plain)
        .map_err(|_| "the cipher refused to seal a chunk".to_string())?;
    tag_room.copy_from_slice(&tag);
    Ok(())
}

/// Whether a chunk of `n` bytes gets a second try when it fails: a full-size chunk,
/// and the chunk at the end of the input.
pub(super) fn retried(n: usize, at_eof: bool) -> bool {
    n == CT_CHUNK || at_eof
}

/// Opens chunk `counter` in place (`at_eof`: it is the last chunk of the input).
/// Returns how many plaintext bytes at its start may be released, and the error that
/// stops the payload after them.
///
/// A chunk that fails is tried again with the other last-chunk flag, to say what
/// happened: a full chunk at the end that opens as a non-final chunk means the file was
/// truncated at a chunk boundary; a chunk before the end that opens as the final chunk
/// means data was appended after it. A chunk that fails is zeroed, so `restore` puts
/// its ciphertext back first (and says whether it could); it is called only for chunks
/// that [`retried`] names.
pub(super) fn open_chunk(
    cipher: &mut Chunks<'_>,
    chunk: &mut [u8],
    counter: u64,
    at_eof: bool,
    restore: &mut dyn FnMut(&mut [u8]) -> bool,
) -> (usize, Option<String>) {
    let n = chunk.len();
    if n < TAG {
        return (
            0,
            Some(format!("chunk {counter} is shorter than its tag: the file is truncated")),
        );
    }
    let tampered = || {
        Some(format!(
            "chunk {counter} does not authenticate: the file was tampered with, reordered or truncated"
        ))
    };
    match cipher.open(nonce(counter, at_eof), chunk) {
        Ok(0) if at_eof && counter != 0 => (
            0,
            Some(format!(
                "the final chunk ({counter}) is empty after data: the file was tampered with"
            )),
        ),
        Ok(len) => (len, None),
        Err(_) if retried(n, at_eof) && restore(chunk) => {
            match cipher.open(nonce(counter, !at_eof), chunk) {
                // A short chunk is never a valid non-final chunk: nothing of it is
                // released, but the message says what happened.
                Ok(len) if at_eof => (
                    if n == CT_CHUNK { len } else { 0 },
                    Some(format!(
                        "the payload ends after chunk {counter} without a final chunk: the file is truncated"
                    )),
                ),
                Ok(len) => (
                    len,
                    Some(format!(
                        "chunk {counter} is the final chunk but data follows it: something was appended to the file"
                    )),
                ),
                Err(_) => (0, tampered()),
            }
        }
        Err(_) => (0, tampered()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(cipher: Cipher, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let n = encrypt(cipher, &[9u8; 32], &mut &data[..], &mut out, None).unwrap();
        assert_eq!(n, data.len() as u64);
        out
    }

    fn dec(cipher: Cipher, ct: &[u8]) -> Result<Vec<u8>, (StreamError, Vec<u8>)> {
        let mut out = Vec::new();
        match decrypt(cipher, &[9u8; 32], &mut &ct[..], &mut out, None) {
            Ok(_) => Ok(out),
            Err(e) => Err((e, out)),
        }
    }

    #[test]
    fn sizes_at_every_boundary_round_trip() {
        for cipher in [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm] {
            for n in [
                0,
                1,
                CHUNK - 1,
                CHUNK,
                CHUNK + 1,
                BATCH * CHUNK,
                BATCH * CHUNK + 1,
                3 * BATCH * CHUNK,
            ] {
                let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                let ct = enc(cipher, &data);
                let chunks = n.div_ceil(CHUNK).max(1);
                assert_eq!(ct.len(), n + chunks * TAG, "{n}");
                assert_eq!(dec(cipher, &ct).unwrap(), data, "{n}");
            }
        }
    }

    #[test]
    fn truncation_bitflip_swap_append_fail_and_release_only_the_good_prefix() {
        let c = Cipher::ChaCha20Poly1305;
        let data: Vec<u8> = (0..3 * CHUNK + 5).map(|i| (i % 7) as u8).collect();
        let ct = enc(c, &data);
        // Truncated at a chunk boundary: the last full chunk is not final.
        let (e, out) = dec(c, &ct[..2 * CT_CHUNK]).unwrap_err();
        assert!(e.to_string().contains("without a final chunk"), "{e}");
        // Both chunks authenticate as non-final chunks: released, then the error.
        assert!(out == data[..2 * CHUNK], "released {}", out.len());
        // Bit flip in chunk 1.
        let mut f = ct.clone();
        f[CT_CHUNK + 10] ^= 1;
        let (_, out) = dec(c, &f).unwrap_err();
        assert!(out == data[..CHUNK], "released {}", out.len());
        // Chunk swap.
        let mut s = ct.clone();
        let (a, b) = s.split_at_mut(CT_CHUNK);
        a.swap_with_slice(&mut b[..CT_CHUNK]);
        assert!(dec(c, &s).unwrap_err().1.is_empty());
        // Appended data.
        let mut x = ct.clone();
        x.extend_from_slice(b"more");
        let (e, out) = dec(c, &x).unwrap_err();
        assert!(out == data[..3 * CHUNK], "released {}", out.len());
        assert!(e.to_string().contains("does not authenticate"), "{e}");
        // A final chunk of full size followed by data.
        let full: Vec<u8> = vec![3u8; 2 * CHUNK];
        let mut y = enc(c, &full);
        y.extend_from_slice(&[0u8; 20]);
        let (e, out) = dec(c, &y).unwrap_err();
        assert!(e.to_string().contains("data follows it"), "{e}");
        assert!(out == full, "released {}", out.len());
        // Nothing at all.
        assert!(dec(c, &[]).is_err());
        // The other cipher does not open it.
        assert!(dec(Cipher::Aes256Gcm, &ct).is_err());
    }

    #[test]
    fn pieces_examples() {
        let p = |at, len| pieces(at, len).collect::<Vec<_>>();
        assert_eq!(p(0, 0), vec![]);
        assert_eq!(p(0, 65536), vec![0..32768, 32768..65536]);
        assert_eq!(p(100, 65552), vec![0..32668, 32668..65436, 65436..65552]);
        assert_eq!(p(32767, 2), vec![0..1, 1..2]);
        assert_eq!(p(5, 10), vec![0..10]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn pieces_cover_the_range_and_end_on_aligned_offsets(at in 0u64..(1 << 40), len in 0usize..(5 * CT_CHUNK)) {
            let mut next = 0;
            for r in pieces(at, len) {
                prop_assert_eq!(r.start, next);
                prop_assert!(!r.is_empty() && r.len() <= WRITE_PIECE);
                let end = at + r.end as u64;
                prop_assert!(r.end == len || end.is_multiple_of(WRITE_PIECE as u64));
                next = r.end;
            }
            prop_assert_eq!(next, len);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..(3 * CHUNK)), aes in any::<bool>()) {
            let c = if aes { Cipher::Aes256Gcm } else { Cipher::ChaCha20Poly1305 };
            prop_assert_eq!(dec(c, &enc(c, &data)).unwrap(), data);
        }
    }
}
