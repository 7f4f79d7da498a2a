//! Per-host sufficient statistics: what a `ShardedByS3Key` host writes
//! instead of a model, and how a model directory of them becomes one.
//!
//! The fit is a function of a few sums (see [`super::fit`]): the record
//! count, the means of the features and the label, and their centred
//! co-moments. Sums of disjoint shards combine exactly (Chan et al.'s
//! pairwise update, [`Moments::merge`]), so the fit over the union of the
//! shards is the fit over all the data, whatever the split. Each host writes
//! `stats-<host>.json`:
//!
//! ```json
//! {"format": "mmp-linear-stats/1", "host": "algo-2", "hosts": ["algo-1", "algo-2"],
//!  "l2": 0.0, "features": 2, "count": 1000,
//!  "mean": [x̄₁, x̄₂, ȳ], "comoment": [C₁₁, C₁₂, C₁y, C₂₂, C₂y, Cyy]}
//! ```
//!
//! (`comoment`: the upper triangle of the (D+1)² matrix, row by row; an
//! empty shard writes `"features": null, "count": 0` and no sums). The
//! names differ per host, so SageMaker's merge of the hosts' model
//! directories cannot clash, and [`combine`] (called by
//! [`crate::predictor::load`], hence by `serve`, `score` and `transform`)
//! checks that the files are one complete set from one job before it
//! merges them in host order and solves. serde_json writes the shortest text
//! that reads back as the same `f64`, so the numbers survive the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fit::Moments;
use crate::error::{Error, ErrorKind};

/// The `format` of the files this version writes and reads.
pub const FORMAT: &str = "mmp-linear-stats/1";

const PREFIX: &str = "stats-";
const SUFFIX: &str = ".json";

/// One host's statistics file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsFile {
    format: String,
    /// The host that wrote it; also in the file's name.
    host: String,
    /// Every host of the job, sorted: the set of files a model needs.
    hosts: Vec<String>,
    /// The L2 penalty the job was trained with.
    l2: f64,
    /// D; `null` for an empty shard, which cannot know it.
    features: Option<usize>,
    count: u64,
    mean: Vec<f64>,
    comoment: Vec<f64>,
}

/// `stats-<host>.json`.
pub fn file_name(host: &str) -> String {
    format!("{PREFIX}{host}{SUFFIX}")
}

/// Whether `host` can be put in a file name as it is: SageMaker's names
/// are `algo-1`, `algo-2`, ...
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The host a statistics file's name is for.
pub fn host_of(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    let host = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    valid_host(host).then_some(host)
}

/// The statistics files in `dir`, sorted by name; none if `dir` cannot be
/// listed (the caller then reports the missing model.json).
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| host_of(p).is_some())
        .collect();
    files.sort();
    files
}

/// Write `host`'s statistics into `dir` atomically (a temporary file
/// renamed into place); returns the file's path. `None`: the shard had no
/// records (count 0, no features), which still counts as that host's file.
pub fn save(
    dir: &Path,
    host: &str,
    hosts: &[String],
    l2: f64,
    moments: Option<&Moments>,
) -> Result<PathBuf, Error> {
    let file = StatsFile {
        format: FORMAT.into(),
        host: host.into(),
        hosts: hosts.to_vec(),
        l2,
        features: moments.map(Moments::features),
        count: moments.map_or(0, Moments::count),
        mean: moments.map_or_else(Vec::new, |m| m.mean().to_vec()),
        comoment: moments.map_or_else(Vec::new, |m| m.comoment().to_vec()),
    };
    let path = dir.join(file_name(host));
    let tmp = dir.join(format!(".{}.tmp", file_name(host)));
    let mut text = serde_json::to_vec(&file).map_err(|e| Error::config(e.to_string()))?;
    text.push(b'\n');
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(format!("writing {}", path.display()), e)
        })?;
    Ok(path)
}

fn load_error(path: &Path, reason: String) -> Error {
    Error::new(ErrorKind::ModelLoad {
        path: path.display().to_string(),
        reason,
    })
}

