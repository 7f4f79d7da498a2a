//! Least squares with an unpenalised intercept, in one streaming pass and
//! O(D²) memory.
//!
//! Each record updates running means and the *centered* co-moment matrix of
//! `z = (x₁, …, x_D, y)` with Welford's update: `δ = z − mean_old`,
//! `mean += δ/n`, `C += δ·δᵀ·(n−1)/n`. Centering is what keeps precision:
//! the raw sums `Σxxᵀ` of data far from zero are huge numbers whose
//! differences are the signal, and subtracting them later cancels most of
//! the digits. With centered sums the intercept also drops out: minimising
//! `Σ(y − b − w·x)² + l2‖w‖²` gives `(Cxx + l2·I) w = Cxy` and
//! `b = ȳ − w·x̄`, so the penalty never touches the bias. The system is
//! solved by Cholesky, which doubles as the singularity test.
//!
//! The residual sum of squares of *any* linear model over the records follows
//! from the same sums, which is how RMSE is reported for training and
//! validation without reading the data twice (a FIFO cannot be re-read):
//! `Σr² = Cyy − 2wᵀCxy + wᵀCxx w + n(ȳ − b − w·x̄)²`. That difference of
//! large terms costs digits: the RMSE is exact to about √ε·std(y) (some
//! 1e-8 of the labels' spread), so a perfect fit reports a tiny RMSE, not 0.
//! Noisy data, the case a metric is for, loses nothing visible.

use crate::predictor::LinearModel;

/// A pivot smaller than this fraction of its diagonal means the feature is
/// (to this precision) a linear combination of the earlier ones: R² above
/// 1 − 1e-10, a condition number past about 1e10 for that direction.
const SINGULAR_RATIO: f64 = 1e-10;

/// Running means and centered co-moments of features and label.
#[derive(Clone, Debug)]
pub struct Moments {
    /// Number of features, D.
    features: usize,
    /// Records pushed.
    n: u64,
    /// Means of x₁..x_D, then y.
    mean: Vec<f64>,
    /// Upper triangle of the (D+1)² co-moment matrix, row by row: row `i`
    /// holds columns `i..=D`.
    comoment: Vec<f64>,
    /// Scratch for δ and δ·(n−1)/n, so a push allocates nothing.
    delta: Vec<f64>,
    scaled: Vec<f64>,
}

impl Moments {
    /// Empty sums for records of `features` features.
    pub fn new(features: usize) -> Moments {
        let k = features + 1;
        Moments {
            features,
            n: 0,
            mean: vec![0.0; k],
            comoment: vec![0.0; k * (k + 1) / 2],
            delta: vec![0.0; k],
            scaled: vec![0.0; k],
        }
    }

    /// Number of features, D.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Records pushed.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Add one record: features `x` (exactly D of them) and label `y`.
    #[inline]
    pub fn push(&mut self, x: &[f64], y: f64) {
        debug_assert_eq!(x.len(), self.features);
        self.n += 1;
        let inv = 1.0 / self.n as f64;
        let keep = 1.0 - inv;
        let k = self.features;
        for (((d, s), m), &v) in self
            .delta
            .iter_mut()
            .zip(&mut self.scaled)
            .zip(&mut self.mean)
            .zip(x.iter().chain(std::iter::once(&y)))
        {
            *d = v - *m;
            *m += *d * inv;
            *s = *d * keep;
        }
        // Rank-1 update of the upper triangle; each row is a contiguous
        // slice, so the inner loop vectorises.
        let mut start = 0;
        for i in 0..=k {
            let len = k + 1 - i;
            let di = self.delta[i];
            let row = &mut self.comoment[start..start + len];
            for (c, &s) in row.iter_mut().zip(&self.scaled[i..]) {
                *c += di * s;
            }
            start += len;
        }
    }

    /// Means of x₁..x_D, then y.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The upper triangle of the (D+1)² co-moment matrix, row by row (row
    /// `i` holds columns `i..=D`).
    pub fn comoment(&self) -> &[f64] {
        &self.comoment
    }

