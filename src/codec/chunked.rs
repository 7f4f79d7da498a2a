//! The chunked-feeding harness: feed a body to a [`Decoder`] in given pieces
//! and list what came out, record by record, so that feedings of one body in
//! different pieces can be compared (they must agree). One file for both of
//! its users: the decoder tests (`src/codec/tests/`) and the fuzz targets
//! (`fuzz/fuzz_targets/chunked.rs`), which include it by path.
//!
//! The parent module brings `Batch`, `DecodeOptions`, `Decoder` and `Format`
//! into scope: from `crate::` in the tests, from `mmp::` in the fuzz crate.

use super::{Batch, DecodeOptions, Decoder, Format};

/// A record as the harness sees it: its features, or its error message.
pub type Slot = Result<Vec<f64>, String>;

/// Move the batch's records, in input order, into `out`.
fn drain(batch: &mut Batch, out: &mut Vec<Slot>) {
    let rows: Vec<Vec<f64>> = batch.rows().iter().map(<[f64]>::to_vec).collect();
    let mut rows = rows.into_iter();
    let mut errors = batch.take_errors().into_iter().peekable();
    for slot in 0..batch.len() {
        if errors.peek().is_some_and(|(s, _)| *s == slot) {
            let (_, e) = errors.next().unwrap();
            out.push(Err(e.to_string()));
        } else {
            out.push(Ok(rows.next().unwrap()));
        }
    }
    batch.clear();
}

/// Decode `chunks` in order, at most `limit` records a batch (a small limit
/// takes the "batch full, call again" path too); a fatal error ends the
/// list as `Err("fatal: …")`.
pub fn decode_chunks(
    format: Format,
    opts: &DecodeOptions,
    chunks: &[&[u8]],
    limit: usize,
) -> Vec<Slot> {
    let mut d = Decoder::new(format, opts);
    let mut batch = Batch::default();
    let mut out = Vec::new();
    for chunk in chunks {
        let mut at = 0;
        while at < chunk.len() {
            match d.decode(&chunk[at..], &mut batch, limit) {
                Ok(n) => at += n,
                Err(e) => {
                    drain(&mut batch, &mut out);
                    out.push(Err(format!("fatal: {e}")));
                    return out;
                }
            }
            drain(&mut batch, &mut out);
        }
    }
    loop {
        match d.finish(&mut batch, limit) {
            Ok(done) => {
                drain(&mut batch, &mut out);
                if done {
                    return out;
                }
            }
            Err(e) => {
                drain(&mut batch, &mut out);
                out.push(Err(format!("fatal: {e}")));
                return out;
            }
        }
    }
}