/// The name of a file, for messages.
fn name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Read one file, checking it is self-consistent; its sums are `None` for
/// an empty shard.
fn read(path: &Path) -> Result<(StatsFile, Option<Moments>), Error> {
    let fail = |reason: String| load_error(path, reason);
    let text = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut file: StatsFile = serde_json::from_slice(&text).map_err(|e| fail(e.to_string()))?;
    if file.format != FORMAT {
        return Err(fail(format!(
            "\"format\" is {:?}; this version reads {FORMAT:?}",
            file.format
        )));
    }
    if host_of(path) != Some(file.host.as_str()) {
        // A copied or renamed file would count a shard twice.
        return Err(fail(format!(
            "the file is named for another host than the one that wrote it ({:?})",
            file.host
        )));
    }
    if !(file.l2.is_finite() && file.l2 >= 0.0) {
        return Err(fail(format!(
            "\"l2\" is {}, not a finite number >= 0",
            file.l2
        )));
    }
    let mean = std::mem::take(&mut file.mean);
    let comoment = std::mem::take(&mut file.comoment);
    match (file.count, file.features) {
        (0, None) if mean.is_empty() && comoment.is_empty() => Ok((file, None)),
        (0, _) => Err(fail(
            "\"count\" is 0, but the file has sums (an empty shard has \"features\": null and no sums)"
                .into(),
        )),
        (n, None) => Err(fail(format!("\"features\" is null, but \"count\" is {n}"))),
        (n, Some(d)) => {
            let moments = Moments::from_parts(d, n, mean, comoment).map_err(fail)?;
            Ok((file, Some(moments)))
        }
    }
}

