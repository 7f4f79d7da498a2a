//! Training on several instances: what each host writes to `model/`.
//!
//! SageMaker runs the same `train` on every host of a job and merges the
//! `model/` directories of all of them into one `model.tar.gz`; "if multiple
//! containers in a single training job write to this directory they should
//! ensure no file/directory names clash" (AWS DG, training output). The hosts
//! never talk to each other here, so what each writes depends only on its
//! place in `resourceconfig.json` and on how the `training` channel is
//! spread (`S3DistributionType` in `inputdataconfig.json`):
//!
//! * one host (or no `resourceconfig.json`, a local run): `model.json`;
//! * `FullyReplicated` (or absent) on N hosts: every host sees all the data
//!   and computes the same fit; only the first host (`hosts[0]`, SageMaker
//!   lists them sorted) writes `model.json`, the others write nothing and
//!   say so;
//! * `ShardedByS3Key` on N hosts: each host sees a disjoint part of the
//!   objects, so no single host can fit the model. Each writes the
//!   sufficient statistics of its shard to `stats-<host>.json` (see
//!   [`super::stats`]), and loading a model directory that holds them
//!   combines them into the fit over all the data.

use std::path::Path;

use super::config::{Distribution, ResourceConfig};
use super::stats;
use crate::error::{Error, ErrorKind};
use crate::predictor::MODEL_FILE;

/// What this host writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The only host: `model.json`.
    Single,
    /// `FullyReplicated` on several hosts; `writes` only on `hosts[0]`.
    Replicated {
        /// This host.
        host: String,
        /// The first host, the one that writes `model.json`.
        first: String,
        /// How many hosts the job has.
        count: usize,
    },
    /// `ShardedByS3Key` on several hosts: `stats-<host>.json`.
    Sharded {
        /// This host.
        host: String,
        /// Every host of the job, sorted.
        hosts: Vec<String>,
    },
}

