//! The payload between two regular files: every worker reads, seals or opens, and
//! writes its own chunks at their offsets.
//!
//! When both ends are files (`-o FILE` from a file, the usual case for a backup), the
//! chunks' places are known before any byte is read: plaintext chunk `i` is at
//! `i × 64 KiB`, its ciphertext at `i × (64 KiB + 16)` after the header. So each worker
//! takes the next batch of chunks, reads it with one positioned read, seals or opens it
//! in place and queues it to be written at its offset (one worker at a time writes the
//! queue, in pieces of at most 32 KiB cut at aligned offsets), on a buffer that stays in
//! its core's cache.
//! There is no reader or writer thread to wait on and no hand-off between cores; the
//! only copy in user space is decryption's move of each chunk's plaintext over the tags
//! before it. Memory is two batches per worker, whatever the size.
//!
//! The final chunk is found by the input's size, taken once before the work starts;
//! when the input's size differs afterwards, the result is refused (a file that grew
//! or shrank while it was read is not what was authenticated or encrypted). Decryption
//! writes only to a temporary file that the caller renames once this returns `Ok`, so
//! the order in which batches land does not matter; the error reported is that of the
//! first chunk that failed, with the same words as the streaming path.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSliceMut};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::aead::PayloadKey;
use super::stream::{
    CHUNK, CT_CHUNK, Cipher, Progress, StreamError, TAG, open_chunk, pieces, seal_chunk,
};

/// Chunks per batch: 256 KiB, which a worker reads, seals or opens and writes while it
/// stays in its core's L2 cache.
pub const BATCH: usize = 4;

/// Where the payload is and where it goes.
pub struct Files<'a> {
    pub input: &'a File,
    /// The payload's offset in `input` (after the header and nonce, for decryption).
    pub input_at: u64,
    /// Payload bytes from `input_at` to the end of `input`, as found at the start.
    pub input_len: u64,
    /// `None`: authenticate only (`backup verify`).
    pub output: Option<&'a File>,
    /// Where the payload goes in `output` (after the header and nonce, for encryption).
    pub output_at: u64,
    /// The caller fsyncs the output at the end: start writing it to disk as it lands,
    /// so that the disk works while the cores do and the fsync has little left to do.
    pub durable: bool,
}

/// How much newly written output starts its writeback at once, when durable.
const WRITEBACK: u64 = 8 << 20;

/// The first chunk that failed, and why.
struct Failure {
    chunk: u64,
    error: StreamError,
}

/// What a worker leaves to write: the first `len` bytes of its buffer, at `at` of the
/// output; `first` is the batch's first chunk (for a write error). Contiguous, and
/// written in the pieces that [`pieces`] cuts.
pub(super) struct Written {
    at: u64,
    len: usize,
    first: u64,
}

/// A batch's work: read, seal or open, and say what to write (nothing when verifying).
type Work<'a> = dyn Fn(u64, &mut [u8]) -> Result<Option<Written>, (u64, StreamError)> + Sync + 'a;

