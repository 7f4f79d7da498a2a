//! The intermediate representation between codecs and the model.
//!
//! Decoders turn bytes into a [`Batch`]: the features of good records packed
//! into one flat `Vec<f64>` (like csv's `ByteRecord` packs fields), and, in
//! their places in input order, the errors of bad records. The model sees
//! only [`Rows`]; encoders see only predictions and errors. A batch is reused
//! for a whole stream, so decoding a record allocates nothing.

use crate::error::{Error, ErrorKind, Position};

/// A view of the good records of a batch: row `i` is a slice of features.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    values: &'a [f64],
    ends: &'a [usize],
}

impl<'a> Rows<'a> {
    /// Rows over a flat buffer and the end offset of each row in it.
    pub fn new(values: &'a [f64], ends: &'a [usize]) -> Rows<'a> {
        Rows { values, ends }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &'a [f64] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.values[start..self.ends[i]]
    }

    /// The rows in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [f64]> + 'a {
        let values = self.values;
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let row = &values[start..end];
            start = end;
            row
        })
    }
}

/// How many fields a record must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Any number (the model checks, or takes any width).
    Any,
    /// Exactly this many features (not counting a label).
    Features(usize),
}

/// Records decoded from a stream, ready for the model, in input order.
#[derive(Debug, Default)]
pub struct Batch {
    values: Vec<f64>,
    ends: Vec<usize>,
    labels: Vec<f64>,
    /// The text of labels that are not numbers (their `labels` entry is
    /// NaN), packed like `values`: label `i` is
    /// `label_text[label_text_ends[i - 1]..label_text_ends[i]]`, empty for
    /// a numeric label.
    label_text: String,
    label_text_ends: Vec<usize>,
    /// Positions of the good records, parallel to `ends`.
    positions: Vec<Position>,
    /// Bad records: (slot in input order, error).
    errors: Vec<(usize, Error)>,
    /// Records of either kind pushed since the last clear.
    slots: usize,
    /// Where the record being built started in `values`.
    row_start: usize,
    /// Where the record being built started in `label_text`.
    text_start: usize,
}

/// A training record's label: a number, or any other text (a class name
/// such as iris's `setosa`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Label<'a> {
    /// A finite number.
    Number(f64),
    /// Text that is not a number.
    Text(&'a str),
}

impl Batch {
    /// An empty batch with room for `records` rows of `width` features.
    pub fn with_capacity(records: usize, width: usize) -> Batch {
        Batch {
            values: Vec::with_capacity(records * width.max(1)),
            ends: Vec::with_capacity(records),
            positions: Vec::with_capacity(records),
            ..Batch::default()
        }
    }

    /// Records (good and bad) in the batch.
    pub fn len(&self) -> usize {
        self.slots
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// Forget all records, keeping the allocations.
    pub fn clear(&mut self) {
        self.values.clear();
        self.ends.clear();
        self.labels.clear();
        self.label_text.clear();
        self.label_text_ends.clear();
        self.positions.clear();
        self.errors.clear();
        self.slots = 0;
        self.row_start = 0;
        self.text_start = 0;
    }

    /// The good records.
    pub fn rows(&self) -> Rows<'_> {
        Rows::new(&self.values, &self.ends)
    }

    /// Labels of the good records (training data only); NaN for a label
    /// that is text (see [`Batch::label`]).
    pub fn labels(&self) -> &[f64] {
        &self.labels
    }

