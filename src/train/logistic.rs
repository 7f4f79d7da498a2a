//! The classifiers' fit: (multinomial) logistic regression by Newton's
//! method over repeated passes of the data.
//!
//! With K classes, labels `y`, records `x` and one weight row `w_k` and
//! intercept `b_k` per output, the fit minimises
//!
//! `F(W, b) = Σᵢ logloss(yᵢ, xᵢ) + l2 · ‖W‖²`
//!
//! with the intercepts unpenalised: scikit-learn's
//! `LogisticRegression(C = 1 / (2·l2))` (its objective `C·Σ logloss + ½‖W‖²`
//! divided by `C`). A binary classifier has one output, the log-odds of the
//! second label; a multiclass one has K (the full softmax, scikit-learn's
//! multinomial), whose intercepts and weights are fixed up to a common shift
//! by the data: the fit keeps each shift's sum at zero, as scikit-learn does.
//!
//! A pass computes `F`, its gradient and its Hessian at the current
//! parameters (`P = outputs · (D + 1)` of them; D is small, so the dense
//! `P × P` Hessian is cheap); the Newton step solves `H δ = g` by Cholesky.
//! A step that does not lower `F` is halved and the point evaluated again
//! (one more pass). The fit stops when the Newton step's largest component
//! is below [`TOLERANCE`] `· (1 + max |θ|)`: Newton converges
//! quadratically, so the parameters are then within about that of the
//! optimum. The first pass collects the label set, sorted as
//! scikit-learn's `classes_`, and each feature's mean and spread.
//!
//! The Newton passes work on standardised features, `(x − mean) / std`
//! ([`Scaling`]), and the result is mapped back to the records' own units.
//! It is the same objective (the penalty is taken on the weights in the
//! records' units), so the same optimum; but a feature far from zero (a Unix
//! timestamp, 1.7e9 give or take a year) makes the raw Hessian's entries
//! span 18 orders of magnitude, past what a Cholesky factor in `f64` can
//! tell from singular, while the standardised one stays near 1. The
//! regressor's centred sums ([`super::fit`]) answer the same problem.
//!
//! Each pass re-reads the channel: File mode reads the files again, Pipe
//! mode opens the next epoch's FIFO (`training_1`, `training_2`, ...), as
//! SageMaker gives one FIFO per epoch. Per record the work is O(P²) and
//! allocates nothing (a label is found by binary search in the sorted set).

use std::collections::BTreeSet;

use super::ingest::{record_error, Accumulate, Stream};
use crate::error::{Error, ErrorKind, Position};
use crate::model::ClassLabel;
use crate::predictor::{ClassifierType, LogisticArtifact};
use crate::record::{Batch, Label};

/// Stop when the Newton step's largest component is below this, relative
/// to `1 + max |θ|`.
pub const TOLERANCE: f64 = 1e-9;
/// Newton steps (accepted or halved) before giving up.
pub const MAX_STEPS: usize = 100;
/// More distinct labels than this is regression data, not classes.
pub const MAX_CLASSES: usize = 1000;

/// The sorted label set of the training channel.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelSet {
    /// All labels are numbers (sorted numerically).
    Numbers(Vec<f64>),
    /// All labels are text (sorted by code point, as Python sorts `str`).
    Texts(Vec<String>),
}

