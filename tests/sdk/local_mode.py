"""The SageMaker Python SDK (v2, `sagemaker<3`) in local mode against our image.

Run by tests/container.rs (the SDK local-mode test) with the venv that scripts/setup.sh creates:

    .venv-sdk/bin/python tests/sdk/local_mode.py --image IMAGE --mmp MMP --work DIR --port PORT

It drives the real client end to end, as a user would:

1. `Estimator(...).fit({"training": "file://..."})` trains with `IMAGE train`
   (docker-compose, /opt/ml mounted by the SDK); the model.tar.gz it packs must
   hold the least-squares weights of the noiseless data. Then the same with
   `instance_count=2` (FullyReplicated, the only distribution local mode
   has): the merged model.tar.gz must hold one model.json, which scores as
   the single-instance one.
2. `Model(...).transformer(strategy="MultiRecord", assemble_with="Line")
   .transform(file://..., split_type="Line")` runs a Batch Transform job; every
   `.out` file must hold `mmp score`'s predictions for its input. Local mode
   writes its own `\\n` after every response under AssembleWith=Line, so each
   response leaves one blank line behind it; the blank lines are counted (one
   per request) and the predictions compared without them.
3. `Model(...).deploy(instance_type="local")` + `Predictor.predict` with
   CSVSerializer / CSVDeserializer: the answers of `mmp score`.

Nothing may leave the machine: before the SDK is imported, `socket.getaddrinfo`
and `socket.socket.connect` are wrapped so that any host other than loopback,
`localhost` (the SDK's docker host here) or a Unix socket raises and is
recorded; the script fails if anything was recorded, even if the SDK
swallowed the error (its telemetry does). The AWS configuration is isolated
(no ~/.aws, no instance metadata), the role is a dummy ARN with a "/" (so the
SDK does not ask IAM), every URI is file://, telemetry is opted out.

Prints `SDK-RESULT {json}` lines (timings, counts) for the Rust test and exits
0 on success, 1 on a failed check (with the reason on stderr).
"""

import argparse
import ipaddress
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

# ------------------------------------------------------------ network guard

ALLOWED_HOSTS = {"localhost", "ip6-localhost", "ip6-loopback"}
VIOLATIONS = []


def _host_allowed(host):
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = host.strip("[]").lower()
    if host in ALLOWED_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _host_allowed(host):
        VIOLATIONS.append(f"getaddrinfo({host!r})")
        raise socket.gaierror(socket.EAI_NONAME, f"test network guard: {host!r} is not local")
    return _real_getaddrinfo(host, *args, **kwargs)


def _check_address(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0] if isinstance(address, tuple) else address
        if not _host_allowed(host):
            VIOLATIONS.append(f"connect({address!r})")
            raise OSError(f"test network guard: connection to {address!r} is not local")


