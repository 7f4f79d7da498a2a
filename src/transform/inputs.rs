//! The files of a job: `--input` is one file, or a folder whose every file,
//! recursively, is an input, as every object under an S3 prefix is
//! (docs/contract.md §3: one output per input object, "in the
//! corresponding sub-path").

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// One input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its path below the input folder (its name, for a single file): the
    /// output is `<output>/<rel>.out`.
    pub rel: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// The input files, sorted by relative path. Entries below `skip` (the
/// output folder, when it lies inside the input folder) are left out, so a
/// second run does not transform the first run's outputs.
pub fn list(input: &Path, skip: &Path) -> Result<Vec<InputFile>> {
    let meta = std::fs::metadata(input)
        .map_err(|e| Error::io(format!("cannot read --input {}", input.display()), e))?;
    if meta.is_file() {
        let rel = PathBuf::from(input.file_name().unwrap_or(input.as_os_str()));
        return Ok(vec![InputFile {
            path: input.to_path_buf(),
            rel,
            size: meta.len(),
        }]);
    }
    let skip = std::fs::canonicalize(skip).ok();
    if skip.is_some() && skip == std::fs::canonicalize(input).ok() {
        return Err(Error::config(format!(
            "--output {} is the --input folder: the .out files would lie among the inputs, and the next run would transform them; give another folder (one inside --input is skipped)",
            input.display()
        )));
    }
    let mut files = Vec::new();
    walk(input, Path::new(""), skip.as_deref(), &mut files)?;
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    if files.is_empty() {
        return Err(Error::new(ErrorKind::NoInput(format!(
            "{} holds no files",
            input.display()
        ))));
    }
    Ok(files)
}

/// The files a manifest lists (API reference, `S3DataSource`,
/// `S3DataType=ManifestFile`): a JSON array whose first element is
/// `{"prefix": "s3://bucket/path/"}` and whose others are keys relative to
/// it. Here the prefix names a local folder: `s3://bucket/path/` is
/// `bucket/path/` below the manifest's own folder, and any other prefix is
/// a path (relative to the manifest's folder). Each output is `<key>.out`
/// under the output folder, as the service names it.
pub fn manifest(path: &Path) -> Result<Vec<InputFile>> {
    let bad = |why: String| Error::config(format!("--manifest {}: {why}", path.display()));
    let text = std::fs::read(path)
        .map_err(|e| Error::io(format!("cannot read --manifest {}", path.display()), e))?;
    let entries: Vec<serde_json::Value> =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not a JSON array: {e}")))?;
    let prefix = entries
        .first()
        .and_then(|p| p.get("prefix"))
        .and_then(|p| p.as_str())
        .ok_or_else(|| {
            bad(r#"the first element must be {"prefix": "s3://bucket/path/"}"#.into())
        })?;
    let here = path.parent().unwrap_or(Path::new(""));
    let root = here.join(prefix.strip_prefix("s3://").unwrap_or(prefix));
    let mut files = Vec::new();
    for (i, key) in entries.iter().enumerate().skip(1) {
        let rel = key
            .as_str()
            .map(PathBuf::from)
            .filter(|k| {
                k.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            })
            .ok_or_else(|| bad(format!("element {i} ({key}) is not a relative key")))?;
        let file = root.join(&rel);
        let meta = std::fs::metadata(&file).map_err(|e| {
            Error::io(
                format!("manifest element {i}: cannot read {}", file.display()),
                e,
            )
        })?;
        files.push(InputFile {
            path: file,
            rel,
            size: meta.len(),
        });
    }
    if files.is_empty() {
        return Err(Error::new(ErrorKind::NoInput(format!(
            "{} lists no keys",
            path.display()
        ))));
    }
    Ok(files)
}

fn walk(dir: &Path, rel: &Path, skip: Option<&Path>, out: &mut Vec<InputFile>) -> Result<()> {
    if skip.is_some_and(|s| std::fs::canonicalize(dir).is_ok_and(|d| d == s)) {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
        let path = entry.path();
        let rel = rel.join(entry.file_name());
        // Follow symlinks to files; do not follow them into folders (a loop
        // would never end).
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        let meta = std::fs::metadata(&path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if meta.is_dir() {
            if !is_link {
                walk(&path, &rel, skip, out)?;
            }
        } else if meta.is_file() {
            out.push(InputFile {
                path,
                rel,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_keeping_sub_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("in/a/b")).unwrap();
        std::fs::create_dir_all(root.join("in/out")).unwrap();
        std::fs::write(root.join("in/z.csv"), "1").unwrap();
        std::fs::write(root.join("in/a/b/c.csv"), "12").unwrap();
        std::fs::write(root.join("in/out/old.csv.out"), "x").unwrap();
        let files = list(&root.join("in"), &root.join("in/out")).unwrap();
        let rels: Vec<_> = files.iter().map(|f| f.rel.to_str().unwrap()).collect();
        assert_eq!(rels, ["a/b/c.csv", "z.csv"]);
        assert_eq!(files[0].size, 2);

        let one = list(&root.join("in/z.csv"), root).unwrap();
        assert_eq!(one[0].rel, PathBuf::from("z.csv"));

        std::fs::create_dir_all(root.join("empty")).unwrap();
        let e = list(&root.join("empty"), root).unwrap_err();
        assert_eq!(e.exit_code(), 66);
        assert!(list(&root.join("missing"), root).is_err());
    }

    #[test]
    fn manifests_list_keys_below_their_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("bucket/in/sub")).unwrap();
        std::fs::write(root.join("bucket/in/a.csv"), "1").unwrap();
        std::fs::write(root.join("bucket/in/sub/b.csv"), "22").unwrap();
        let m = root.join("job.manifest");
        std::fs::write(
            &m,
            r#"[{"prefix": "s3://bucket/in/"}, "sub/b.csv", "a.csv"]"#,
        )
        .unwrap();
        let files = manifest(&m).unwrap();
        let got: Vec<_> = files
            .iter()
            .map(|f| (f.rel.to_str().unwrap(), f.size))
            .collect();
        assert_eq!(got, [("sub/b.csv", 2), ("a.csv", 1)]);
        for (text, code) in [
            (r#"["a.csv"]"#, 64),
            (r#"[{"prefix": "s3://bucket/in/"}, "../x"]"#, 64),
            (r#"[{"prefix": "s3://bucket/in/"}, "gone.csv"]"#, 74),
            (r#"[{"prefix": "s3://bucket/in/"}]"#, 66),
        ] {
            std::fs::write(&m, text).unwrap();
            assert_eq!(manifest(&m).unwrap_err().exit_code(), code, "{text}");
        }
    }
}
