//! The seam between the pipeline and an algorithm: the [`Model`] trait.
//!
//! The pipeline decodes records into batches, calls [`Model::predict`] once
//! per batch, and encodes the predictions; a model never sees bytes, formats
//! or HTTP. To serve your own algorithm, implement this trait in
//! `src/predictor.rs` (the file that plays `predictor.py`'s part in AWS's
//! sample) and make its `load` return your model.

use std::path::Path;
use std::sync::Arc;

use crate::error::Error;
use crate::record::Rows;

/// An algorithm that scores batches of records.
///
/// `Send + Sync`: one loaded model serves every request at once.
pub trait Model: Send + Sync + 'static {
    /// How many features each record must have, if fixed. Decoders check it,
    /// so a record of the wrong width is reported with its position and never
    /// reaches `predict`.
    fn num_features(&self) -> Option<usize>;

    /// Append exactly one prediction per row of `rows` to `out`, in order.
    ///
    /// An `Err` fails the whole request (HTTP 500); problems with single
    /// records belong in the decoders.
    fn predict(&self, rows: Rows<'_>, out: &mut Vec<f64>) -> Result<(), Error>;
}

/// A loaded model, shared by all requests.
pub type SharedModel = Arc<dyn Model>;

/// Load the model from a model directory (`/opt/ml/model` in SageMaker).
pub fn load(dir: &Path) -> Result<SharedModel, Error> {
    Ok(Arc::new(crate::predictor::load(dir)?))
}

/// A model error, for implementations of [`Model::predict`].
pub fn model_error(msg: impl Into<String>) -> Error {
    Error::new(crate::error::ErrorKind::Model(msg.into()))
}