def _guarded_connect(self, address):
    _check_address(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check_address(self, address)
    return _real_connect_ex(self, address)


socket.getaddrinfo = _guarded_getaddrinfo
socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex


def _self_test_guard():
    """The guard is in place: a public name and a public address are refused
    (without any packet leaving), loopback is not."""
    for probe in (lambda: socket.getaddrinfo("aws.amazon.com", 443),
                  lambda: socket.create_connection(("169.254.169.254", 80), timeout=0.1)):
        try:
            probe()
        except OSError as e:
            assert "test network guard" in str(e), e
        else:
            raise AssertionError("the network guard let a non-local host through")
    assert len(VIOLATIONS) == 2, VIOLATIONS
    VIOLATIONS.clear()
    socket.getaddrinfo("localhost", 80)


_self_test_guard()


# ------------------------------------------------------------ helpers

ROLE = "arn:aws:iam::111111111111:role/service-role/mmp-local-test"
# The model the training data is generated from (the fixtures' model).
BIAS = 0.5
WEIGHTS = [1.0, -2.0, 0.25]


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def result(**kv):
    print("SDK-RESULT " + json.dumps(kv), flush=True)


def mmp_score(mmp, model_dir, path):
    """`mmp score`'s CSV predictions for one input file (the reference)."""
    out = subprocess.run(
        [mmp, "score", "--model-dir", str(model_dir), "-t", "csv", "-a", "csv", str(path)],
        check=True,
        stdout=subprocess.PIPE,
    )
    return out.stdout.decode().splitlines()


def write_data(work):
    """Training data (label first, noiseless), batch inputs, predict rows."""
    train = work / "train"
    train.mkdir()
    rows = []
    for i in range(200):
        x = [((i * 7) % 13) - 6.0, ((i * 5) % 11) * 0.5, ((i * 3) % 17) - 8.0]
        y = BIAS + sum(w * v for w, v in zip(WEIGHTS, x))
        rows.append([y] + x)
    (train / "part-0.csv").write_text("".join(",".join(repr(v) for v in r) + "\n" for r in rows))

    batch = work / "batch"
    batch.mkdir()
    # small.csv: one request. big.csv: about 2.2 MB, more than MaxPayloadInMB=1,
    # so MultiRecord splits it into several requests.
    (batch / "small.csv").write_text("1,2,3\n4,5,6\n-1.5,0,8\n")
    lines = []
    for i in range(160000):
        lines.append(f"{i % 97 - 48},{(i * 31) % 101 / 4},{-(i % 13) * 1.5}\n")
    (batch / "big.csv").write_text("".join(lines))
    return train, batch


def extract_model(model_data, dest):
    check(model_data.startswith("file://"), f"model_data is not a local file: {model_data}")
    tar_path = Path(model_data[len("file://"):])
    check(tar_path.is_file(), f"no model tarball at {tar_path}")
    dest.mkdir()
    with tarfile.open(tar_path) as tar:
        names = tar.getnames()
        tar.extractall(dest, filter="data")
    return names


# ------------------------------------------------------------ the scenarios


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--mmp", required=True, help="an mmp binary, for the reference predictions")
    ap.add_argument("--work", required=True, type=Path, help="an empty scratch directory")
    ap.add_argument("--port", required=True, type=int, help="host port for the serving container")
    args = ap.parse_args()
    work = args.work.resolve()

    # An isolated AWS configuration: a region, no profile, no credentials,
    # no instance metadata service.
    os.environ["SAGEMAKER_SUPPRESS_V2_WARNING"] = "1"
    os.environ["AWS_DEFAULT_REGION"] = "us-west-2"
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ["AWS_CONFIG_FILE"] = str(work / "no-aws-config")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(work / "no-aws-credentials")
    for k in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        os.environ.pop(k, None)

    import sagemaker
    from sagemaker.deserializers import CSVDeserializer
    from sagemaker.estimator import Estimator
    from sagemaker.local import LocalSession
    from sagemaker.model import Model
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import CSVSerializer

    result(sdk_version=sagemaker.__version__)

    container_root = work / "sagemaker-local"
    container_root.mkdir()
    session = LocalSession(
        sagemaker_config={
            "SchemaVersion": "1.0",
            "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
        }
    )
    session.config = {
        "local": {
            "local_code": True,
            "serving_port": args.port,
            "container_root": str(container_root),
        }
    }

    train_dir, batch_dir = write_data(work)

    # 1. Training.
    t0 = time.monotonic()
    estimator = Estimator(
        image_uri=args.image,
        role=ROLE,
        instance_count=1,
        instance_type="local",
        output_path=f"file://{work / 'training-output'}",
        hyperparameters={"l2": 0},
        sagemaker_session=session,
    )
    estimator.fit({"training": f"file://{train_dir}"}, wait=True, logs=True)
    names = extract_model(estimator.model_data, work / "model")
    check("model.json" in [n.lstrip("./") for n in names],
          f"model.tar.gz holds {names}, not model.json")
    model = json.loads((work / "model" / "model.json").read_text())
    check(abs(model["bias"] - BIAS) < 1e-9 and all(
        abs(a - b) < 1e-9 for a, b in zip(model["weights"], WEIGHTS)) and len(model["weights"]) == 3,
        f"trained model {model} is not bias={BIAS} weights={WEIGHTS}")
    result(step="fit", seconds=round(time.monotonic() - t0, 2), model_data=estimator.model_data)
    model_dir = work / "model"

    # 1b. Training on two instances. Local mode supports FullyReplicated only
    # (both hosts get all the data) and, like the service, merges every
    # host's /opt/ml/model into one model.tar.gz (image.py retrieve_artifacts),
    # where a file of one host silently replaces the other's. So one
    # model.json in the tarball proves little by itself; tests/container.rs
    # also checks the second host's log line saying it wrote nothing. The
    # model must be the single-instance one: same data, same fit.
    t0 = time.monotonic()
    estimator2 = Estimator(
        image_uri=args.image,
        role=ROLE,
        instance_count=2,
        instance_type="local",
        output_path=f"file://{work / 'training-output-2'}",
        hyperparameters={"l2": 0},
        sagemaker_session=session,
    )
    estimator2.fit({"training": f"file://{train_dir}"}, wait=True, logs=True)
    names2 = [n.lstrip("./") for n in extract_model(estimator2.model_data, work / "model-2")]
    names2 = [n for n in names2 if n]
    check(names2 == ["model.json"], f"the two-instance model.tar.gz holds {names2}, not one model.json")
    model2 = json.loads((work / "model-2" / "model.json").read_text())
    check(model2 == model, f"the two-instance model {model2} is not the single-instance {model}")
    (work / "rows-2.csv").write_text("1,2,3\n4,5,6\n-1.5,0,8\n0.5,0.25,-4\n")
    got2 = mmp_score(args.mmp, work / "model-2", work / "rows-2.csv")
    want2 = mmp_score(args.mmp, model_dir, work / "rows-2.csv")
    check(got2 == want2, f"the two-instance model scores {got2}, the single-instance one {want2}")
    result(step="fit-2-instances", seconds=round(time.monotonic() - t0, 2), files=names2)

    # 2. Batch Transform.
    t0 = time.monotonic()
    sm_model = Model(
        image_uri=args.image,
        model_data=estimator.model_data,
        role=ROLE,
        # Without it, Model.deploy returns None instead of a Predictor.
        predictor_cls=Predictor,
        sagemaker_session=session,
    )
    out_dir = work / "transform-output"
    transformer = sm_model.transformer(
        instance_count=1,
        instance_type="local",
        strategy="MultiRecord",  # local mode cannot read the advertised "MULTI_RECORD"
        assemble_with="Line",
        accept="text/csv",
        max_payload=1,
        output_path=f"file://{out_dir}",
    )
    transformer.transform(
        f"file://{batch_dir}",
        content_type="text/csv",
        split_type="Line",
        wait=True,
        logs=False,
    )
    blank_lines = {}
    for name in ("small.csv", "big.csv"):
        out_file = out_dir / f"{name}.out"
        check(out_file.is_file(), f"no {out_file} (output dir holds {sorted(os.listdir(out_dir))})")
        text = out_file.read_text()
        got = [line for line in text.splitlines() if line != ""]
        want = mmp_score(args.mmp, model_dir, batch_dir / name)
        check(len(got) == len(want), f"{name}.out: {len(got)} predictions, mmp score gives {len(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            check(g == w, f"{name}.out line {i + 1}: {g!r}, mmp score gives {w!r}")
        # Each response ends in our "\n", local mode adds one more: one blank
        # line per request, and the text ends with it.
        blank_lines[name] = text.count("\n\n")
        check(text.endswith("\n\n"), f"{name}.out does not end with a blank line")
    check(blank_lines["small.csv"] == 1, f"small.csv went in {blank_lines['small.csv']} requests, not 1")
    check(blank_lines["big.csv"] >= 2,
          f"big.csv (2.2 MB, MaxPayloadInMB=1) went in {blank_lines['big.csv']} request(s)")
    # The same job by `mmp transform`: its .out files are local mode's, less
    # the blank line local mode writes after each response (the service ends
    # each response with exactly one newline; see the README).
    ours_dir = work / "mmp-transform-output"
    subprocess.run(
        [args.mmp, "transform", "--model-dir", str(model_dir), "--input", str(batch_dir),
         "--output", str(ours_dir), "--content-type", "text/csv", "--accept", "text/csv",
         "--split-type", "Line", "--batch-strategy", "MultiRecord", "--max-payload-mb", "1",
         "--assemble-with", "Line", "-q", "--no-progress"],
        check=True,
    )
    for name in ("small.csv", "big.csv"):
        local = (out_dir / f"{name}.out").read_bytes()
        ours = (ours_dir / f"{name}.out").read_bytes()
        check(local.replace(b"\n\n", b"\n") == ours,
              f"{name}.out: mmp transform's output is not local mode's without its blank lines")
    result(step="transform", seconds=round(time.monotonic() - t0, 2), requests=blank_lines)

    # 3. A realtime endpoint.
    t0 = time.monotonic()
    endpoint_name = f"mmp-local-{os.getpid()}"
    try:
        predictor = sm_model.deploy(
            initial_instance_count=1,
            instance_type="local",
            endpoint_name=endpoint_name,
            serializer=CSVSerializer(),
            deserializer=CSVDeserializer(),
            # Local mode's create_endpoint already waits for /ping; wait=True
            # would only add the SDK's fixed 30 s sleep before its first poll.
            wait=False,
        )
        check(isinstance(predictor, Predictor), f"deploy returned {predictor!r}")
        status = session.sagemaker_client.describe_endpoint(EndpointName=endpoint_name)["EndpointStatus"]
        check(status == "InService", f"endpoint {endpoint_name} is {status}, not InService")
        rows = [[1, 2, 3], [4, 5, 6], [-1.5, 0, 8]]
        got = predictor.predict(rows)
        (work / "rows.csv").write_text("".join(",".join(str(v) for v in r) + "\n" for r in rows))
        want = [[line] for line in mmp_score(args.mmp, model_dir, work / "rows.csv")]
        check(got == want, f"predict gave {got}, mmp score gives {want}")
        one = predictor.predict([0.5, 0.25, -4])
        (work / "one.csv").write_text("0.5,0.25,-4\n")
        want_one = [[line] for line in mmp_score(args.mmp, model_dir, work / "one.csv")]
        check(one == want_one, f"predict of one row gave {one}, mmp score gives {want_one}")
    finally:
        # Stops the serving container (its docker-compose thread) even when
        # deploy or a check failed half-way.
        try:
            session.delete_endpoint(endpoint_name)
        except Exception as e:  # nothing to delete if deploy failed early
            print(f"delete_endpoint({endpoint_name}): {e}", file=sys.stderr)
    result(step="deploy", seconds=round(time.monotonic() - t0, 2))


if __name__ == "__main__":
    status = 0
    try:
        main()
    except CheckFailed as e:
        print(f"SDK-CHECK-FAILED: {e}", file=sys.stderr, flush=True)
        status = 1
    except Exception:  # the SDK's own errors: show them whole
        traceback.print_exc()
        status = 1
    if VIOLATIONS:
        print("SDK-CHECK-FAILED: the SDK tried to reach non-local hosts: " + ", ".join(VIOLATIONS),
              file=sys.stderr, flush=True)
        status = 1
    result(network_violations=VIOLATIONS)
    sys.stdout.flush()
    sys.stderr.flush()
    # Local mode runs docker-compose in non-daemon threads; if one is still
    # waiting on a container, do not hang here (the Rust test removes the
    # containers).
    os._exit(status)