/// Runs `work` on every batch on every core and writes what it leaves to `output`;
/// returns the first failure by chunk order.
///
/// Writes to one file take its inode lock, and a second writer spins on it in the
/// kernel. So one worker at a time writes, and the others go on computing: a worker
/// that finishes a batch queues it and writes the queue only if no one else is writing.
/// A fixed number of buffers bounds the memory; a worker that finds none free writes
/// the queue itself.
fn run(
    batches: u64,
    output: Option<&File>,
    durable: bool,
    work: &Work<'_>,
) -> Result<(), StreamError> {
    let threads =
        super::stream::workers().min(usize::try_from(batches).unwrap_or(usize::MAX)).max(1);
    let buffers = 2 * threads;
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<Failure>> = Mutex::new(None);
    let fail = |chunk: u64, error: StreamError| {
        // Batches are taken in order, so every batch before a failing one is already
        // being worked on and may still report an earlier chunk.
        stop.store(true, Ordering::Relaxed);
        let mut f = lock(&failure);
        if f.as_ref().is_none_or(|f| chunk < f.chunk) {
            *f = Some(Failure { chunk, error });
        }
    };
    let free: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::with_capacity(buffers));
    let made = AtomicU64::new(0);
    let queued: Mutex<VecDeque<(Vec<u8>, Written)>> = Mutex::new(VecDeque::with_capacity(buffers));
    // The writer's token, holding how far the output's writeback was started.
    let writer = Mutex::new(0u64);
    // Writes the queue, oldest first; the caller holds `writer`.
    let drain = |started: &mut u64| loop {
        let Some((buf, w)) = lock(&queued).pop_front() else { return };
        if let Some(out) = output
            && !stop.load(Ordering::Relaxed)
        {
            let end = w.at + w.len as u64;
            let written = pieces(w.at, w.len)
                .try_for_each(|r| out.write_all_at(&buf[r.clone()], w.at + r.start as u64));
            match written {
                Err(e) => fail(w.first, io_error("write the output", e)),
                Ok(()) if durable && end >= *started + WRITEBACK => {
                    start_writeback(out, *started, end);
                    *started = end;
                }
                Ok(()) => {}
            }
        }
        lock(&free).push(buf);
    };
    let buffer = || loop {
        if let Some(b) = lock(&free).pop() {
            return b;
        }
        if made.fetch_add(1, Ordering::Relaxed) < buffers as u64 {
            return vec![0u8; BATCH * CT_CHUNK];
        }
        made.fetch_sub(1, Ordering::Relaxed);
        // Every buffer is queued or in a worker's hands: write the queue.
        drain(&mut lock(&writer));
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        break;
                    }
                    let mut buf = buffer();
                    match work(b, &mut buf) {
                        Ok(Some(w)) if w.len > 0 => {
                            lock(&queued).push_back((buf, w));
                            if let Ok(mut started) = writer.try_lock() {
                                drain(&mut started);
                            }
                        }
                        Ok(_) => lock(&free).push(buf),
                        Err((chunk, error)) => {
                            fail(chunk, error);
                            lock(&free).push(buf);
                        }
                    }
                }
                drain(&mut lock(&writer));
            });
        }
    });
    match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(f) => Err(f.error),
        None => Ok(()),
    }
}

/// A lock whose holder cannot have left the data half-changed: a panicking worker
/// ends the whole scope.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_error(op: &'static str, source: io::Error) -> StreamError {
    StreamError::Io { op, source, released: 0 }
}

/// Reads exactly `bufs` at `offset`; a short read means the input shrank.
fn read_exact_vectored_at(file: &File, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<()> {
    let mut bufs = bufs;
    let mut offset = offset;
    while !bufs.is_empty() {
        let at = i64::try_from(offset).map_err(io::Error::other)?;
        match nix::sys::uio::preadv(file, bufs, at) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the input became shorter while it was read",
                ));
            }
            Ok(n) => {
                IoSliceMut::advance_slices(&mut bufs, n);
                offset += n as u64;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reserves the output's final size: the filesystem allocates its blocks once instead
/// of page by page (several times cheaper on ext4). Only a hint: where the filesystem
/// cannot, the writes allocate as usual.
pub fn preallocate(output: &File, len: u64) {
    if let Ok(len) = i64::try_from(len)
        && len > 0
    {
        let _ = nix::fcntl::fallocate(output, nix::fcntl::FallocateFlags::empty(), 0, len);
    }
}

/// Starts writing `from..to` of `output` to disk without waiting for it (the page
/// cache keeps the data; the caller's fsync makes it durable). `POSIX_FADV_DONTNEED`
/// starts writeback of the dirty pages of the range and drops only pages already clean.
fn start_writeback(output: &File, from: u64, to: u64) {
    if let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(to.saturating_sub(from))) {
        let advice = nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED;
        let _ = nix::fcntl::posix_fadvise(output, from, len, advice);
    }
}

