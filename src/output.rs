//! Output files written all-or-nothing where that is possible, and written
//! through where it is not.
//!
//! Every command that writes a named output (`score -o`, `transform`'s
//! `.out` files, `train`'s `model.json`) goes through [`Output`]:
//!
//! - a **regular file**, or a path that does not exist yet, is written to a
//!   hidden temporary file in the same folder (`tempfile`'s
//!   `NamedTempFile`) and renamed over the target only on [`Output::commit`],
//!   so a reader never sees half an output and a failure leaves the old
//!   file (or nothing) in place;
//! - a **symlink** is followed to its target (the link stays a link), and the
//!   rule is applied to the target;
//! - **anything else** (a character device such as `/dev/null`, a FIFO, a
//!   socket) is opened and written through, and `/dev/stdout` (a link into
//!   `/proc/self/fd`) is written through a duplicate of the descriptor:
//!   renaming over it would replace the device or the
//!   pipe with a regular file (run as root, as in a container, nothing
//!   stops that). Such an output cannot be taken back, so a failed run
//!   leaves what it had written.
//!
//! A temporary file is also removed when a stop signal ends the command
//! ([`remove_unfinished`], called by [`crate::stop`]): `NamedTempFile`
//! removes its file when dropped, and a process that exits on a signal
//! drops nothing, so Ctrl-C would leave a hidden `.NAME.XXXXXX.tmp` beside
//! every output in progress.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tempfile::NamedTempFile;

/// Links followed before giving up, as Linux's own limit (`ELOOP`).
const MAX_LINKS: usize = 40;

/// The temporary files being written, for [`remove_unfinished`].
struct Unfinished {
    /// Set by [`remove_unfinished`]: a file made after it is removed at once.
    closed: bool,
    paths: std::collections::BTreeSet<PathBuf>,
}

static UNFINISHED: Mutex<Unfinished> = Mutex::new(Unfinished {
    closed: false,
    paths: std::collections::BTreeSet::new(),
});

fn unfinished() -> MutexGuard<'static, Unfinished> {
    // A panic elsewhere leaves the set as consistent as it was.
    UNFINISHED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A temporary file's entry in the set of unfinished ones, taken out when
/// the file is renamed into place or removed (dropped after the file).
#[derive(Debug)]
struct Tracked(PathBuf);

impl Tracked {
    fn new(path: &Path) -> Tracked {
        let mut set = unfinished();
        if set.closed {
            // The command is stopping: this file will never be finished.
            let _ = fs::remove_file(path);
        } else {
            set.paths.insert(path.to_path_buf());
        }
        Tracked(path.to_path_buf())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        unfinished().paths.remove(&self.0);
    }
}

/// Remove every temporary file not yet renamed into place, and any made
/// from now on: the command is being stopped by a signal and exits next.
/// Targets already committed stay.
pub fn remove_unfinished() {
    let mut set = unfinished();
    set.closed = true;
    for path in &set.paths {
        let _ = fs::remove_file(path);
    }
}

/// Where the bytes go.
#[derive(Debug)]
enum Sink {
    /// A temporary file, renamed over the target on commit. `tracked` is
    /// dropped after `tmp` (fields drop in order), so the file is gone
    /// before its entry.
    Atomic {
        tmp: NamedTempFile,
        target: PathBuf,
        tracked: Tracked,
    },
    /// The target itself, opened for writing.
    Direct(File),
}

/// One output being written; dropped without [`commit`](Output::commit), an
/// atomic output leaves nothing behind.
#[derive(Debug)]
pub struct Output {
    sink: Sink,
}

impl Output {
    /// Open `path` for writing under the rule in the module docs.
    pub fn create(path: &Path) -> io::Result<Output> {
        let sink = match resolve(path)? {
            Resolved::Regular { target, existing } => {
                let dir = match target.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                let mut prefix = std::ffi::OsString::from(".");
                prefix.push(target.file_name().unwrap_or(target.as_os_str()));
                prefix.push(".");
                // 0o666 less the umask, as `File::create` (NamedTempFile's own
                // default is 0o600, which would narrow every output).
                #[cfg(unix)]
                let perms = {
                    use std::os::unix::fs::PermissionsExt;
                    fs::Permissions::from_mode(0o666)
                };
                #[cfg(not(unix))]
                let perms = fs::metadata(dir)?.permissions();
                let tmp = tempfile::Builder::new()
                    .prefix(&prefix)
                    .suffix(".tmp")
                    .permissions(perms)
                    .tempfile_in(dir)?;
                // Replacing a file keeps its mode, as a shell's `>` does.
                if let Some(meta) = existing {
                    tmp.as_file().set_permissions(meta.permissions())?;
                }
                let tracked = Tracked::new(tmp.path());
                Sink::Atomic {
                    tmp,
                    target,
                    tracked,
                }
            }
            // Appending: a device or FIFO ignores the mode, and a file
            // behind another process's `/proc/PID/fd/N` is added to, not
            // cut back to nothing.
            Resolved::Special(p) => Sink::Direct(OpenOptions::new().append(true).open(p)?),
            Resolved::Descriptor(fd) => {
                // SAFETY: `fd` is open in this process (it is listed in
                // its /proc/PID/fd just now) and only borrowed long enough
                // to duplicate it; the duplicate is ours.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                Sink::Direct(File::from(fd.try_clone_to_owned()?))
            }
        };
        Ok(Output { sink })
    }

    /// Whether the bytes reach the target only on commit.
    pub fn is_atomic(&self) -> bool {
        matches!(self.sink, Sink::Atomic { .. })
    }

