//! Reused read buffers for the splitter.
//!
//! A mini-batch is a few MiB read from the file. Allocating each one fresh
//! costs more than reading it: glibc serves blocks that large with `mmap`
//! (or trims them back to the system), so every page of every batch is
//! faulted in, zeroed and unmapped again — a third of the client's time
//! against a container before this pool (perf: `exc_page_fault`,
//! `clear_page`, `unmap_page_range`). A batch body owns a pooled `Vec`
//! ([`Bytes::from_owner`]) and gives it back when its last reference drops,
//! so a job cycles through as many buffers as it has batches in flight.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Buffers kept for reuse at most; more are freed.
const KEEP: usize = 32;

/// A set of buffers of one capacity.
#[derive(Debug)]
pub struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    capacity: usize,
}

impl Pool {
    /// A pool of buffers of `capacity` bytes.
    pub fn new(capacity: usize) -> Arc<Pool> {
        Arc::new(Pool {
            free: Mutex::new(Vec::new()),
            capacity,
        })
    }

    /// A buffer with at least the pool's capacity. A reused one keeps its
    /// length and old contents: callers track what they fill, so memory
    /// already initialised need not be zeroed again.
    pub fn take(&self) -> Vec<u8> {
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        reused.unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    /// Keep `buf` for reuse (if it is one of ours and there is room).
    pub fn give_back(&self, buf: Vec<u8>) {
        if buf.capacity() < self.capacity {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < KEEP {
            free.push(buf);
        }
    }
}

/// A buffer that returns to its pool when dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<Pool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

/// `buf[from..to]` as `Bytes` that own `buf` and return it to `pool`.
pub fn share(buf: Vec<u8>, from: usize, to: usize, pool: &Arc<Pool>) -> Bytes {
    Bytes::from_owner(Pooled {
        buf,
        pool: pool.clone(),
    })
    .slice(from..to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_reference_drops() {
        let pool = Pool::new(16);
        let mut a = pool.take();
        a.extend_from_slice(b"hello world");
        let ptr = a.as_ptr();
        let b = share(a, 6, 11, &pool);
        let c = b.clone();
        assert_eq!(&b[..], b"world");
        drop(b);
        assert_eq!(pool.free.lock().unwrap().len(), 0);
        drop(c);
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr);
    }
}