/// Load the model that the statistics `files` (all in `dir`, from
/// [`files_in`]) describe together: check they are one complete set from
/// one job, merge them in host order, and `solve` the merged sums with the
/// job's `l2` (the regressor's [`Moments::solve`], named by the caller so
/// that this file stays apart from the model type).
pub fn combine<M>(
    dir: &Path,
    files: &[PathBuf],
    solve: impl FnOnce(&Moments, f64) -> Result<M, String>,
) -> Result<M, Error> {
    let fail = |reason: String| load_error(dir, reason);
    let mut read_files = Vec::with_capacity(files.len());
    for path in files {
        read_files.push(read(path)?);
    }
    let Some(((first, _), first_path)) = read_files.first().zip(files.first()) else {
        return Err(fail("no statistics files".into()));
    };
    let mismatch = |a: &Path, theirs: String, b: &Path, ours: String| {
        fail(format!(
            "the statistics files are not from one job: {} has {theirs}, but {} has {ours}; \
             every host of one ShardedByS3Key job writes the same, so these come from different runs \
             (remove the stale files)",
            name(a),
            name(b)
        ))
    };
    for ((file, _), path) in read_files.iter().zip(files).skip(1) {
        if file.hosts != first.hosts {
            let list = |h: &[String]| format!("hosts [{}]", h.join(", "));
            return Err(mismatch(
                first_path,
                list(&first.hosts),
                path,
                list(&file.hosts),
            ));
        }
        if file.l2.to_bits() != first.l2.to_bits() {
            let l2 = |v: f64| format!("l2 = {v}");
            return Err(mismatch(first_path, l2(first.l2), path, l2(file.l2)));
        }
    }
    let present: Vec<&str> = read_files.iter().map(|(f, _)| f.host.as_str()).collect();
    let missing: Vec<String> = first
        .hosts
        .iter()
        .filter(|h| !present.contains(&h.as_str()))
        .map(|h| file_name(h))
        .collect();
    if let Some(stray) = present
        .iter()
        .find(|h| !first.hosts.iter().any(|x| x == *h))
    {
        return Err(fail(format!(
            "{} is from host {stray:?}, which is not one of the job's hosts ({})",
            file_name(stray),
            first.hosts.join(", ")
        )));
    }
    if !missing.is_empty() {
        return Err(fail(format!(
            "missing {}: the job had hosts {}, and the model needs every host's shard (found {})",
            missing.join(", "),
            first.hosts.join(", "),
            files.iter().map(|p| name(p)).collect::<Vec<_>>().join(", ")
        )));
    }
    // The feature counts of the shards that had records (an empty one
    // cannot know D) must agree.
    let mut with_records = read_files
        .iter()
        .zip(files)
        .filter_map(|((f, m), p)| Some((f.features?, m.as_ref()?, p)));
    let Some((features, _, with_d)) = with_records.next() else {
        return Err(fail(format!(
            "every host's shard was empty ({}): there are no records to fit",
            files.iter().map(|p| name(p)).collect::<Vec<_>>().join(", ")
        )));
    };
    if let Some((d, _, path)) = with_records.find(|(d, _, _)| *d != features) {
        let n = |d: usize| format!("{d} features");
        return Err(mismatch(with_d, n(features), path, n(d)));
    }
    let l2 = first.l2;
    let mut total = Moments::new(features);
    // `files` is sorted by name, so the merge order is fixed.
    for moments in read_files.iter().filter_map(|(_, m)| m.as_ref()) {
        total.merge(moments);
    }
    solve(&total, l2).map_err(|reason| {
        fail(format!(
            "the combined statistics of {} hosts ({} records) cannot be solved: {reason}",
            files.len(),
            total.count()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_the_host() {
        assert_eq!(file_name("algo-2"), "stats-algo-2.json");
        assert_eq!(host_of(Path::new("/m/stats-algo-2.json")), Some("algo-2"));
        for not in [
            "/m/model.json",
            "/m/.stats-algo-2.json.tmp",
            "/m/stats-.json",
            "/m/stats-a",
        ] {
            assert_eq!(host_of(Path::new(not)), None, "{not}");
        }
        assert!(valid_host("algo-10") && !valid_host("") && !valid_host("../x"));
    }

    #[test]
    fn counts_and_sums_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let write = |host: &str, body: &str| {
            let text = format!(
                r#"{{"format": "{FORMAT}", "host": "{host}", "hosts": ["algo-1", "algo-2"], "l2": 0, {body}}}"#
            );
            std::fs::write(dir.path().join(file_name(host)), text).unwrap();
        };
        let load = || {
            combine(dir.path(), &files_in(dir.path()), |m, l2| m.solve(l2))
                .map_err(|e| e.to_string())
                .map(|m| m.weights)
        };
        // One feature, y = 2x: the records (0, 0), (1, 2) and (2, 4).
        write(
            "algo-1",
            r#""features": 1, "count": 3, "mean": [1, 2], "comoment": [2, 4, 8]"#,
        );
        write(
            "algo-2",
            r#""features": null, "count": 0, "mean": [], "comoment": []"#,
        );
        let w = load().unwrap();
        assert!(w.len() == 1 && (w[0] - 2.0).abs() < 1e-15, "{w:?}");
        write(
            "algo-2",
            r#""features": 1, "count": 0, "mean": [0, 0], "comoment": [0, 0, 0]"#,
        );
        let e = load().unwrap_err();
        assert!(
            e.contains("stats-algo-2.json") && e.contains("\"count\" is 0, but"),
            "{e}"
        );
        write(
            "algo-2",
            r#""features": null, "count": 4, "mean": [], "comoment": []"#,
        );
        assert!(load()
            .unwrap_err()
            .contains("\"features\" is null, but \"count\" is 4"));
        write(
            "algo-2",
            r#""features": 1, "count": 1, "mean": [1], "comoment": [0, 0, 0]"#,
        );
        assert!(load().unwrap_err().contains("\"mean\" has 1 values"));
        let path = dir.path().join(file_name("algo-1"));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace(FORMAT, "mmp-linear-stats/2")).unwrap();
        let e = load().unwrap_err();
        assert!(
            e.contains(
                "\"format\" is \"mmp-linear-stats/2\"; this version reads \"mmp-linear-stats/1\""
            ),
            "{e}"
        );
        std::fs::write(&path, br#"{"format": "mmp-linear-stats/1"}"#).unwrap();
        assert!(load().unwrap_err().contains("missing field"));
    }
}