    /// Sums read back from a file: checks that the parts fit together (the
    /// lengths for D features, finite numbers, a non-negative diagonal), so
    /// a damaged file is an error, never a wrong fit.
    pub fn from_parts(
        features: usize,
        n: u64,
        mean: Vec<f64>,
        comoment: Vec<f64>,
    ) -> Result<Moments, String> {
        let k = features + 1;
        if features == 0 {
            return Err("\"features\" is 0".into());
        }
        if mean.len() != k {
            return Err(format!(
                "\"mean\" has {} values, but {features} features need {k} (the features' means, then the label's)",
                mean.len()
            ));
        }
        if comoment.len() != k * (k + 1) / 2 {
            return Err(format!(
                "\"comoment\" has {} values, but {features} features need {} (the upper triangle of a {k}×{k} matrix)",
                comoment.len(),
                k * (k + 1) / 2
            ));
        }
        if mean.iter().chain(&comoment).any(|v| !v.is_finite()) {
            return Err("\"mean\" and \"comoment\" must be finite numbers".into());
        }
        let m = Moments {
            features,
            n,
            mean,
            comoment,
            delta: vec![0.0; k],
            scaled: vec![0.0; k],
        };
        if (0..k).any(|i| m.c(i, i) < 0.0) {
            return Err("\"comoment\" has a negative diagonal entry (a sum of squares)".into());
        }
        Ok(m)
    }

