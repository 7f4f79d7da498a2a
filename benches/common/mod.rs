//! Data shared by the benches: deterministic rows like the shared bench's
//! (values in [-10, 10) with 6 decimals), so runs compare.

use mmp::media::Format;

/// A deterministic pseudo-random generator (xorshift).
pub struct Rng(pub u64);

impl Rng {
    /// The next value, uniform in [-10, 10).
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 20.0 - 10.0
    }
}

/// About `bytes` of rows of `width` values in `format` (CSV, or JSON-lines
/// arrays), and how many rows that is.
pub fn rows(format: Format, bytes: usize, width: usize) -> (Vec<u8>, usize) {
    let mut rng = Rng(20240601);
    let mut out = Vec::with_capacity(bytes + 256);
    let mut rows = 0;
    while out.len() < bytes {
        let fields: Vec<String> = (0..width).map(|_| format!("{:.6}", rng.next())).collect();
        let line = fields.join(",");
        match format {
            Format::Csv => out.extend_from_slice(line.as_bytes()),
            _ => {
                out.push(b'[');
                out.extend_from_slice(line.as_bytes());
                out.push(b']');
            }
        }
        out.push(b'\n');
        rows += 1;
    }
    (out, rows)
}
