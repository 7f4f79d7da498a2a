"""Write a scikit-learn data set as mmp training data, with scikit-learn's
own fit on it: the independent reference for tests/classify.rs.

usage: sklearn_reference.py {iris,iris_offset,breast_cancer} L2 OUT_DIR

Writes OUT_DIR/input/data/training/train.csv (label in column 1: iris's
species names, breast cancer's 0/1 targets), OUT_DIR/features.csv (the
same records without labels) and OUT_DIR/expected.json: the classes_,
predict_proba and predict of LogisticRegression(C = 1 / (2 * L2)) fitted
to a tolerance far below the tests' 1e-4.

iris_offset writes iris's features plus 1.7e9 (a Unix timestamp's size)
with the fit on iris: shifting a feature changes only the unpenalised
intercept, so the optimum's probabilities are the same.
"""

import json
import os
import sys

from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def main():
    name, l2, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    offset = 0.0
    if name in ("iris", "iris_offset"):
        d = load_iris()
        x, y = d.data, d.target_names[d.target]
        offset = 1.7e9 if name == "iris_offset" else 0.0
    else:
        d = load_breast_cancer()
        # Standardised, so that lbfgs reaches the optimum (on the raw
        # features it stops short); mmp trains on exactly these numbers.
        x, y = StandardScaler().fit_transform(d.data), d.target
    m = LogisticRegression(C=1.0 / (2.0 * l2), tol=1e-12, max_iter=100000)
    m.fit(x, y)
    assert m.n_iter_.max() < 100000, "scikit-learn did not converge"
    data = os.path.join(out, "input", "data", "training")
    os.makedirs(data, exist_ok=True)
    cell = lambda v: repr(float(v))
    label = lambda v: str(v) if isinstance(v, str) else str(int(v))
    with open(os.path.join(data, "train.csv"), "w") as f:
        for xi, yi in zip(x, y):
            f.write(",".join([label(yi)] + [cell(v + offset) for v in xi]) + "\n")
    with open(os.path.join(out, "features.csv"), "w") as f:
        for xi in x:
            f.write(",".join(cell(v + offset) for v in xi) + "\n")
    expected = {
        "classes": [label(c) for c in m.classes_],
        "proba": m.predict_proba(x).tolist(),
        "predict": [label(v) for v in m.predict(x)],
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main()
