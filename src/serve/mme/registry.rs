//! The registry of a multi-model endpoint's models: loading slots, the
//! memory budget they are charged against, and where its figure comes
//! from (see the parent module).

use super::*;

/// Most files counted in one artifact directory: a bound on the work a load
/// does before it starts.
const MAX_ARTIFACT_FILES: usize = 100_000;

/// A loaded model.
pub struct Loaded {
    /// The `url` it was loaded from, as given.
    pub url: String,
    /// The model.
    pub model: SharedModel,
    /// Bytes charged against the budget.
    pub bytes: u64,
}

enum Slot {
    /// Accepted, not ready: invisible except to a second load (409).
    Loading {
        bytes: u64,
    },
    Ready(Arc<Loaded>),
}

struct Inner {
    models: BTreeMap<Arc<str>, Slot>,
    /// Bytes charged by loaded and loading models.
    charged: u64,
}

/// The memory models may use, and where the number came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Bytes of artifacts that may be loaded at once.
    pub bytes: u64,
    /// Where it came from, for the 507 message and the startup log.
    pub source: String,
}

/// The models of a multi-model endpoint, by name.
pub struct Registry {
    inner: RwLock<Inner>,
    budget: Budget,
    root: PathBuf,
}

impl Registry {
    /// An empty registry with this budget, loading only from under `root`.
    pub fn new(budget: Budget, root: PathBuf) -> Registry {
        // Register the metrics now, so a scrape shows them from the start.
        mme_metrics().loaded.set(0);
        Registry {
            inner: RwLock::new(Inner {
                models: BTreeMap::new(),
                charged: 0,
            }),
            budget,
            root,
        }
    }

    /// The budget.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    // A panic while holding the lock cannot leave the map inconsistent
    // (every change is one insert or remove plus an addition), so a
    // poisoned lock is used as is.
    /// Whether `name` is loaded or loading.
    pub(super) fn holds(&self, name: &str) -> bool {
        self.read().models.contains_key(name)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The model `name`, if it is loaded (not while it is loading).
    pub fn get(&self, name: &str) -> Option<Arc<Loaded>> {
        match self.read().models.get(name) {
            Some(Slot::Ready(m)) => Some(m.clone()),
            _ => None,
        }
    }

    /// Reserve `bytes` for loading `name`: 409 if it is loaded or loading,
    /// 507 if the budget has no room.
    pub(super) fn reserve(&self, name: &Arc<str>, bytes: u64) -> Result<(), MmeError> {
        let mut inner = self.write();
        if inner.models.contains_key(name) {
            return Err(already(name));
        }
        let free = self.budget.bytes.saturating_sub(inner.charged);
        if bytes > free {
            mme_metrics().refused.inc();
            return Err(MmeError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_memory",
                format!(
                    "loading model {name:?} needs {bytes} bytes but {free} of the {}-byte budget \
                     ({}) are free; unload a model and retry",
                    self.budget.bytes, self.budget.source
                ),
            ));
        }
        inner.charged += bytes;
        inner.models.insert(name.clone(), Slot::Loading { bytes });
        Ok(())
    }

    /// The load of `name` finished: make it visible, or give its
    /// reservation back.
    pub(super) fn finish(&self, name: &Arc<str>, loaded: Option<Loaded>) {
        let mut inner = self.write();
        match loaded {
            Some(m) => {
                inner.models.insert(name.clone(), Slot::Ready(Arc::new(m)));
                mme_metrics().loaded.inc();
                mme_metrics().loads.inc();
            }
            None => {
                if let Some(Slot::Loading { bytes }) = inner.models.remove(name) {
                    inner.charged -= bytes;
                }
            }
        }
    }

    /// Unload `name`; the model itself is freed when the last request
    /// running on it ends.
    pub fn unload(&self, name: &str) -> Result<Arc<Loaded>, MmeError> {
        let mut inner = self.write();
        match inner.models.get(name) {
            Some(Slot::Ready(_)) => {}
            _ => return Err(MmeError::not_loaded(name)),
        }
        let Some(Slot::Ready(m)) = inner.models.remove(name) else {
            unreachable!("checked under the same lock just above")
        };
        inner.charged -= m.bytes;
        mme_metrics().loaded.dec();
        mme_metrics().unloads.inc();
        Ok(m)
    }

    /// The JSON of one page of `GET /models`: up to `limit` loaded models
    /// after `after`, in name order.
    pub(super) fn page(&self, after: Option<&str>, limit: usize) -> Vec<u8> {
        let inner = self.read();
        let start = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut ready = inner
            .models
            .range::<str, _>((start, Bound::Unbounded))
            .filter_map(|(k, s)| match s {
                Slot::Ready(m) => Some((k, m)),
                Slot::Loading { .. } => None,
            });
        let models: Vec<Entry<'_>> = ready
            .by_ref()
            .take(limit)
            .map(|(k, m)| Entry {
                model_name: k,
                model_url: &m.url,
            })
            .collect();
        let more = ready.next().is_some();
        let next_page_token = match models.last() {
            Some(last) if more => Some(encode_token(last.model_name)),
            _ => None,
        };
        // Serialising strings and a vector into memory cannot fail.
        serde_json::to_vec(&Page {
            models,
            next_page_token,
        })
        .unwrap_or_default()
    }