impl LabelSet {
    /// How many classes.
    pub fn len(&self) -> usize {
        match self {
            LabelSet::Numbers(v) => v.len(),
            LabelSet::Texts(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class index of `label`, if it is one of the set.
    #[inline]
    fn index(&self, label: Label<'_>) -> Option<usize> {
        match (self, label) {
            (LabelSet::Numbers(v), Label::Number(y)) => {
                v.binary_search_by(|c| c.total_cmp(&y)).ok()
            }
            (LabelSet::Texts(v), Label::Text(t)) => v.binary_search_by(|c| c.as_str().cmp(t)).ok(),
            _ => None,
        }
    }

    /// The labels for the artifact.
    pub fn labels(&self) -> Vec<ClassLabel> {
        match self {
            LabelSet::Numbers(v) => v.iter().map(|&y| ClassLabel::Number(y)).collect(),
            LabelSet::Texts(v) => v.iter().cloned().map(ClassLabel::Text).collect(),
        }
    }
}

/// The first pass: D, the record count and the distinct labels.
#[derive(Debug, Default)]
pub struct Scan {
    features: Option<usize>,
    origin: String,
    count: u64,
    numbers: Vec<f64>,
    texts: BTreeSet<String>,
    /// The first number and the first text label seen, for a message.
    first_number: Option<(f64, Position)>,
    first_text: Option<(String, Position)>,
    /// Each feature's running mean and sum of squared deviations
    /// (Welford's update).
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Scan {
    /// Each feature's mean and standard deviation, for the Newton passes
    /// (a constant feature keeps scale 1: its Hessian row is then zero and
    /// reported as singular, or taken by the penalty).
    pub fn scaling(&self) -> Scaling {
        let n = self.count.max(1) as f64;
        let scale = self
            .m2
            .iter()
            .map(|m2| match (m2 / n).sqrt() {
                s if s > 0.0 && s.is_finite() => s,
                _ => 1.0,
            })
            .collect();
        Scaling {
            center: self.mean.clone(),
            scale,
        }
    }

    /// The label set, or why the labels cannot be classes.
    pub fn labels(self) -> Result<(LabelSet, Option<usize>, String, u64), Error> {
        let set = match (self.first_number, self.first_text) {
            (Some((y, p)), Some((t, q))) => {
                return Err(Error::channel(
                    super::TRAINING,
                    format!(
                        "its labels mix numbers ({} at record {}, line {}) and text ({t:?} at \
                         record {}, line {}): a classifier's labels are all numbers or all names",
                        ClassLabel::Number(y),
                        p.record,
                        p.line,
                        q.record,
                        q.line
                    ),
                ))
            }
            (_, Some(_)) => LabelSet::Texts(self.texts.into_iter().collect()),
            _ => LabelSet::Numbers(self.numbers),
        };
        Ok((set, self.features, self.origin, self.count))
    }
}

impl Accumulate for Scan {
    fn features(&self) -> Option<usize> {
        self.features
    }

    fn origin(&self) -> &str {
        &self.origin
    }

    fn fix(&mut self, features: usize, origin: String) -> Result<(), Error> {
        self.features = Some(features);
        self.origin = origin;
        self.mean = vec![0.0; features];
        self.m2 = vec![0.0; features];
        Ok(())
    }

    fn add(&mut self, batch: &Batch, stream: &Stream<'_>) -> Result<(), Error> {
        for (i, x) in batch.rows().iter().enumerate() {
            let n = (self.count + i as u64 + 1) as f64;
            for ((m, m2), &v) in self.mean.iter_mut().zip(&mut self.m2).zip(x) {
                let delta = v - *m;
                *m += delta / n;
                *m2 += delta * (v - *m);
            }
        }
        for (i, pos) in batch.positions().iter().enumerate() {
            match batch.label(i) {
                Label::Number(y) => {
                    if let Err(at) = self.numbers.binary_search_by(|c| c.total_cmp(&y)) {
                        self.numbers.insert(at, y);
                    }
                    self.first_number.get_or_insert((y, *pos));
                }
                Label::Text(t) => {
                    if !self.texts.contains(t) {
                        self.texts.insert(t.to_string());
                    }
                    if self.first_text.is_none() {
                        self.first_text = Some((t.to_string(), *pos));
                    }
                }
            }
            if self.numbers.len() + self.texts.len() > MAX_CLASSES {
                let e = Error::new(ErrorKind::NotARow {
                    pos: *pos,
                    reason: format!(
                        "its label makes more than {MAX_CLASSES} distinct labels: is this \
                         regression data? (the hyperparameter predictor_type is a classifier)"
                    ),
                });
                return Err(record_error(stream, e, String::new()));
            }
        }
        self.count += batch.rows().len() as u64;
        Ok(())
    }

    fn count(&self) -> u64 {
        self.count
    }

    fn text_labels(&self) -> bool {
        true
    }
}

/// Where the Newton passes put each feature: `x' = (x − center) / scale`.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaling {
    /// Subtracted from each feature.
    pub center: Vec<f64>,
    /// Then each feature is divided by this (never 0).
    pub scale: Vec<f64>,
}

impl Scaling {
    /// The records as they are.
    pub fn identity(d: usize) -> Scaling {
        Scaling {
            center: vec![0.0; d],
            scale: vec![1.0; d],
        }
    }

    /// θ fitted on scaled features (row-major: output k's D weights then
    /// its intercept) as the same model over the records' own features:
    /// `w = w' / scale`, `b = b' − Σ w' · center / scale`.
    pub fn unscale(&self, theta: &[f64]) -> Vec<f64> {
        let d = self.center.len();
        theta
            .chunks_exact(d + 1)
            .flat_map(|row| {
                let w = row[..d].iter().zip(&self.scale).map(|(w, s)| w / s);
                let shift: f64 = w.clone().zip(&self.center).map(|(w, c)| w * c).sum();
                w.chain(std::iter::once(row[d] - shift))
            })
            .collect()
    }
}

/// One evaluation pass at parameters θ: the loss, the correct count, and
/// (for training) the gradient and the Hessian's upper triangle.
#[derive(Debug)]
pub struct Pass<'a> {
    labels: &'a LabelSet,
    /// Outputs: 1 (binary) or K.
    m: usize,
    d: usize,
    theta: &'a [f64],
    scaling: &'a Scaling,
    /// Accumulate gradient and Hessian (training) or only loss and accuracy.
    derivatives: bool,
    /// Σ logloss.
    pub loss: f64,
    /// Records whose predicted label is their label.
    pub correct: u64,
    /// Records whose true class strictly wins (margin > 0): all of them
    /// means the data are separable.
    pub strict: u64,
    count: u64,
    /// ∂F/∂θ (data part).
    pub grad: Vec<f64>,
    /// ∂²F/∂θ² (data part), upper triangle of a row-major P × P.
    pub hess: Vec<f64>,
    z: Vec<f64>,
    r: Vec<f64>,
    /// The record being added, scaled.
    x: Vec<f64>,
    origin: String,
}

impl<'a> Pass<'a> {
    /// A pass at `theta` (row-major: output k's D weights then its
    /// intercept) over the features as `scaling` puts them.
    pub fn new(
        labels: &'a LabelSet,
        d: usize,
        theta: &'a [f64],
        scaling: &'a Scaling,
        derivatives: bool,
    ) -> Pass<'a> {
        let m = outputs(labels.len());
        let p = m * (d + 1);
        Pass {
            labels,
            m,
            d,
            theta,
            scaling,
            derivatives,
            loss: 0.0,
            correct: 0,
            strict: 0,
            count: 0,
            grad: if derivatives {
                vec![0.0; p]
            } else {
                Vec::new()
            },
            hess: if derivatives {
                vec![0.0; p * p]
            } else {
                Vec::new()
            },
            z: vec![0.0; m],
            r: vec![0.0; m],
            x: vec![0.0; d],
            origin: String::new(),
        }
    }

    /// Add one record of class `c`, its features already scaled.
    #[inline]
    fn push(&mut self, x: &[f64], c: usize) {
        let (m, d) = (self.m, self.d);
        for k in 0..m {
            let w = &self.theta[k * (d + 1)..(k + 1) * (d + 1)];
            self.z[k] = w[d] + w[..d].iter().zip(x).map(|(w, v)| w * v).sum::<f64>();
        }
        // Loss from the logits (stable), the residuals p − y into r.
        if m == 1 {
            let z = self.z[0];
            let y = if c == 1 { 1.0 } else { 0.0 };
            // softplus(z) − y·z
            let softplus = z.max(0.0) + (-z.abs()).exp().ln_1p();
            self.loss += softplus - y * z;
            let predicted = usize::from(z > 0.0);
            self.correct += u64::from(predicted == c);
            self.strict += u64::from(if c == 1 { z > 0.0 } else { z < 0.0 });
            self.r[0] = crate::predictor::sigmoid(z) - y;
        } else {
            let zmax = self.z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = self.z.iter().map(|z| (z - zmax).exp()).sum();
            self.loss += zmax + sum.ln() - self.z[c];
            let mut best = 0;
            let mut rival = f64::NEG_INFINITY;
            for k in 0..m {
                if self.z[k] > self.z[best] {
                    best = k;
                }
                if k != c {
                    rival = rival.max(self.z[k]);
                }
            }
            self.correct += u64::from(best == c);
            self.strict += u64::from(self.z[c] > rival);
            for k in 0..m {
                self.r[k] = (self.z[k] - zmax).exp() / sum - if k == c { 1.0 } else { 0.0 };
            }
        }
        self.count += 1;
        if !self.derivatives {
            return;
        }
        let p = m * (d + 1);
        let xt = |j: usize| if j == d { 1.0 } else { x[j] };
        for k in 0..m {
            let rk = self.r[k];
            for j in 0..=d {
                self.grad[k * (d + 1) + j] += rk * xt(j);
            }
            // p_k = r_k + y_k.
            let pk = rk
                + if m > 1 && k == c || m == 1 && c == 1 {
                    1.0
                } else {
                    0.0
                };
            for l in k..m {
                let pl = self.r[l]
                    + if m > 1 && l == c || m == 1 && c == 1 {
                        1.0
                    } else {
                        0.0
                    };
                // ∂²/∂z_k∂z_l = p_k (δ_kl − p_l) (binary: p (1 − p)).
                let coef = pk * (f64::from(u8::from(k == l)) - pl);
                if coef == 0.0 {
                    continue;
                }
                for i in 0..=d {
                    let a = k * (d + 1) + i;
                    let ci = coef * xt(i);
                    let row = &mut self.hess[a * p..(a + 1) * p];
                    let from = if l == k { i } else { 0 };
                    for j in from..=d {
                        row[l * (d + 1) + j] += ci * xt(j);
                    }
                }
            }
        }
    }

    /// Records added.
    pub fn records(&self) -> u64 {
        self.count
    }
}

impl Accumulate for Pass<'_> {
    fn features(&self) -> Option<usize> {
        Some(self.d)
    }