    /// Add the records summed in `other`, as if they had been pushed here:
    /// the pairwise update of Chan, Golub and LeVeque ("Updating formulae
    /// and a pairwise algorithm for computing sample variances", 1979), for
    /// means and co-moments. With `δ = mean_b − mean_a` and `n = n_a + n_b`:
    /// `mean = mean_a + δ·n_b/n`, `C = C_a + C_b + δ·δᵀ·n_a·n_b/n`. Like
    /// the per-record update it works on centred sums, so it keeps the
    /// precision the raw sums would lose. Both must have the same D.
    pub fn merge(&mut self, other: &Moments) {
        debug_assert_eq!(self.features, other.features);
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            self.n = other.n;
            self.mean.copy_from_slice(&other.mean);
            self.comoment.copy_from_slice(&other.comoment);
            return;
        }
        let (na, nb) = (self.n as f64, other.n as f64);
        let n = na + nb;
        let k = self.features + 1;
        for ((d, a), b) in self.delta.iter_mut().zip(&self.mean).zip(&other.mean) {
            *d = b - a;
        }
        let f = na * nb / n;
        let mut start = 0;
        for i in 0..k {
            let len = k - i;
            let di = self.delta[i] * f;
            let row = &mut self.comoment[start..start + len];
            for ((c, &cb), &dj) in row
                .iter_mut()
                .zip(&other.comoment[start..start + len])
                .zip(&self.delta[i..])
            {
                *c += cb + di * dj;
            }
            start += len;
        }
        let share = nb / n;
        for (m, &d) in self.mean.iter_mut().zip(&self.delta) {
            *m += d * share;
        }
        self.n += other.n;
    }

    /// Co-moment `C[i][j]`, `i, j` in `0..=D` (D is the label).
    fn c(&self, i: usize, j: usize) -> f64 {
        let (i, j) = if i <= j { (i, j) } else { (j, i) };
        let k = self.features + 1;
        // Row i starts after rows 0..i, of lengths k, k−1, …: i(2k − i + 1)/2.
        self.comoment[i * (2 * k - i + 1) / 2 + (j - i)]
    }

    /// Fit `y ≈ b + w·x` with L2 penalty `l2` on `w`.
    pub fn solve(&self, l2: f64) -> Result<LinearModel, String> {
        let d = self.features;
        if self.n == 0 {
            return Err("no records to fit".into());
        }
        // A = Cxx + l2·I, lower triangle by rows, factored in place.
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..=i {
                a[i * d + j] = self.c(j, i) + if i == j { l2 } else { 0.0 };
            }
        }
        for j in 0..d {
            let diag = a[j * d + j];
            let mut pivot = diag;
            for k in 0..j {
                pivot -= a[j * d + k] * a[j * d + k];
            }
            // Also catches NaN: a comparison with NaN is false.
            let healthy = pivot > SINGULAR_RATIO * diag && diag > 0.0;
            if !healthy {
                return Err(self.singular_reason(j, l2));
            }
            let l = pivot.sqrt();
            a[j * d + j] = l;
            for i in j + 1..d {
                let mut s = a[i * d + j];
                for k in 0..j {
                    s -= a[i * d + k] * a[j * d + k];
                }
                a[i * d + j] = s / l;
            }
        }
        // L·Lᵀ·w = Cxy: forward, then back substitution.
        let mut w: Vec<f64> = (0..d).map(|i| self.c(i, d)).collect();
        for i in 0..d {
            let s: f64 = (0..i).map(|k| a[i * d + k] * w[k]).sum();
            w[i] = (w[i] - s) / a[i * d + i];
        }
        for i in (0..d).rev() {
            let s: f64 = (i + 1..d).map(|k| a[k * d + i] * w[k]).sum();
            w[i] = (w[i] - s) / a[i * d + i];
        }
        let bias = self.mean[d] - w.iter().zip(&self.mean).map(|(w, m)| w * m).sum::<f64>();
        if !bias.is_finite() || w.iter().any(|v| !v.is_finite()) {
            return Err(self.singular_reason(d.saturating_sub(1), l2));
        }
        Ok(LinearModel { bias, weights: w })
    }

    /// Why pivot `j` vanished, in words a user can act on.
    fn singular_reason(&self, j: usize, l2: f64) -> String {
        let d = self.features;
        let n = self.n;
        let fix = if l2 > 0.0 {
            "; drop the column or raise the hyperparameter l2"
        } else {
            "; drop the column or set the hyperparameter l2 > 0"
        };
        let head =
            format!("singular system: cannot fit {d} weights and a bias to {n} training records");
        if n <= d as u64 && l2 == 0.0 {
            return format!(
                "{head}: fewer records than features + 1 (need at least {}), so the fit is not unique; add records or set the hyperparameter l2 > 0",
                d + 1
            );
        }
        // Features are 1-based in messages, CSV column = feature + 1.
        let name = |f: usize| format!("feature {} (CSV column {})", f + 1, f + 2);
        if self.c(j, j) <= 0.0 {
            return format!(
                "{head}: {} is constant (every record has {}){fix}",
                name(j),
                self.mean[j]
            );
        }
        for i in 0..j {
            let denom = (self.c(i, i) * self.c(j, j)).sqrt();
            if denom > 0.0 && (self.c(i, j) / denom).abs() > 1.0 - 1e-9 {
                return format!(
                    "{head}: {} duplicates {} (the columns are equal up to scale and offset){fix}",
                    name(j),
                    name(i)
                );
            }
        }
        format!(
            "{head}: {} is a linear combination of earlier features (collinear columns){fix}",
            name(j)
        )
    }

    /// Residual sum of squares of `model` over the pushed records.
    pub fn sse(&self, model: &LinearModel) -> f64 {
        let d = self.features;
        let w = &model.weights;
        let mut quad = 0.0;
        for i in 0..d {
            let row: f64 = w.iter().enumerate().map(|(j, wj)| self.c(i, j) * wj).sum();
            quad += w[i] * (row - 2.0 * self.c(i, d));
        }
        let offset =
            self.mean[d] - model.bias - w.iter().zip(&self.mean).map(|(w, m)| w * m).sum::<f64>();
        // Rounding can take an exact fit a hair below zero.
        (self.c(d, d) + quad + self.n as f64 * offset * offset).max(0.0)
    }

    /// Root mean squared error of `model` over the pushed records.
    pub fn rmse(&self, model: &LinearModel) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        (self.sse(model) / self.n as f64).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (splitmix64), uniform in [-1, 1).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    fn rows(n: usize, d: usize, offset: f64, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = Rng(seed);
        (0..n)
            .map(|_| (0..d).map(|_| offset + 10.0 * rng.next()).collect())
            .collect()
    }

    fn fit(
        data: &[Vec<f64>],
        y: impl Fn(&[f64]) -> f64,
        l2: f64,
    ) -> (Moments, Result<LinearModel, String>) {
        let mut m = Moments::new(data[0].len());
        for x in data {
            m.push(x, y(x));
        }
        let r = m.solve(l2);
        (m, r)
    }

    #[test]
    fn recovers_exact_weights_far_from_the_origin() {
        // Features around 1e6 with a spread of 10: raw sums would lose the
        // spread to cancellation; centered sums keep it.
        let w = [0.5, -2.0, 3.25, 0.0, 1e-3];
        let data = rows(2000, w.len(), 1e6, 7);
        let (m, r) = fit(
            &data,
            |x| 4.0 + x.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>(),
            0.0,
        );
        let model = r.unwrap();
        for (got, want) in model.weights.iter().zip(&w) {
            assert!((got - want).abs() < 1e-7, "{got} vs {want}");
        }
        assert!((model.bias - 4.0).abs() < 1e-1, "bias {}", model.bias);
        assert!(m.rmse(&model) < 1e-6);
    }

    #[test]
    fn merged_sums_equal_the_sums_of_all_records() {
        // Shards from different places (offsets 0, 1e4, -50): the δ term of
        // the merge carries the difference of their means.
        let shards = [
            rows(700, 4, 0.0, 21),
            rows(3, 4, 1e4, 22),
            rows(1300, 4, -50.0, 23),
        ];
        let y = |x: &[f64]| 1.5 - x[0] + 0.25 * x[1] + 2.0 * x[3] + (x[2] * 7.0).sin();
        let mut whole = Moments::new(4);
        let mut merged = Moments::new(4);
        // An empty side is a no-op in either position.
        merged.merge(&Moments::new(4));
        for shard in &shards {
            let mut part = Moments::new(4);
            for x in shard {
                whole.push(x, y(x));
                part.push(x, y(x));
            }
            merged.merge(&part);
        }
        merged.merge(&Moments::new(4));
        assert_eq!(merged.count(), whole.count());
        let close = |a: f64, b: f64, scale: f64| (a - b).abs() <= 1e-12 * scale;
        let scale = whole.mean.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (a, b) in merged.mean.iter().zip(&whole.mean) {
            assert!(close(*a, *b, scale), "mean {a} vs {b}");
        }
        let scale = whole.comoment.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (a, b) in merged.comoment.iter().zip(&whole.comoment) {
            assert!(close(*a, *b, scale), "comoment {a} vs {b}");
        }
        for l2 in [0.0, 3.0] {
            let (a, b) = (merged.solve(l2).unwrap(), whole.solve(l2).unwrap());
            for (u, v) in a.weights.iter().zip(&b.weights).chain([(&a.bias, &b.bias)]) {
                assert!((u - v).abs() <= 1e-9 * v.abs().max(1.0), "{u} vs {v}");
            }
        }
    }

    #[test]
    fn parts_that_do_not_fit_together_are_refused() {
        let mut m = Moments::new(2);
        m.push(&[1.0, 2.0], 3.0);
        m.push(&[2.0, 0.0], 1.0);
        let back = Moments::from_parts(2, 2, m.mean.clone(), m.comoment.clone()).unwrap();
        assert_eq!(back.comoment, m.comoment);
        let e = Moments::from_parts(3, 2, m.mean.clone(), m.comoment.clone()).unwrap_err();
        assert!(
            e.contains("\"mean\" has 3 values, but 3 features need 4"),
            "{e}"
        );
        let e = Moments::from_parts(2, 2, m.mean.clone(), vec![0.0; 5]).unwrap_err();
        assert!(e.contains("\"comoment\" has 5 values"), "{e}");
        let mut bad = m.comoment.clone();
        bad[0] = -1.0;
        let e = Moments::from_parts(2, 2, m.mean.clone(), bad).unwrap_err();
        assert!(e.contains("negative diagonal"), "{e}");
        let e = Moments::from_parts(2, 2, vec![f64::NAN, 0.0, 0.0], m.comoment.clone());
        assert!(e.unwrap_err().contains("finite"));
    }

    #[test]
    fn sse_from_sums_matches_direct_residuals() {
        let data = rows(500, 3, 2.0, 11);
        let mut rng = Rng(5);
        let ys: Vec<f64> = data
            .iter()
            .map(|x| x[0] - 2.0 * x[2] + rng.next())
            .collect();
        let mut m = Moments::new(3);
        for (x, &y) in data.iter().zip(&ys) {
            m.push(x, y);
        }
        // Any model, not only the fitted one (that is what validation needs).
        let model = LinearModel {
            bias: 0.3,
            weights: vec![0.9, 0.1, -1.8],
        };
        let direct: f64 = data
            .iter()
            .zip(&ys)
            .map(|(x, y)| (y - model.predict_one(x)).powi(2))
            .sum();
        assert!(
            (m.sse(&model) - direct).abs() < 1e-9 * direct,
            "{} vs {direct}",
            m.sse(&model)
        );
    }

    #[test]
    fn l2_shrinks_weights_but_not_the_bias() {
        let data = rows(300, 2, 0.0, 3);
        let y = |x: &[f64]| 100.0 + 2.0 * x[0] - x[1];
        let (_, plain) = fit(&data, y, 0.0);
        let (_, ridge) = fit(&data, y, 1e3);
        let (m, huge) = fit(&data, y, 1e15);
        let norm = |w: &[f64]| w.iter().map(|v| v * v).sum::<f64>();
        let (plain, ridge, huge) = (plain.unwrap(), ridge.unwrap(), huge.unwrap());
        assert!(norm(&ridge.weights) < norm(&plain.weights));
        assert!(norm(&huge.weights) < 1e-12);
        // With the weights gone the bias is the label's mean, not 0.
        let mean_y = data.iter().map(|x| y(x)).sum::<f64>() / data.len() as f64;
        assert!(
            (huge.bias - mean_y).abs() < 1e-6,
            "{} vs {mean_y}",
            huge.bias
        );
        assert!(m.rmse(&huge) > 1.0);
    }

    #[test]
    fn singular_systems_name_their_cause() {
        let mut data = rows(50, 3, 0.0, 9);
        let y = |x: &[f64]| x[0] + x[1];
        for x in &mut data {
            x[1] = 7.0;
        }
        let e = fit(&data, y, 0.0).1.unwrap_err();
        assert!(
            e.starts_with("singular system") && e.contains("feature 2 (CSV column 3) is constant"),
            "{e}"
        );
        assert!(fit(&data, y, 0.1).1.is_ok(), "l2 > 0 makes it solvable");
        for x in &mut data {
            x[1] = 3.0 * x[0] - 1.0;
        }
        let e = fit(&data, y, 0.0).1.unwrap_err();
        assert!(
            e.contains("feature 2 (CSV column 3) duplicates feature 1 (CSV column 2)"),
            "{e}"
        );
        for x in &mut data {
            x[1] = 7.0 * (x[0] * 1e3).sin();
            x[2] = x[0] + 0.5 * x[1];
        }
        let e = fit(&data, y, 0.0).1.unwrap_err();
        assert!(
            e.contains("feature 3 (CSV column 4) is a linear combination"),
            "{e}"
        );
        let few = rows(3, 3, 0.0, 1);
        let e = fit(&few, y, 0.0).1.unwrap_err();
        assert!(
            e.contains("fewer records than features + 1 (need at least 4)"),
            "{e}"
        );
    }
}
