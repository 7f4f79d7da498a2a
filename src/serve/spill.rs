//! A whole answer held for `content-length` framing: in memory up to
//! [`MEMORY_BOUND`], the rest in a temporary file, then read back in
//! [`READ_CHUNK`] pieces behind an exact `Content-Length`.
//!
//! SageMaker Asynchronous Inference refuses a container response without a
//! `Content-Length` ("The response from container primary did not specify
//! the required Content-Length header": deepjavalibrary/djl-serving#2567,
//! vllm-project/vllm#2912), and its payloads reach 1 GB (AWS DG,
//! Asynchronous Inference). Nothing may go out before the length is known,
//! so the answer has to be kept somewhere; memory stays bounded by putting
//! all but its first few MiB on disk.
//!
//! The file is made by `tempfile::tempfile_in`: on Linux an `O_TMPFILE`
//! inode that never has a name, elsewhere a file unlinked right after it is
//! created. Either way the kernel frees it when the descriptor closes, so it
//! is gone in every outcome (success, bad record, client gone, SIGTERM or
//! SIGKILL) without any cleanup code here.
//!
//! File I/O goes through `tokio::fs::File`, which runs each operation on
//! tokio's blocking pool, so a slow disk never stalls a runtime worker; the
//! writes are coalesced into [`WRITE_BUFFER`]-sized calls to keep the number
//! of those hand-offs small.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio_util::io::ReaderStream;

use crate::error::{Error, ErrorKind};

/// Output kept in memory before the rest goes to a file. Large enough that a
/// typical realtime-sized answer never touches the disk (InvokeEndpoint caps
/// answers at 6 MiB; this model's CSV answer is about as long as its input),
/// small enough that a 1 GB answer costs this plus two [`WRITE_BUFFER`]s
/// (ours, and the copy `tokio::fs::File` makes of each write), and that
/// `MMP_MAX_IN_FLIGHT` spilling requests at once stay within a known bound.
/// Asynchronous Inference sends an instance at most
/// `MaxConcurrentInvocationsPerInstance` requests at a time.
pub const MEMORY_BOUND: usize = 4 * 1024 * 1024;

/// Writes to the file are gathered into calls of this size.
pub const WRITE_BUFFER: usize = 1024 * 1024;

/// The file is read back, and handed to hyper, in pieces of this size:
/// large enough to keep the blocking-pool round trips few, small enough
/// that hyper's write buffer applies backpressure at once.
pub const READ_CHUNK: usize = 256 * 1024;

/// Make `dir` (`TMPDIR`) if it is missing, at startup, so the first answer
/// over [`MEMORY_BOUND`] has somewhere to go: the image is `FROM scratch`
/// and has no `/tmp` (container/Dockerfile). Made like `/tmp` (mode 1777).
/// A folder that cannot be made is logged now, naming what will fail,
/// rather than found at the first large answer.
pub fn prepare(dir: &Path) {
    if dir.is_dir() {
        return;
    }
    let made = std::fs::create_dir_all(dir).and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777))
    });
    match made {
        Ok(()) => tracing::info!(
            target: "mmp::startup",
            dir = %dir.display(),
            "made TMPDIR, where content-length framing keeps answers over 4 MiB"
        ),
        Err(e) => tracing::warn!(
            target: "mmp::startup",
            dir = %dir.display(),
            error = %e,
            "cannot make TMPDIR: content-length answers over 4 MiB will fail (500 spill_failed)"
        ),
    }
}

/// An answer being gathered.
pub struct Spill {
    dir: PathBuf,
    /// The first bytes of the answer, at most [`MEMORY_BOUND`].
    head: Vec<u8>,
    /// The rest, once the head is full.
    file: Option<BufWriter<tokio::fs::File>>,
    /// Bytes written to the file.
    spilled: u64,
}

impl Spill {
    /// An empty answer whose overflow goes to a file in `dir`.
    pub fn new(dir: &Path) -> Spill {
        Spill {
            dir: dir.to_path_buf(),
            head: Vec::new(),
            file: None,
            spilled: 0,
        }
    }

    fn error(&self, doing: &'static str, source: io::Error) -> Error {
        Error::new(ErrorKind::Spill {
            dir: self.dir.clone(),
            doing,
            source,
        })
    }

