//! Output files: `<input>.out` under the output folder, written under a
//! temporary name and renamed only when the whole input succeeded, so a
//! failed file leaves nothing behind (SageMaker aborts the multipart upload
//! of a failed object: API reference, `TransformOutput`). Only a regular
//! file (or a new one) is written that way: an existing device or FIFO at
//! the output's path is written through.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use crate::score::tmp_path;

use crate::error::{Error, Result};

/// Output buffer per file: small outputs (one record's answer) are
/// gathered; a mini-batch's output, larger than this, is written straight
/// through without a copy into the buffer.
const WRITE_BUF: usize = 64 * 1024;

/// `DIR/<rel>.out`: the input's sub-path kept, as S3 keys are
/// (`a/b.csv` → `DIR/a/b.csv.out`).
pub fn out_path(dir: &Path, rel: &Path) -> PathBuf {
    let mut name = rel.as_os_str().to_owned();
    name.push(".out");
    dir.join(name)
}

/// One output file being written.
#[derive(Debug)]
pub struct FileOutput {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    written: u64,
}

impl FileOutput {
    /// Start writing `path` (its folders are made; the data goes to a hidden
    /// temporary file beside it).
    pub fn create(path: PathBuf) -> Result<FileOutput> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let special = std::fs::metadata(&path).is_ok_and(|m| !m.is_file());
        let tmp = if special {
            PathBuf::new()
        } else {
            tmp_path(&path)
        };
        let target = if special { &path } else { &tmp };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(!special)
            .truncate(!special)
            .open(target)
            .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
        Ok(FileOutput {
            path,
            tmp,
            file: Some(BufWriter::with_capacity(WRITE_BUF, file)),
            written: 0,
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Append bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_all(bytes)
            .map_err(|e| Error::io(format!("writing {}", self.tmp.display()), e))
    }

    /// Forget everything written (a streamed request is being retried).
    pub fn reset(&mut self) -> Result<()> {
        if self.tmp.as_os_str().is_empty() && self.written > 0 {
            let why =
                std::io::Error::other("not a regular file: what was written cannot be taken back");
            return Err(Error::io(
                format!("retrying into {}", self.path.display()),
                why,
            ));
        }
        if self.tmp.as_os_str().is_empty() {
            return Ok(());
        }
        let err = |e| Error::io(format!("truncating {}", self.tmp.display()), e);
        if let Some(f) = self.file.as_mut() {
            f.flush().map_err(err)?;
            let file = f.get_mut();
            file.set_len(0).map_err(err)?;
            file.rewind().map_err(err)?;
        }
        self.written = 0;
        Ok(())
    }

    /// The whole input succeeded: move the file into place.
    pub fn commit(mut self) -> Result<u64> {
        if let Some(mut f) = self.file.take() {
            f.flush()
                .map_err(|e| Error::io(format!("writing {}", self.tmp.display()), e))?;
        }
        if !self.tmp.as_os_str().is_empty() {
            std::fs::rename(&self.tmp, &self.path)
                .map_err(|e| Error::io(format!("renaming to {}", self.path.display()), e))?;
        }
        self.tmp = PathBuf::new();
        Ok(self.written)
    }
}

impl Write for FileOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("output already closed"))?;
        let n = f.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for FileOutput {
    /// Not committed: the input failed, so its partial output goes.
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.file.take();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = out_path(dir.path(), Path::new("a/b.csv"));
        assert_eq!(path, dir.path().join("a/b.csv.out"));
        let mut out = FileOutput::create(path.clone()).unwrap();
        out.write(b"x\n").unwrap();
        out.reset().unwrap();
        out.write(b"y\n").unwrap();
        assert!(!path.exists());
        assert_eq!(out.commit().unwrap(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), b"y\n");

        let failed = out_path(dir.path(), Path::new("c.csv"));
        let mut out = FileOutput::create(failed.clone()).unwrap();
        out.write(b"partial").unwrap();
        drop(out);
        assert!(!failed.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only a/ remains: {left:?}");
    }

    #[test]
    fn a_device_is_written_through() {
        use std::os::unix::fs::FileTypeExt;
        let mut out = FileOutput::create(PathBuf::from("/dev/null")).unwrap();
        out.write(b"x\n").unwrap();
        out.reset().unwrap_err();
        assert_eq!(out.commit().unwrap(), 2);
        let meta = std::fs::metadata("/dev/null").unwrap();
        assert!(
            meta.file_type().is_char_device(),
            "not replaced by a rename"
        );
    }
}
