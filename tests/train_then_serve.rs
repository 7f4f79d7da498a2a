//! The training contract's last step: `mmp serve` answers with the model
//! `mmp train` just wrote, and the answers are the fitted line.

use std::io::Write;

use crate::util::*;

#[test]
fn serve_answers_with_the_trained_model() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("input/data/training");
    std::fs::create_dir_all(&data).unwrap();
    // y = 2 + 3·x1 − 0.5·x2, exactly.
    let mut csv = Vec::new();
    for i in 0..200 {
        let (x1, x2) = (i as f64 / 10.0, ((i * 7) % 13) as f64);
        writeln!(csv, "{},{x1},{x2}", 2.0 + 3.0 * x1 - 0.5 * x2).unwrap();
    }
    std::fs::write(data.join("train.csv"), csv).unwrap();
    let o = mmp()
        .args(["train", "--opt-ml"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let model_dir = root.path().join("model");
    let s = Server::start_with(&[], &["--model-dir", model_dir.to_str().unwrap()]);
    let r = s.post("text/csv", None, b"1,1\n10,4\n");
    assert_eq!(r.status, 200);
    let got: Vec<f64> = r.text().lines().map(|l| l.parse().unwrap()).collect();
    let want = [2.0 + 3.0 - 0.5, 2.0 + 30.0 - 2.0];
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
    assert_eq!(got.len(), 2);
}
