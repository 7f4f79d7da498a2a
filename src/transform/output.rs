//! Output files: `<input>.out` under the output folder, written under a
//! temporary name and renamed only when the whole input succeeded, so a
//! failed file leaves nothing behind (SageMaker aborts the multipart upload
//! of a failed object: API reference `TransformOutput`, AWS Developer
//! Guide *Batch transform errors*). A FIFO or device already at the path
//! is written through ([`crate::output`]).

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::output::Output;

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
    file: BufWriter<Output>,
    written: u64,
}

impl FileOutput {
    /// Start writing `path` (its folders are made). A regular file is
    /// written to a hidden temporary file beside it, and replaced only on
    /// commit; a device or FIFO is written through ([`crate::output`]).
    pub fn create(path: PathBuf) -> Result<FileOutput> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let out = Output::create(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(FileOutput {
            path,
            file: BufWriter::with_capacity(WRITE_BUF, out),
            written: 0,
        })
    }

    /// Append bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_all(bytes)
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }

    /// Forget everything written (a streamed request is being retried).
    pub fn reset(&mut self) -> Result<()> {
        let err = |e| Error::io(format!("truncating {}", self.path.display()), e);
        self.file.flush().map_err(err)?;
        self.file.get_mut().reset().map_err(err)?;
        self.written = 0;
        Ok(())
    }

    /// The whole input succeeded: move the file into place.
    pub fn commit(self) -> Result<u64> {
        let FileOutput {
            path,
            file,
            written,
        } = self;
        let err = |e| Error::io(format!("writing {}", path.display()), e);
        let out = file.into_inner().map_err(|e| err(e.into_error()))?;
        // As before this helper: no sync per file (see commit_unsynced).
        out.commit_unsynced().map_err(err)?;
        Ok(written)
    }
}

impl Write for FileOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

// Not committed: the input failed, and dropping the `Output` removes its
// temporary file (a device or FIFO keeps what it was sent).