    fn origin(&self) -> &str {
        &self.origin
    }

    fn fix(&mut self, _: usize, _: String) -> Result<(), Error> {
        Ok(())
    }

    fn add(&mut self, batch: &Batch, stream: &Stream<'_>) -> Result<(), Error> {
        let mut scaled = std::mem::take(&mut self.x);
        let (center, scale) = (&self.scaling.center, &self.scaling.scale);
        for (i, (x, pos)) in batch.rows().iter().zip(batch.positions()).enumerate() {
            let label = batch.label(i);
            let Some(c) = self.labels.index(label) else {
                return Err(unknown_label(stream, *pos, label, self.labels));
            };
            for (((to, v), c), s) in scaled.iter_mut().zip(x).zip(center).zip(scale) {
                *to = (v - c) / s;
            }
            self.push(&scaled, c);
        }
        self.x = scaled;
        Ok(())
    }

    fn count(&self) -> u64 {
        self.count
    }

    fn text_labels(&self) -> bool {
        true
    }
}

/// A record whose label is not among the training labels. Cold.
#[cold]
fn unknown_label(stream: &Stream<'_>, pos: Position, label: Label<'_>, set: &LabelSet) -> Error {
    let text = match label {
        Label::Number(y) => ClassLabel::Number(y).text(),
        Label::Text(t) => format!("{t:?}"),
    };
    let known: Vec<String> = set.labels().iter().map(ClassLabel::text).collect();
    let e = Error::new(ErrorKind::NotARow {
        pos,
        reason: format!(
            "its label {text} is not one of the training channel's labels ({})",
            known.join(", ")
        ),
    });
    record_error(stream, e, String::new())
}