    /// Resolve `url` to a directory inside the model root and count its
    /// artifact bytes (blocking).
    pub(super) fn resolve(&self, url: &str) -> Result<(PathBuf, u64), MmeError> {
        let dir = match std::fs::canonicalize(url) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(MmeError::new(
                    StatusCode::NOT_FOUND,
                    "model_dir_not_found",
                    format!("no model directory at {url:?}"),
                ))
            }
            Err(e) => return Err(MmeError::bad(format!("cannot open {url:?}: {e}"))),
        };
        let inside = std::fs::canonicalize(&self.root).is_ok_and(|root| dir.starts_with(root));
        if !inside {
            return Err(MmeError::bad(format!(
                "url {url:?} is outside the model root {} (MMP_MME_MODEL_ROOT)",
                self.root.display()
            )));
        }
        if !dir.is_dir() {
            return Err(MmeError::bad(format!("url {url:?} is not a directory")));
        }
        let bytes = artifact_bytes(&dir)
            .map_err(|e| MmeError::bad(format!("cannot read {}: {e}", dir.display())))?;
        Ok((dir, bytes))
    }
}

pub(super) fn already(name: &str) -> MmeError {
    MmeError::new(
        StatusCode::CONFLICT,
        "model_already_loaded",
        format!("model {name:?} is already loaded"),
    )
}

/// Total size of the regular files under `dir`, not following links to
/// directories (so a link cycle cannot loop).
fn artifact_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut files = 0usize;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                todo.push(entry.path());
                continue;
            }
            files += 1;
            if files > MAX_ARTIFACT_FILES {
                return Err(std::io::Error::other(format!(
                    "more than {MAX_ARTIFACT_FILES} files"
                )));
            }
            // A link to a file counts as the file; a dangling one as nothing.
            if let Ok(meta) = std::fs::metadata(entry.path()) {
                if meta.is_file() {
                    total += meta.len();
                }
            }
        }
    }
    Ok(total)
}

/// The memory budget: `configured` bytes, else 90% of the memory limit less
/// `used` (the process's resident memory at start).
pub fn budget(configured: Option<u64>, used: u64) -> Budget {
    if let Some(bytes) = configured {
        return Budget {
            bytes,
            source: "MMP_MME_MEMORY_BUDGET".into(),
        };
    }
    let (limit, source) = memory_limit(Path::new("/sys/fs/cgroup"), Path::new("/proc/meminfo"))
        .unwrap_or((u64::MAX, "no memory limit found".into()));
    Budget {
        bytes: (limit / 10 * 9).saturating_sub(used),
        source: format!("90% of {source} less {used} bytes in use at start"),
    }
}

/// The memory limit: cgroup v2 `memory.max`, else cgroup v1
/// `memory/memory.limit_in_bytes` (v1 writes a huge number for "none"), else
/// `MemTotal` in `meminfo`.
pub fn memory_limit(cgroup: &Path, meminfo: &Path) -> Option<(u64, String)> {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let v2 = cgroup.join("memory.max");
    if let Some(n) = read(&v2).and_then(|t| t.trim().parse::<u64>().ok()) {
        return Some((n, format!("the cgroup limit {n} ({})", v2.display())));
    }
    let v1 = cgroup.join("memory/memory.limit_in_bytes");
    if let Some(n) = read(&v1).and_then(|t| t.trim().parse::<u64>().ok()) {
        if n < 1 << 60 {
            return Some((n, format!("the cgroup limit {n} ({})", v1.display())));
        }
    }
    let text = read(meminfo)?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((kib * 1024, format!("MemTotal {} bytes", kib * 1024)))
}

/// Resident memory of this process, bytes (0 if /proc cannot tell).
pub fn resident_bytes() -> u64 {
    // statm: size resident shared ... in pages; pages are 4 KiB on the
    // platforms SageMaker runs (x86_64, aarch64 with 4 KiB pages).
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limit_reads_cgroup_v2_then_v1_then_meminfo() {
        let dir = tempfile::tempdir().unwrap();
        let meminfo = dir.path().join("meminfo");
        std::fs::write(&meminfo, "MemTotal:        2048 kB\nMemFree: 1 kB\n").unwrap();
        assert_eq!(memory_limit(dir.path(), &meminfo).unwrap().0, 2048 * 1024);
        std::fs::create_dir(dir.path().join("memory")).unwrap();
        // v1 without a limit writes 2^63 rounded to pages.
        std::fs::write(
            dir.path().join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        assert_eq!(memory_limit(dir.path(), &meminfo).unwrap().0, 2048 * 1024);
        std::fs::write(dir.path().join("memory/memory.limit_in_bytes"), "1000000\n").unwrap();
        assert_eq!(memory_limit(dir.path(), &meminfo).unwrap().0, 1_000_000);
        // v2 "max" is no limit: v1's number stands.
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(memory_limit(dir.path(), &meminfo).unwrap().0, 1_000_000);
        std::fs::write(dir.path().join("memory.max"), "536870912\n").unwrap();
        let (n, source) = memory_limit(dir.path(), &meminfo).unwrap();
        assert_eq!(n, 536_870_912);
        assert!(source.contains("memory.max"), "{source}");
    }

    #[test]
    fn budget_is_configured_or_ninety_percent_of_the_limit() {
        let b = budget(Some(12345), 999);
        assert_eq!(b.bytes, 12345);
        assert_eq!(b.source, "MMP_MME_MEMORY_BUDGET");
        let b = budget(None, 0);
        let (limit, _) = memory_limit(Path::new("/sys/fs/cgroup"), Path::new("/proc/meminfo"))
            .unwrap_or((u64::MAX, String::new()));
        assert_eq!(b.bytes, limit / 10 * 9);
    }

    #[test]
    fn artifact_bytes_counts_files_and_does_not_loop_on_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 23]).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("sub/loop")).unwrap();
        assert_eq!(artifact_bytes(dir.path()).unwrap(), 123);
    }
}