impl Role {
    /// Decide from `resourceconfig.json` (`None`: absent) and the training
    /// channel's distribution. `file` names resourceconfig.json in errors.
    pub fn plan(
        rc: Option<&ResourceConfig>,
        training: Distribution,
        file: &Path,
    ) -> Result<Role, Error> {
        let Some(rc) = rc else {
            return Ok(Role::Single);
        };
        let bad = |reason: String| {
            Error::new(ErrorKind::ConfigFile {
                file: file.to_path_buf(),
                reason,
            })
        };
        let mut hosts = rc.hosts.clone();
        hosts.sort();
        if let Some(pair) = hosts.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!(
                "host {:?} is listed twice in \"hosts\"",
                pair[0]
            )));
        }
        if hosts.len() <= 1 {
            return Ok(Role::Single);
        }
        let host = rc.current_host.clone();
        if !hosts.contains(&host) {
            return Err(bad(format!(
                "\"current_host\" {host:?} is not one of \"hosts\" ({})",
                hosts.join(", ")
            )));
        }
        match training {
            Distribution::FullyReplicated => Ok(Role::Replicated {
                host,
                first: hosts[0].clone(),
                count: hosts.len(),
            }),
            Distribution::ShardedByS3Key => {
                // Host names become file names; SageMaker's are `algo-N`.
                if let Some(h) = hosts.iter().find(|h| !stats::valid_host(h)) {
                    return Err(bad(format!(
                        "host name {h:?} cannot name a statistics file (ShardedByS3Key): \
                         use letters, digits, '-', '_' and '.', not starting with '.'"
                    )));
                }
                Ok(Role::Sharded { host, hosts })
            }
        }
    }

    /// Whether this host writes `model.json`.
    pub fn writes_model(&self) -> bool {
        match self {
            Role::Single => true,
            Role::Replicated { host, first, .. } => host == first,
            Role::Sharded { .. } => false,
        }
    }

    /// One line on what this host will write, and why.
    pub fn describe(&self) -> Option<String> {
        match self {
            Role::Single => None,
            Role::Replicated { host, first, count } if host == first => Some(format!(
                "training is FullyReplicated over {count} hosts: each fits the same data, and \
                 this host ({host}, the first) writes {MODEL_FILE}"
            )),
            Role::Replicated { first, count, .. } => Some(format!(
                "training is FullyReplicated over {count} hosts: each fits the same data, and \
                 only the first host ({first}) writes {MODEL_FILE}; this host writes nothing, \
                 so the merged model directory holds one {MODEL_FILE}"
            )),
            Role::Sharded { host, hosts } => Some(format!(
                "training is ShardedByS3Key over {} hosts: this host fits only its shard and \
                 writes the shard's sufficient statistics to {}; loading the merged model \
                 directory combines the statistics of all hosts into the fit over all the data",
                hosts.len(),
                stats::file_name(host)
            )),
        }
    }

    /// Remove, from an earlier run in the same tree (a local re-run;
    /// SageMaker starts each job empty), the files this host's role owns, so
    /// what is there at the end is this run's outcome. A host never removes
    /// a file another host of the same job writes, so hosts may share one
    /// model directory.
    pub fn remove_stale(&self, model_dir: &Path) {
        let mut stale = Vec::new();
        match self {
            // A sharded job has no model.json; its own file; and files of
            // hosts that are not in this job.
            Role::Sharded { host, hosts } => {
                stale.push(model_dir.join(MODEL_FILE));
                stale.extend(stats::files_in(model_dir).into_iter().filter(|p| {
                    stats::host_of(p).is_none_or(|h| h == host || !hosts.iter().any(|x| x == h))
                }));
            }
            // The whole artifact is the writer's: model.json and any
            // statistics (with both, the directory would not load).
            _ if self.writes_model() => {
                stale.push(model_dir.join(MODEL_FILE));
                stale.extend(stats::files_in(model_dir));
            }
            // model.json is the first host's.
            _ => {}
        }
        for path in stale {
            // Only a regular file is an earlier run's output: a symlink or a
            // device the user put at `model.json` stays, and the save writes
            // through it (src/output.rs).
            let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
            if regular && std::fs::remove_file(&path).is_ok() {
                println!("mmp train: removed {} from an earlier run", path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(current: &str, hosts: &[&str]) -> ResourceConfig {
        ResourceConfig {
            current_host: current.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    fn plan(rc: &ResourceConfig, d: Distribution) -> Result<Role, String> {
        Role::plan(Some(rc), d, Path::new("resourceconfig.json")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_first_sorted_host_writes_a_replicated_model() {
        use Distribution::*;
        assert_eq!(
            Role::plan(None, ShardedByS3Key, Path::new("x")).unwrap(),
            Role::Single
        );
        assert_eq!(
            plan(&rc("algo-1", &["algo-1"]), ShardedByS3Key).unwrap(),
            Role::Single
        );
        // Listed out of order: the first after sorting writes.
        let hosts = ["algo-2", "algo-3", "algo-1"];
        let roles: Vec<bool> = ["algo-1", "algo-2", "algo-3"]
            .iter()
            .map(|h| {
                plan(&rc(h, &hosts), FullyReplicated)
                    .unwrap()
                    .writes_model()
            })
            .collect();
        assert_eq!(roles, [true, false, false]);
        let sharded = plan(&rc("algo-3", &hosts), ShardedByS3Key).unwrap();
        assert!(!sharded.writes_model());
        assert_eq!(
            sharded,
            Role::Sharded {
                host: "algo-3".into(),
                hosts: vec!["algo-1".into(), "algo-2".into(), "algo-3".into()]
            }
        );
        assert!(sharded.describe().unwrap().contains("stats-algo-3.json"));
    }

    #[test]
    fn inconsistent_resource_configs_are_errors() {
        let e = plan(
            &rc("algo-9", &["algo-1", "algo-2"]),
            Distribution::FullyReplicated,
        )
        .unwrap_err();
        assert!(
            e.contains("resourceconfig.json")
                && e.contains(
                    "\"current_host\" \"algo-9\" is not one of \"hosts\" (algo-1, algo-2)"
                ),
            "{e}"
        );
        let e = plan(
            &rc("algo-1", &["algo-1", "algo-1"]),
            Distribution::FullyReplicated,
        )
        .unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        let e = plan(&rc("a/b", &["a/b", "algo-1"]), Distribution::ShardedByS3Key).unwrap_err();
        assert!(e.contains("cannot name a statistics file"), "{e}");
    }

    #[test]
    fn stale_files_are_removed_by_their_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |name: &str| std::fs::write(dir.path().join(name), b"{}").unwrap();
        let names = || {
            let mut v: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        for n in [
            "model.json",
            "stats-algo-1.json",
            "stats-algo-2.json",
            "stats-algo-7.json",
        ] {
            touch(n);
        }
        let hosts: Vec<String> = vec!["algo-1".into(), "algo-2".into()];
        Role::Sharded {
            host: "algo-2".into(),
            hosts: hosts.clone(),
        }
        .remove_stale(dir.path());
        assert_eq!(names(), ["stats-algo-1.json"]);
        touch("model.json");
        Role::Replicated {
            host: "algo-2".into(),
            first: "algo-1".into(),
            count: 2,
        }
        .remove_stale(dir.path());
        assert_eq!(names(), ["model.json", "stats-algo-1.json"]);
        Role::Single.remove_stale(dir.path());
        assert!(names().is_empty());
    }
}