/// Outputs of a classifier of `k` classes: one log-odds for two, else one
/// per class.
pub fn outputs(k: usize) -> usize {
    if k == 2 {
        1
    } else {
        k
    }
}

/// What a fit produced: the artifact and its training figures.
#[derive(Debug)]
pub struct Fitted {
    /// The model.
    pub artifact: LogisticArtifact,
    /// Mean log loss and accuracy on the training channel.
    pub log_loss: f64,
    /// Accuracy on the training channel.
    pub accuracy: f64,
    /// Newton passes (not counting the label scan).
    pub passes: usize,
}

/// Fit by Newton's method. `pass(θ)` reads the training channel once and
/// returns the evaluation at θ (with derivatives), θ over the features as
/// `scaling` puts them; the artifact is over the records' own.
pub fn fit(
    labels: &LabelSet,
    d: usize,
    l2: f64,
    kind: ClassifierType,
    scaling: &Scaling,
    mut pass: impl FnMut(&[f64]) -> Result<(f64, u64, u64, u64, Vec<f64>, Vec<f64>), Error>,
) -> Result<Fitted, Error> {
    let k = labels.len();
    let m = outputs(k);
    let p = m * (d + 1);
    let mut theta = vec![0.0; p];
    let mut passes = 0;
    // The accepted point: θ, F, and its Newton step.
    let mut accepted: Option<(Vec<f64>, f64, Vec<f64>)> = None;
    let mut t = 1.0;
    for _ in 0..MAX_STEPS {
        let (loss, correct, strict, n, mut grad, mut hess) = pass(&theta)?;
        passes += 1;
        // The penalty is on the weights in the records' units, w' / scale.
        let per_unit = |a: usize| scaling.scale[a % (d + 1)].powi(-2);
        let penalty: f64 = weight_indexes(m, d)
            .map(|a| theta[a] * theta[a] * per_unit(a))
            .sum::<f64>()
            * l2;
        let f = loss + penalty;
        if let Some((base, f0, step)) = &accepted {
            if f > *f0 + 1e-12 * f0.abs() {
                // Not lower: halve the step from the accepted point.
                t *= 0.5;
                if t < 1e-10 {
                    return Err(not_converging(l2, passes));
                }
                theta = base.iter().zip(step).map(|(b, s)| b - t * s).collect();
                continue;
            }
        }
        if l2 == 0.0 && strict == n {
            return Err(Error::hyperparameter(format!(
                "the training data are separable (after {passes} Newton passes every record's \
                 class wins by a margin), so with l2 = 0 the weights grow without bound: set \
                 the hyperparameter l2 > 0"
            )));
        }
        // Penalty's derivatives: on each weight, none on intercepts.
        for a in weight_indexes(m, d) {
            grad[a] += 2.0 * l2 * theta[a] * per_unit(a);
            hess[a * p + a] += 2.0 * l2 * per_unit(a);
        }
        // Multiclass: the data do not see a common shift of every class's
        // weight j (or intercept); adding u·uᵀ for each such direction u
        // makes H invertible without moving the step along u, since the
        // gradient is orthogonal to u: the shifts' sums stay zero.
        if m > 1 {
            // Scaled like H's diagonal, so the sum stays well conditioned.
            let c = (0..p).map(|i| hess[i * p + i]).sum::<f64>() / p as f64;
            let u = c.max(1.0) / m as f64;
            for j in 0..=d {
                for a in 0..m {
                    for b in a..m {
                        hess[(a * (d + 1) + j) * p + b * (d + 1) + j] += u;
                    }
                }
            }
        }
        let step = cholesky_solve(&mut hess, &grad, p).ok_or_else(|| {
            Error::hyperparameter(format!(
                "the classifier's Hessian is singular after {passes} passes (a constant or \
                 collinear feature, or separable data) with l2 = {l2}: set the hyperparameter \
                 l2 > 0"
            ))
        })?;
        let scale = 1.0 + theta.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let big = step.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        if big <= TOLERANCE * scale {
            let n = n.max(1) as f64;
            let (bias, w) = split(&scaling.unscale(&theta), m, d);
            return Ok(Fitted {
                artifact: LogisticArtifact {
                    predictor_type: kind,
                    classes: labels.labels(),
                    bias,
                    weights: w,
                },
                log_loss: loss / n,
                accuracy: correct as f64 / n,
                passes,
            });
        }
        t = 1.0;
        let next: Vec<f64> = theta.iter().zip(&step).map(|(a, s)| a - s).collect();
        accepted = Some((std::mem::replace(&mut theta, next), f, step));
    }
    Err(not_converging(l2, passes))
}