    /// Label `i` of the good records, number or text.
    #[inline]
    pub fn label(&self, i: usize) -> Label<'_> {
        let start = if i == 0 {
            0
        } else {
            self.label_text_ends[i - 1]
        };
        let end = self.label_text_ends[i];
        if end > start {
            Label::Text(&self.label_text[start..end])
        } else {
            Label::Number(self.labels[i])
        }
    }

    /// Positions of the good records, parallel to [`Batch::rows`].
    pub fn positions(&self) -> &[Position] {
        &self.positions
    }

    /// Bad records: their slot in input order and their error.
    pub fn errors(&self) -> &[(usize, Error)] {
        &self.errors
    }

    /// Take the errors out (the batch must be cleared before reuse).
    pub fn take_errors(&mut self) -> Vec<(usize, Error)> {
        std::mem::take(&mut self.errors)
    }

    /// Whether any record of the batch is bad.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Start building a record.
    #[inline]
    pub(crate) fn begin_row(&mut self) {
        self.row_start = self.values.len();
        self.text_start = self.label_text.len();
    }

    /// Give the record being built a label that is text, not a number
    /// (non-empty); then end it with `end_row(.., Some(f64::NAN))`.
    #[inline]
    pub(crate) fn push_label_text(&mut self, text: &str) {
        self.label_text.push_str(text);
    }

    /// Add a feature to the record being built.
    #[inline]
    pub(crate) fn push_value(&mut self, v: f64) {
        self.values.push(v);
    }

    /// Features pushed to the record being built so far.
    #[inline]
    pub(crate) fn row_width(&self) -> usize {
        self.values.len() - self.row_start
    }

    /// Finish the record being built: check its width, then keep it (with
    /// its label) or turn it into a `FieldCount` error.
    #[inline]
    pub(crate) fn end_row(&mut self, pos: Position, shape: Shape, label: Option<f64>) {
        if let Shape::Features(n) = shape {
            let width = self.row_width();
            if width != n {
                let extra = usize::from(label.is_some());
                self.values.truncate(self.row_start);
                self.label_text.truncate(self.text_start);
                self.push_error(Error::new(ErrorKind::FieldCount {
                    pos,
                    expected: n + extra,
                    found: width + extra,
                }));
                return;
            }
        }
        if let Some(y) = label {
            self.labels.push(y);
            self.label_text_ends.push(self.label_text.len());
        }
        self.ends.push(self.values.len());
        self.positions.push(pos);
        self.slots += 1;
    }

    /// Drop what was pushed to the record being built, to build it again.
    #[inline]
    pub(crate) fn discard_row(&mut self) {
        self.values.truncate(self.row_start);
        self.label_text.truncate(self.text_start);
    }

    /// Drop the record being built and put `err` in its place.
    #[inline]
    pub(crate) fn abandon_row(&mut self, err: Error) {
        self.discard_row();
        self.push_error(err);
    }

    /// Put a bad record in the next slot.
    pub(crate) fn push_error(&mut self, err: Error) {
        self.errors.push((self.slots, err));
        self.slots += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(record: u64) -> Position {
        Position {
            record,
            line: record,
            byte: 0,
        }
    }

    #[test]
    fn rows_and_errors_keep_input_order() {
        let mut b = Batch::with_capacity(4, 2);
        for (i, row) in [[1.0, 2.0], [3.0, 4.0]].iter().enumerate() {
            b.begin_row();
            row.iter().for_each(|&v| b.push_value(v));
            b.end_row(pos(i as u64 + 1), Shape::Features(2), None);
        }
        b.begin_row();
        b.push_value(5.0);
        b.end_row(pos(3), Shape::Features(2), None);
        assert_eq!(b.len(), 3);
        assert_eq!(b.rows().len(), 2);
        assert_eq!(b.rows().row(1), &[3.0, 4.0]);
        assert_eq!(b.errors().len(), 1);
        assert_eq!(b.errors()[0].0, 2);
        assert_eq!(
            b.errors()[0].1.to_string(),
            "record 3 (line 3, byte 0): expected 2 fields, found 1"
        );
        let all: Vec<_> = b.rows().iter().collect();
        assert_eq!(all, vec![&[1.0, 2.0][..], &[3.0, 4.0][..]]);
    }

    #[test]
    fn csv_labels_may_be_names_or_numbers() {
        use crate::codec::{DecodeOptions, Decoder};
        use crate::media::Format;
        let opts = DecodeOptions {
            label: true,
            text_labels: true,
            ..DecodeOptions::default()
        };
        let mut d = Decoder::new(Format::Csv, &opts);
        let mut b = Batch::with_capacity(4, 1);
        let input = b"\"a,b\",1\nsetosa,2\n3,4\n,5\n";
        let used = d.decode(input, &mut b, 16).unwrap();
        assert_eq!(used, input.len());
        d.finish(&mut b, 16).unwrap();
        assert_eq!(b.rows().len(), 3);
        assert_eq!(b.label(0), Label::Text("a,b"));
        assert_eq!(b.label(1), Label::Text("setosa"));
        assert_eq!(b.label(2), Label::Number(3.0));
        assert_eq!(b.rows().row(1), &[2.0]);
        // An empty label is still an error, with its position.
        assert_eq!(
            b.errors()[0].1.to_string(),
            "record 4 (line 4, byte 21): field 1 is empty"
        );
    }
}