    /// Append `chunk` to the answer.
    pub async fn push(&mut self, mut chunk: &[u8]) -> Result<(), Error> {
        if self.file.is_none() {
            // The head takes exactly the first MEMORY_BOUND bytes.
            let take = chunk.len().min(MEMORY_BOUND - self.head.len());
            let len = self.head.len() + take;
            if len > self.head.capacity() {
                // Exact growth, so the head never holds more than the bound
                // (Vec's own doubling could reach twice it).
                let want = len.max(self.head.capacity() * 2).min(MEMORY_BOUND);
                self.head.reserve_exact(want - self.head.len());
            }
            self.head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if chunk.is_empty() {
                return Ok(());
            }
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let dir = self.dir.clone();
                let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
                    .await
                    .map_err(io::Error::other)
                    .and_then(|r| r)
                    .map_err(|e| self.error("creating a temporary file", e))?;
                self.file.insert(BufWriter::with_capacity(
                    WRITE_BUFFER,
                    tokio::fs::File::from_std(file),
                ))
            }
        };
        match file.write_all(chunk).await {
            Ok(()) => {
                self.spilled += chunk.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.error("writing the temporary file", e)),
        }
    }

    /// The whole answer, ready to be sent. A write error that tokio deferred
    /// (it reports a failed write on the next operation) surfaces here.
    pub async fn finish(mut self) -> Result<Answer, Error> {
        let file = match self.file.take() {
            None => None,
            Some(mut w) => {
                if let Err(e) = w.flush().await {
                    return Err(self.error("writing the temporary file", e));
                }
                let mut file = w.into_inner();
                if let Err(e) = file.seek(SeekFrom::Start(0)).await {
                    return Err(self.error("rewinding the temporary file", e));
                }
                Some(ReaderStream::with_capacity(file, READ_CHUNK))
            }
        };
        let len = self.head.len() as u64 + self.spilled;
        Ok(Answer {
            head: (!self.head.is_empty()).then(|| Bytes::from(self.head)),
            file,
            len,
            spilled: self.spilled,
        })
    }
}

/// A gathered answer: a stream of its bytes, of known length.
pub struct Answer {
    head: Option<Bytes>,
    file: Option<ReaderStream<tokio::fs::File>>,
    len: u64,
    spilled: u64,
}

impl Answer {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many of its bytes went through the file.
    pub fn spilled(&self) -> u64 {
        self.spilled
    }
}

impl Stream for Answer {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(head)));
        }
        let Some(file) = this.file.as_mut() else {
            return Poll::Ready(None);
        };
        let item = std::task::ready!(Pin::new(file).poll_next(cx));
        if item.is_none() {
            // Close the file (freeing its space) as soon as it is read.
            this.file = None;
        }
        Poll::Ready(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    async fn gather(chunks: &[Vec<u8>], dir: &Path) -> (Vec<u8>, u64, u64) {
        let mut spill = Spill::new(dir);
        for c in chunks {
            spill.push(c).await.unwrap();
        }
        let mut answer = spill.finish().await.unwrap();
        let (len, spilled) = (answer.len(), answer.spilled());
        let mut out = Vec::new();
        while let Some(b) = answer.next().await {
            let b = b.unwrap();
            assert!(b.len() <= MEMORY_BOUND.max(READ_CHUNK));
            out.extend_from_slice(&b);
        }
        (out, len, spilled)
    }

    /// Deterministic bytes, so a misplaced chunk shows.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[tokio::test]
    async fn small_answers_stay_in_memory_and_large_ones_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let small: Vec<Vec<u8>> = (0..10).map(|i| pattern(1000, i)).collect();
        let (out, len, spilled) = gather(&small, dir.path()).await;
        assert_eq!(out, small.concat());
        assert_eq!((len, spilled), (10_000, 0));

        // Chunk sizes that do not divide the bound, one larger than it.
        let mut large: Vec<Vec<u8>> = (0..200).map(|i| pattern(65_537, i as u8)).collect();
        large.push(pattern(MEMORY_BOUND + 3, 7));
        let total: usize = large.iter().map(Vec::len).sum();
        let (out, len, spilled) = gather(&large, dir.path()).await;
        assert_eq!(len, total as u64);
        assert_eq!(spilled, (total - MEMORY_BOUND) as u64);
        assert_eq!(out, large.concat());

        let (out, len, _) = gather(&[], dir.path()).await;
        assert!(out.is_empty() && len == 0);
        // Nothing is left in the directory, ever (the file has no name).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("nope");
        let mut spill = Spill::new(&gone);
        let e = spill.push(&pattern(MEMORY_BOUND + 1, 1)).await.unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("creating a temporary file"), "{msg}");
        assert!(msg.contains(&gone.display().to_string()), "{msg}");
        assert_eq!(e.status(), 500, "not a full disk");
    }
}
