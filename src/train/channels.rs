//! Where a channel's data is and how to open it.
//!
//! * **File and FastFile mode**: every regular file under
//!   `input/data/<channel>/`, recursively, in a stable order (each
//!   directory's entries sorted by name, byte order, depth first, so `a/x`
//!   comes before `a.csv`). Hidden entries, whose name starts with `.`, are
//!   skipped with everything below them: they are never data, but tools leave
//!   them in S3 prefixes (`.DS_Store`, `._x` AppleDouble files,
//!   `.ipynb_checkpoints/`) and reading one would fail the job on a file the
//!   user never meant to train on. Symlinks to files are followed; symlinks
//!   to directories and non-regular files (FIFOs, sockets) are skipped, so a
//!   mount cannot send the walk in a loop or block it.
//! * **Pipe mode**: the FIFO `input/data/<channel>_<epoch>`, read to its
//!   end: the regressor's fit is a single pass (`_0`); a classifier's
//!   passes open `_0`, `_1`, ... in turn.
//!
//! Either way, a stream that starts with gzip's magic bytes is decompressed
//! on the fly (all members, as `cat a.gz b.gz` makes), whatever its name:
//! `.gz` files, and Pipe channels with `CompressionType: Gzip`.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::bufread::MultiGzDecoder;

use super::config::{ChannelConfig, InputMode};
use crate::error::Error;
use crate::media::{ContentType, Format};

/// Read size for compressed bytes; decompressed bytes are read 1 MiB at a
/// time by the caller.
const GZ_READ_BUF: usize = 256 * 1024;

/// A channel ready to be read.
#[derive(Clone, Debug)]
pub struct Channel {
    /// Its name (`training`, `validation`).
    pub name: String,
    /// How its data arrives.
    pub mode: InputMode,
    /// The `ContentType` of its configuration, parsed.
    pub content_type: Option<ContentType>,
}

impl Channel {
    /// Check a channel's configuration: a content type we can read, and no
    /// RecordIO wrapping.
    pub fn new(name: &str, config: &ChannelConfig) -> Result<Channel, Error> {
        let content_type = match config.content_type.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(ct) => {
                Some(ContentType::parse(ct).map_err(|e| Error::channel(name, e.to_string()))?)
            }
        };
        if let Some(w) = config.record_wrapper_type.as_deref() {
            if !w.eq_ignore_ascii_case("none") {
                return Err(Error::channel(
                    name,
                    format!("RecordWrapperType {w:?} is not supported: send unwrapped CSV or JSON lines records (RecordWrapperType None)"),
                ));
            }
        }
        Ok(Channel {
            name: name.to_string(),
            mode: config.training_input_mode,
            content_type,
        })
    }

    /// The format of one of the channel's files, and whether CSV has a
    /// header row: the channel's `ContentType` when set, else the file's
    /// extension (through `.gz`), else CSV.
    pub fn format_of(&self, path: &Path) -> (Format, bool) {
        match self.content_type {
            Some(ct) => (ct.format, ct.header.unwrap_or(false)),
            None => (Format::from_path(path).unwrap_or(Format::Csv), false),
        }
    }

    /// The files (File mode) or the FIFO (Pipe mode) to read, in order.
    /// An existing directory without data files is an error unless
    /// `allow_empty` (a host's shard of a `ShardedByS3Key` channel: with
    /// more instances than objects some host gets none).
    pub fn sources(&self, data_dir: &Path, allow_empty: bool) -> Result<Sources, Error> {
        self.sources_of_epoch(data_dir, allow_empty, 0)
    }

    /// The sources of pass `epoch` (from 0): in Pipe mode the FIFO
    /// `<channel>_<epoch>`, as SageMaker makes one per epoch; in File mode
    /// the same files every time.
    pub fn sources_of_epoch(
        &self,
        data_dir: &Path,
        allow_empty: bool,
        epoch: usize,
    ) -> Result<Sources, Error> {
        if self.mode == InputMode::Pipe {
            let fifo = data_dir.join(format!("{}_{epoch}", self.name));
            return Ok(Sources {
                files: vec![fifo],
                skipped: Vec::new(),
            });
        }
        let dir = data_dir.join(&self.name);
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::channel(
                    &self.name,
                    format!("{} is not a directory", dir.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::channel(
                    &self.name,
                    format!("its directory {} does not exist", dir.display()),
                ))
            }
            Err(e) => return Err(Error::io(format!("cannot read {}", dir.display()), e)),
        }
        let mut sources = Sources::default();
        walk(&dir, &mut sources)?;
        if sources.files.is_empty() && !allow_empty {
            return Err(Error::channel(
                &self.name,
                format!("no data files in {}", dir.display()),
            ));
        }
        Ok(sources)
    }
}

/// A channel's inputs.
#[derive(Debug, Default)]
pub struct Sources {
    /// Files to read, in order.
    pub files: Vec<PathBuf>,
    /// Entries left out (hidden, non-regular, symlinked directories).
    pub skipped: Vec<PathBuf>,
}