fn not_converging(l2: f64, passes: usize) -> Error {
    Error::hyperparameter(format!(
        "the classifier did not converge in {passes} Newton passes with l2 = {l2} (the data may \
         be separable or nearly so): set the hyperparameter l2 > 0, or larger"
    ))
}

/// Where θ holds weights (not the intercepts).
fn weight_indexes(m: usize, d: usize) -> impl Iterator<Item = usize> {
    (0..m).flat_map(move |k| k * (d + 1)..k * (d + 1) + d)
}

/// θ as the artifact's intercepts and weight rows.
fn split(theta: &[f64], m: usize, d: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let rows = theta.chunks_exact(d + 1);
    let bias = rows.clone().map(|r| r[d]).collect();
    let w = rows.map(|r| r[..d].to_vec()).collect();
    debug_assert_eq!(theta.len(), m * (d + 1));
    (bias, w)
}

/// Solve `H x = g` for symmetric positive definite `H` given by its upper
/// triangle (row-major, `p × p`, overwritten). Hand-written like the
/// regressor's: a crate for one small dense solve is not worth the
/// dependency. `None` if `H` is not positive definite.
fn cholesky_solve(h: &mut [f64], g: &[f64], p: usize) -> Option<Vec<f64>> {
    // H = Rᵀ R with R upper triangular, stored over H's upper triangle.
    let max_diag = (0..p).fold(0.0f64, |a, i| a.max(h[i * p + i].abs()));
    for i in 0..p {
        let mut s = h[i * p + i];
        for k in 0..i {
            s -= h[k * p + i] * h[k * p + i];
        }
        if s <= 1e-13 * max_diag.max(f64::MIN_POSITIVE) {
            return None;
        }
        let r = s.sqrt();
        h[i * p + i] = r;
        for j in i + 1..p {
            let mut s = h[i * p + j];
            for k in 0..i {
                s -= h[k * p + i] * h[k * p + j];
            }
            h[i * p + j] = s / r;
        }
    }
    // Rᵀ y = g, then R x = y.
    let mut y = vec![0.0; p];
    for i in 0..p {
        let mut s = g[i];
        for k in 0..i {
            s -= h[k * p + i] * y[k];
        }
        y[i] = s / h[i * p + i];
    }
    let mut x = vec![0.0; p];
    for i in (0..p).rev() {
        let mut s = y[i];
        for k in i + 1..p {
            s -= h[i * p + k] * x[k];
        }
        x[i] = s / h[i * p + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        // H = [[4, 2], [2, 3]], g = [2, 1]: x = [0.5, 0].
        let mut h = vec![4.0, 2.0, 0.0, 3.0];
        let x = cholesky_solve(&mut h, &[2.0, 1.0], 2).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-15 && x[1].abs() < 1e-15, "{x:?}");
        let mut singular = vec![1.0, 1.0, 0.0, 1.0];
        assert!(cholesky_solve(&mut singular, &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn labels_sort_as_scikit_learn_classes() {
        let mut s = Scan::default();
        s.texts
            .extend(["virginica", "setosa", "Zeta"].map(String::from));
        s.first_text = Some(("virginica".into(), Position::default()));
        let (set, ..) = s.labels().unwrap();
        // Python's sorted(): by code point, capitals first.
        assert_eq!(
            set,
            LabelSet::Texts(vec!["Zeta".into(), "setosa".into(), "virginica".into()])
        );
        assert_eq!(set.index(Label::Text("setosa")), Some(1));
        assert_eq!(set.index(Label::Text("rose")), None);
        assert_eq!(set.index(Label::Number(1.0)), None);
    }
}