    /// The file written now (the temporary one, or the target itself).
    pub fn file(&mut self) -> &mut File {
        match &mut self.sink {
            Sink::Atomic { tmp, .. } => tmp.as_file_mut(),
            Sink::Direct(f) => f,
        }
    }

    /// Forget everything written so far (a retried request rewrites it).
    /// Only an atomic output can be rewound; a device or pipe cannot.
    pub fn reset(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Atomic { tmp, .. } => {
                let f = tmp.as_file_mut();
                f.set_len(0)?;
                f.rewind()?;
                Ok(())
            }
            Sink::Direct(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "cannot take back output already written to a device, pipe or socket",
            )),
        }
    }

    /// Everything is written: sync a temporary file and rename it over the
    /// target (so even a power loss leaves either the old file or the whole
    /// new one).
    pub fn commit(self) -> io::Result<()> {
        self.finish(true)
    }

    /// As [`commit`](Output::commit), without waiting for the disk: other
    /// processes still see all or nothing, but a power loss may leave an
    /// empty file. For jobs of many small outputs that are rerun whole after
    /// a crash (`mmp transform`: 300 two-record files took 0.17 s with a
    /// sync each, 0.06 s without).
    pub fn commit_unsynced(self) -> io::Result<()> {
        self.finish(false)
    }

    fn finish(self, sync: bool) -> io::Result<()> {
        match self.sink {
            Sink::Atomic {
                tmp,
                target,
                tracked,
            } => {
                if sync {
                    tmp.as_file().sync_all()?;
                }
                tmp.persist(&target).map_err(|e| e.error)?;
                drop(tracked);
                Ok(())
            }
            Sink::Direct(mut f) => f.flush(),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.file().write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

/// What a path names once its symlinks are followed.
enum Resolved {
    /// A regular file (its metadata) or nothing yet, at `target`.
    Regular {
        target: PathBuf,
        existing: Option<fs::Metadata>,
    },
    /// Anything else, opened through this path.
    Special(PathBuf),
    /// One of this process's descriptors (`/dev/stdout`): written through
    /// a duplicate of it, so the output shares its offset with whoever
    /// else writes there (`{ echo a; mmp score -o /dev/stdout; echo b; } >
    /// f` keeps all three in order; opening the path anew would give the
    /// file a second offset, and `b` would overwrite the predictions).
    Descriptor(std::os::fd::RawFd),
}

/// Follow the last component's symlinks by hand (rather than
/// `fs::canonicalize`, which fails on a dangling link and on `/proc`'s
/// `pipe:[N]` links) and say what is at the end.
fn resolve(path: &Path) -> io::Result<Resolved> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Resolved::Regular {
                    target: p,
                    existing: None,
                })
            }
            Err(e) => return Err(e),
        };
        let kind = meta.file_type();
        if kind.is_file() {
            return Ok(Resolved::Regular {
                target: p,
                existing: Some(meta),
            });
        }
        if !kind.is_symlink() {
            return Ok(Resolved::Special(p));
        }
        // `/dev/stdout` → `/proc/self/fd/1`: a descriptor, not a name; its
        // "target" may be `pipe:[N]`, or a file the shell opened (perhaps
        // for appending), which must be written through the descriptor.
        if in_proc(&p) {
            if let Some(fd) = own_descriptor(&p) {
                return Ok(Resolved::Descriptor(fd));
            }
            return Ok(Resolved::Special(path.to_path_buf()));
        }
        let link = fs::read_link(&p)?;
        p = match p.parent() {
            Some(dir) if link.is_relative() => dir.join(link),
            _ => link,
        };
    }
    Err(io::Error::other(format!(
        "{}: more than {MAX_LINKS} levels of symbolic links",
        path.display()
    )))
}

/// The descriptor a link in this process's own `/proc/PID/fd` names
/// (`/dev/stdout`, `/dev/fd/3`, `/proc/self/fd/1`).
fn own_descriptor(p: &Path) -> Option<std::os::fd::RawFd> {
    let fd = p.file_name()?.to_str()?.parse().ok()?;
    let dir = fs::canonicalize(p.parent()?).ok()?;
    let own = Path::new("/proc")
        .join(std::process::id().to_string())
        .join("fd");
    (dir == own).then_some(fd)
}

/// Whether the link `p` lives on `/proc` (`/proc/self/fd/1`, or `/dev/fd/1`
/// through the `/dev/fd` → `/proc/self/fd` link).
fn in_proc(p: &Path) -> bool {
    p.parent()
        .and_then(|d| {
            fs::canonicalize(if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            })
            .ok()
        })
        .is_some_and(|d| d.starts_with("/proc"))
}

/// Write `bytes` to `path` under the rule in the module docs.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut out = Output::create(path)?;
    out.write_all(bytes)?;
    out.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_file_appears_only_on_commit_and_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        fs::write(&path, b"old\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let mut out = Output::create(&path).unwrap();
        assert!(out.is_atomic());
        out.write_all(b"new\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"old\n", "not before commit");
        out.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.csv"], "no temporary file left");
    }

    #[test]
    fn dropped_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut out = Output::create(&path).unwrap();
        out.write_all(b"partial").unwrap();
        drop(out);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn dangling_symlink_creates_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.out");
        let link = dir.path().join("link.out");
        std::os::unix::fs::symlink("real.out", &link).unwrap();
        write(&link, b"x\n").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"x\n");
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        let err = Output::create(&a).unwrap_err();
        assert!(
            err.to_string().contains("levels of symbolic links"),
            "{err}"
        );
    }
}