/// Collect the regular files under `dir`, depth first, sorted by name.
fn walk(dir: &Path, out: &mut Sources) -> Result<(), Error> {
    let cannot = |e| Error::io(format!("cannot list {}", dir.display()), e);
    let mut entries: Vec<(OsString, std::fs::DirEntry)> = std::fs::read_dir(dir)
        .map_err(cannot)?
        .map(|e| e.map(|e| (e.file_name(), e)))
        .collect::<Result<_, _>>()
        .map_err(cannot)?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, entry) in entries {
        let path = entry.path();
        if name.as_encoded_bytes().starts_with(b".") {
            out.skipped.push(path);
            continue;
        }
        let ty = entry.file_type().map_err(cannot)?;
        if ty.is_dir() {
            walk(&path, out)?;
        } else if ty.is_file()
            || (ty.is_symlink() && std::fs::metadata(&path).is_ok_and(|m| m.is_file()))
        {
            out.files.push(path);
        } else {
            out.skipped.push(path);
        }
    }
    Ok(())
}

/// Wait up to `limit` for `path` to exist: true once it does. SageMaker
/// creates epoch N + 1's FIFO once epoch N's is read ("may need retry until
/// it appears", docs/contract.md §4); AWS's own Pipe mode reader waits 120 s
/// for it (sagemaker-tensorflow-extensions, `RecordReader::WaitForFile`).
/// Says so once if it has to wait. Polls at growing intervals, up to 1 s:
/// a FIFO's creation sends no event a plain file system call could wait on
/// (inotify would, for 10 lines more than this loop and a new dependency).
pub fn wait_for(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    let mut said = false;
    loop {
        if std::fs::symlink_metadata(path).is_ok() {
            return true;
        }
        let waited = start.elapsed();
        if waited >= limit {
            return false;
        }
        if !said {
            println!(
                "mmp train: waiting up to {} s for the FIFO {}",
                limit.as_secs_f64(),
                path.display()
            );
            said = true;
        }
        std::thread::sleep(pause.min(limit - waited));
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Open a file or FIFO for reading, decompressing it if it is gzip.
///
/// Opening a FIFO blocks until SageMaker (or a test) opens its write end;
/// the caller runs this on a worker thread so a stop signal is still
/// handled.
pub fn open(path: &Path) -> Result<Box<dyn Read + Send>, Error> {
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    // Up to two bytes, fewer only at the end (`read_to_end` retries a read
    // a signal interrupts).
    let mut head = Vec::with_capacity(2);
    (&mut file)
        .take(2)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let gzip = head == [0x1f, 0x8b];
    let stream = Cursor::new(head).chain(file);
    if gzip {
        Ok(Box::new(MultiGzDecoder::new(BufReader::with_capacity(
            GZ_READ_BUF,
            stream,
        ))))
    } else {
        Ok(Box::new(stream))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn touch(path: &Path, text: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn file_channel(name: &str) -> Channel {
        Channel::new(name, &ChannelConfig::default()).unwrap()
    }

    #[test]
    fn walk_is_sorted_depth_first_and_skips_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let ch = dir.path().join("training");
        for p in [
            "b.csv",
            "a.csv",
            "a/x.csv",
            "a/.hidden/y.csv",
            ".DS_Store",
            "c/d/e.jsonl",
        ] {
            touch(&ch.join(p), b"1,2\n");
        }
        let s = file_channel("training").sources(dir.path(), false).unwrap();
        let rel: Vec<_> = s
            .files
            .iter()
            .map(|p| p.strip_prefix(&ch).unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(rel, ["a/x.csv", "a.csv", "b.csv", "c/d/e.jsonl"]);
        assert_eq!(s.skipped.len(), 2);
    }

    #[test]
    fn missing_and_empty_channels_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = file_channel("training")
            .sources(dir.path(), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("channel \"training\": its directory") && e.contains("does not exist"),
            "{e}"
        );
        std::fs::create_dir_all(dir.path().join("training/.x")).unwrap();
        let e = file_channel("training")
            .sources(dir.path(), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no data files"), "{e}");
        let none = file_channel("training").sources(dir.path(), true).unwrap();
        assert!(none.files.is_empty());
    }

    #[test]
    fn format_from_content_type_then_extension_then_csv() {
        let cfg = ChannelConfig {
            content_type: Some("text/csv; header=present; charset=utf-8".into()),
            ..ChannelConfig::default()
        };
        let ch = Channel::new("training", &cfg).unwrap();
        assert_eq!(ch.format_of(Path::new("x.jsonl")), (Format::Csv, true));
        let ch = file_channel("training");
        assert_eq!(
            ch.format_of(Path::new("x.jsonl.gz")),
            (Format::JsonLines, false)
        );
        assert_eq!(ch.format_of(Path::new("x.data")), (Format::Csv, false));
        let cfg = ChannelConfig {
            content_type: Some("image/png".into()),
            ..ChannelConfig::default()
        };
        let e = Channel::new("training", &cfg).unwrap_err().to_string();
        assert!(e.contains("unsupported content type \"image/png\""), "{e}");
        let cfg = ChannelConfig {
            record_wrapper_type: Some("RecordIO".into()),
            ..ChannelConfig::default()
        };
        assert!(Channel::new("training", &cfg).is_err());
    }

    #[test]
    fn gzip_is_detected_by_its_magic() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("data");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"1,2,3\n").unwrap();
        let mut bytes = enc.finish().unwrap();
        // A second member, as concatenated .gz files have.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"4,5,6\n").unwrap();
        bytes.extend(enc.finish().unwrap());
        std::fs::write(&gz, bytes).unwrap();
        let mut text = String::new();
        open(&gz).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "1,2,3\n4,5,6\n");
        for plain in [&b""[..], b"1", b"1,2\n"] {
            std::fs::write(&gz, plain).unwrap();
            let mut back = Vec::new();
            open(&gz).unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, plain);
        }
    }
}