/// Tells the kernel the input is read front to back (a larger readahead when it is not
/// in the page cache).
fn sequential(input: &File) {
    let _ = nix::fcntl::posix_fadvise(
        input,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
    );
}

/// Refuses a result when the input's size changed while it was read.
fn unchanged(input: &File, expected: u64) -> Result<(), StreamError> {
    let now = input.metadata().map_err(|e| io_error("read the input", e))?.len();
    if now != expected {
        return Err(StreamError::Payload {
            what: format!(
                "the input changed size while it was read ({expected} bytes, now {now}): run again once nothing writes to it"
            ),
            released: 0,
        });
    }
    Ok(())
}

/// Encrypts `input_len` bytes from `input_at` to `output_at` onward. Returns the
/// number of plaintext bytes.
pub fn encrypt(
    cipher: Cipher,
    payload_key: &[u8; 32],
    files: &Files<'_>,
    progress: Option<Progress<'_>>,
) -> Result<u64, StreamError> {
    let k = PayloadKey::new(cipher, payload_key);
    let output = files.output.ok_or_else(|| {
        io_error("write the output", io::Error::other("encryption needs an output file"))
    })?;
    let size = files.input_len;
    // The empty input still has one (empty, final) chunk.
    let chunks = size.div_ceil(CHUNK as u64).max(1);
    let batches = chunks.div_ceil(BATCH as u64);
    sequential(files.input);
    let done = AtomicU64::new(0);
    let work = |b: u64, buf: &mut [u8]| -> Result<Option<Written>, (u64, StreamError)> {
        let first = b * BATCH as u64;
        let n = (chunks - first).min(BATCH as u64) as usize;
        let plain_at = first * CHUNK as u64;
        let plain = (size - plain_at).min((n * CHUNK) as u64) as usize;
        // Plaintext goes into chunk slots with a tag-sized gap after each, so sealing in
        // place leaves the ciphertext contiguous.
        let lens: Vec<usize> =
            (0..n).map(|i| (plain - (i * CHUNK).min(plain)).min(CHUNK)).collect();
        let mut slots: Vec<IoSliceMut<'_>> = buf
            .chunks_mut(CT_CHUNK)
            .zip(&lens)
            .filter(|(_, l)| **l > 0)
            .map(|(c, &l)| IoSliceMut::new(&mut c[..l]))
            .collect();
        read_exact_vectored_at(files.input, &mut slots, files.input_at + plain_at)
            .map_err(|e| (first, io_error("read the input", e)))?;
        drop(slots);
        let mut end = 0;
        let mut sealer = k.chunks();
        for (i, &len) in lens.iter().enumerate() {
            let counter = first + i as u64;
            let start = i * CT_CHUNK;
            seal_chunk(
                &mut sealer,
                &mut buf[start..start + len + TAG],
                counter,
                counter + 1 == chunks,
            )
            .map_err(|what| (counter, StreamError::Payload { what, released: 0 }))?;
            end = start + len + TAG;
        }
        if let Some(p) = progress {
            p(done.fetch_add(plain as u64, Ordering::Relaxed) + plain as u64);
        }
        Ok(Some(Written { at: files.output_at + first * CT_CHUNK as u64, len: end, first }))
    };
    run(batches, Some(output), files.durable, &work)?;
    unchanged(files.input, files.input_at + size)?;
    Ok(size)
}

/// The plaintext of a payload of `len` bytes whose chunks all open: one tag less per
/// chunk.
pub fn plaintext_len(len: u64) -> u64 {
    len.saturating_sub(len.div_ceil(CT_CHUNK as u64) * TAG as u64)
}

