//! Batch Transform's vocabulary, shared by the server (what
//! `/execution-parameters` advertises) and `mmp transform` (what it reads
//! from a container): one `BatchStrategy`, one `ExecutionParameters`.

use crate::transform::plan::MAX_PAYLOAD_MB;

/// How SageMaker should batch records for Batch Transform.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchStrategy {
    /// One record per request.
    SingleRecord,
    /// As many records per request as fit in `MaxPayloadInMB`.
    #[default]
    MultiRecord,
}

impl BatchStrategy {
    /// The spelling `/execution-parameters` uses (AWS's docs: `MULTI_RECORD`).
    pub fn as_aws(self) -> &'static str {
        match self {
            BatchStrategy::SingleRecord => "SINGLE_RECORD",
            BatchStrategy::MultiRecord => "MULTI_RECORD",
        }
    }

    /// Parse either spelling, any case: the documented `MULTI_RECORD` of
    /// `/execution-parameters` (docs/contract.md §3), or the API's
    /// `MultiRecord`, which SDK local mode expects (docs/local-mode.md,
    /// step 3).
    pub fn parse(s: &str) -> Option<BatchStrategy> {
        match s.trim().replace('_', "").to_ascii_lowercase().as_str() {
            "singlerecord" => Some(BatchStrategy::SingleRecord),
            "multirecord" => Some(BatchStrategy::MultiRecord),
            _ => None,
        }
    }
}

/// What a container's `GET /execution-parameters` asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecutionParameters {
    /// `MaxConcurrentTransforms` (0 is "not set").
    pub max_concurrent: Option<u32>,
    /// `BatchStrategy`.
    pub strategy: Option<BatchStrategy>,
    /// `MaxPayloadInMB`.
    pub max_payload_mb: Option<u32>,
}

impl ExecutionParameters {
    /// Read the JSON body of a 200 answer. Unknown keys are ignored; a value
    /// of the wrong type or range is ignored with a note in `notes`, as if
    /// the container had not given it.
    pub fn from_json(body: &[u8], notes: &mut Vec<String>) -> ExecutionParameters {
        let mut p = ExecutionParameters::default();
        let value: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                notes.push(format!("ignoring /execution-parameters: not JSON: {e}"));
                return p;
            }
        };
        let mut int = |key: &str, max: u64| match value.get(key) {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => match v.as_u64().filter(|n| *n <= max) {
                Some(n) => Some(n as u32),
                None => {
                    notes.push(format!("ignoring /execution-parameters {key}={v}"));
                    None
                }
            },
        };
        p.max_concurrent = int("MaxConcurrentTransforms", u32::MAX as u64).filter(|n| *n > 0);
        p.max_payload_mb = int("MaxPayloadInMB", MAX_PAYLOAD_MB as u64);
        p.strategy = match value.get("BatchStrategy") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let parsed = v.as_str().and_then(BatchStrategy::parse);
                if parsed.is_none() {
                    notes.push(format!("ignoring /execution-parameters BatchStrategy={v}"));
                }
                parsed
            }
        };
        p
    }
}

impl ExecutionParameters {
    /// The JSON body of `GET /execution-parameters`, in AWS's casing and
    /// spelling (`MULTI_RECORD`); absent values are left out.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::Map::new();
        if let Some(n) = self.max_concurrent {
            v.insert("MaxConcurrentTransforms".into(), n.into());
        }
        if let Some(s) = self.strategy {
            v.insert("BatchStrategy".into(), s.as_aws().into());
        }
        if let Some(mb) = self.max_payload_mb {
            v.insert("MaxPayloadInMB".into(), mb.into());
        }
        serde_json::Value::Object(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings() {
        for s in ["MULTI_RECORD", "MultiRecord", "multirecord"] {
            assert_eq!(BatchStrategy::parse(s), Some(BatchStrategy::MultiRecord));
        }
        assert_eq!(
            BatchStrategy::parse("SINGLE_RECORD"),
            Some(BatchStrategy::SingleRecord)
        );
        assert_eq!(BatchStrategy::parse("ALL"), None);
    }

    #[test]
    fn execution_parameters_from_the_documented_body() {
        let mut notes = Vec::new();
        let p = ExecutionParameters::from_json(
            br#"{"MaxConcurrentTransforms": 8, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}"#,
            &mut notes,
        );
        assert_eq!(
            p,
            ExecutionParameters {
                max_concurrent: Some(8),
                strategy: Some(BatchStrategy::MultiRecord),
                max_payload_mb: Some(6)
            }
        );
        assert!(notes.is_empty());
        let p = ExecutionParameters::from_json(
            br#"{"MaxConcurrentTransforms": 0, "BatchStrategy": "X", "MaxPayloadInMB": 500}"#,
            &mut notes,
        );
        assert_eq!(p, ExecutionParameters::default());
        assert_eq!(notes.len(), 2, "{notes:?}");
    }
}