/// Decrypts the payload (`input_len` bytes from `input_at`, what follows the nonce)
/// to `output` from its start, or only authenticates it. Returns the plaintext length.
pub fn decrypt(
    cipher: Cipher,
    payload_key: &[u8; 32],
    files: &Files<'_>,
    progress: Option<Progress<'_>>,
) -> Result<u64, StreamError> {
    let k = PayloadKey::new(cipher, payload_key);
    let len = files.input_len;
    if len == 0 {
        return Err(StreamError::Payload {
            what: "the payload is missing (no chunks after the header): the file is truncated"
                .into(),
            released: 0,
        });
    }
    let chunks = len.div_ceil(CT_CHUNK as u64);
    let batches = chunks.div_ceil(BATCH as u64);
    sequential(files.input);
    let done = AtomicU64::new(0);
    let work = |b: u64, buf: &mut [u8]| -> Result<Option<Written>, (u64, StreamError)> {
        let first = b * BATCH as u64;
        let at = first * CT_CHUNK as u64;
        let bytes = (len - at).min((BATCH * CT_CHUNK) as u64) as usize;
        read_exact_vectored_at(
            files.input,
            &mut [IoSliceMut::new(&mut buf[..bytes])],
            files.input_at + at,
        )
        .map_err(|e| (first, io_error("read the input", e)))?;
        // Plaintext is moved down over the tags as each chunk opens, so the batch is
        // written as one buffer (nothing to move when only authenticating).
        let mut total = 0;
        let mut opener = k.chunks();
        for (i, start) in (0..bytes).step_by(CT_CHUNK).enumerate() {
            let counter = first + i as u64;
            let n = (bytes - start).min(CT_CHUNK);
            let chunk_at = files.input_at + at + start as u64;
            let mut restore = |c: &mut [u8]| files.input.read_exact_at(c, chunk_at).is_ok();
            let (opened, error) = open_chunk(
                &mut opener,
                &mut buf[start..start + n],
                counter,
                counter + 1 == chunks,
                &mut restore,
            );
            if let Some(what) = error {
                return Err((counter, StreamError::Payload { what, released: 0 }));
            }
            if files.output.is_some() {
                buf.copy_within(start..start + opened, total);
            }
            total += opened;
        }
        if let Some(p) = progress {
            p(done.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64);
        }
        Ok(Some(Written { at: first * CHUNK as u64, len: total, first }))
    };
    run(batches, files.output, files.durable, &work)?;
    unchanged(files.input, files.input_at + len)?;
    // Every chunk opened whole.
    Ok(plaintext_len(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    const KEY: [u8; 32] = [9u8; 32];

    fn file(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn contents(mut f: &File) -> Vec<u8> {
        let mut v = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    }

    /// `len` bytes of `input` from its start to `output` from its start, not durable.
    fn whole<'a>(input: &'a File, len: usize, output: Option<&'a File>) -> Files<'a> {
        Files { input, input_at: 0, input_len: len as u64, output, output_at: 0, durable: false }
    }

    fn enc(cipher: Cipher, data: &[u8]) -> Vec<u8> {
        let (input, output) = (file(data), tempfile::tempfile().unwrap());
        let files = whole(&input, data.len(), Some(&output));
        assert_eq!(encrypt(cipher, &KEY, &files, None).unwrap(), data.len() as u64);
        contents(&output)
    }

    /// Decrypts with both paths; they must agree on the plaintext or the message.
    fn dec(cipher: Cipher, ct: &[u8]) -> Result<Vec<u8>, String> {
        let (input, output) = (file(ct), tempfile::tempfile().unwrap());
        let files = whole(&input, ct.len(), Some(&output));
        let positioned = decrypt(cipher, &KEY, &files, None).map(|_| contents(&output));
        let mut streamed_out = Vec::new();
        let streamed =
            super::super::stream::decrypt(cipher, &KEY, &mut &ct[..], &mut streamed_out, None)
                .map(|_| streamed_out);
        let positioned = positioned.map_err(|e| e.to_string());
        assert_eq!(
            positioned,
            streamed.map_err(|e| e.to_string()),
            "positioned and streamed disagree"
        );
        positioned
    }

    #[test]
    fn the_same_bytes_as_the_streaming_path_at_every_boundary() {
        for cipher in [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm] {
            for n in [
                0,
                1,
                CHUNK - 1,
                CHUNK,
                CHUNK + 1,
                BATCH * CHUNK,
                BATCH * CHUNK + 1,
                3 * BATCH * CHUNK + 17,
            ] {
                let data: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
                let ct = enc(cipher, &data);
                let mut streamed = Vec::new();
                super::super::stream::encrypt(cipher, &KEY, &mut &data[..], &mut streamed, None)
                    .unwrap();
                assert!(ct == streamed, "{n} bytes: the ciphertexts differ");
                assert!(dec(cipher, &ct).unwrap() == data, "{n} bytes");
            }
        }
    }

    #[test]
    fn damaged_payloads_fail_with_the_streaming_paths_words() {
        let c = Cipher::ChaCha20Poly1305;
        let data: Vec<u8> = (0..(2 * BATCH + 1) * CHUNK + 5).map(|i| (i % 7) as u8).collect();
        let ct = enc(c, &data);
        // Truncated at a chunk boundary, inside a chunk, inside a tag; empty.
        for cut in [2 * CT_CHUNK, 2 * CT_CHUNK + 100, 3 * CT_CHUNK + 3, 0] {
            let e = dec(c, &ct[..cut]).unwrap_err();
            assert!(e.contains("truncated") || e.contains("authenticate"), "{cut}: {e}");
        }
        // A bit flipped in a later batch: the first failing chunk is named.
        let mut f = ct.clone();
        f[(BATCH + 1) * CT_CHUNK + 10] ^= 1;
        let e = dec(c, &f).unwrap_err();
        assert!(e.contains(&format!("chunk {}", BATCH + 1)), "{e}");
        // Two chunks swapped.
        let mut s = ct.clone();
        let (a, b) = s.split_at_mut(CT_CHUNK);
        a.swap_with_slice(&mut b[..CT_CHUNK]);
        assert!(dec(c, &s).unwrap_err().contains("chunk 0"));
        // Appended data; a full final chunk followed by data.
        let mut x = ct.clone();
        x.extend_from_slice(b"more");
        assert!(dec(c, &x).is_err());
        let full = vec![3u8; 2 * CHUNK];
        let mut y = enc(c, &full);
        y.extend_from_slice(&[0u8; 20]);
        assert!(dec(c, &y).unwrap_err().contains("data follows it"));
        // The other cipher.
        assert!(dec(Cipher::Aes256Gcm, &ct).is_err());
    }

    #[test]
    fn a_payload_after_a_header_and_verification_without_output() {
        let data = vec![5u8; 3 * CHUNK + 1];
        let ct = enc(Cipher::Aes256Gcm, &data);
        let mut with_header = b"HEADER".to_vec();
        with_header.extend_from_slice(&ct);
        let input = file(&with_header);
        let verify = Files { input_at: 6, ..whole(&input, ct.len(), None) };
        assert_eq!(decrypt(Cipher::Aes256Gcm, &KEY, &verify, None).unwrap(), data.len() as u64);
        // Encrypting after a header leaves the header alone.
        let (plain, out) = (file(&data), file(b"HDR"));
        let files = Files { output_at: 3, ..whole(&plain, data.len(), Some(&out)) };
        encrypt(Cipher::Aes256Gcm, &KEY, &files, None).unwrap();
        let written = contents(&out);
        assert!(written[..3] == *b"HDR" && written[3..] == ct[..]);
    }

    #[test]
    fn an_input_that_changes_size_is_refused() {
        let data = vec![1u8; 2 * CHUNK];
        let input = file(&data);
        let out = tempfile::tempfile().unwrap();
        // The caller measured a longer input than there is: it shrank.
        let files = whole(&input, 3 * CHUNK, Some(&out));
        let e = encrypt(Cipher::ChaCha20Poly1305, &KEY, &files, None).unwrap_err();
        assert!(e.to_string().contains("shorter"), "{e}");
        // It grew after it was measured.
        let files = whole(&input, CHUNK, Some(&out));
        let e = encrypt(Cipher::ChaCha20Poly1305, &KEY, &files, None).unwrap_err();
        assert!(e.to_string().contains("changed size"), "{e}");
    }
}
