//! The container image end to end, with a real Docker engine: the image that
//! `container/build.sh` makes (static binary, `FROM scratch`), run the way
//! SageMaker runs it (`IMAGE serve`, `IMAGE train`), the `container/`
//! scripts, and the SageMaker Python SDK's local mode as the client.
//!
//! Without a Docker engine every test that needs one prints a
//! `SKIPPED: no Docker engine` banner and passes, unless `REQUIRE_DOCKER=1`
//! (`.ci/run` sets it), where it fails. The SDK test follows the same rule
//! for its venv (`scripts/setup.sh` makes `.venv-sdk/`) and docker-compose.
//!
//! The image is built once per test process and tagged `mmp-test:<pid>`
//! (plus `-start` / `-sdk` tags for tests that remove their own tag or must
//! tell their containers apart); an `atexit` hook removes the tags and the
//! containers made from them, and each run first removes what a killed run
//! left behind (tags whose pid no longer exists). The binary is cargo's
//! incremental release build; the image itself takes a second or two.
//!
//! Nothing sleeps to synchronise: readiness is polled, the SIGTERM test
//! waits for the server's own log line.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::{
    self, chunk, chunked_head, golden_expected, golden_inputs, mime, short_of, LAST_CHUNK,
};

/// Repository of every tag these tests make.
const REPO: &str = "mmp-test";
/// The image must stay under this (bytes, as `docker image inspect` counts).
const MAX_IMAGE_BYTES: u64 = 20_000_000;
/// `/ping` must answer 200 this soon after `docker run` returns.
const PING_BOUND: Duration = Duration::from_secs(1);
/// SageMaker sends SIGKILL 30 s after SIGTERM; the container must be gone
/// well before.
const STOP_BOUND: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------- docker

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script(name: &str) -> PathBuf {
    root().join("container").join(name)
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

/// Run docker, require success, return its stdout, trimmed.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether a Docker engine answers (checked once).
fn engine() -> &'static Result<String, String> {
    static ENGINE: OnceLock<Result<String, String>> = OnceLock::new();
    ENGINE.get_or_init(|| {
        match Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().into()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            Err(e) => Err(format!("cannot run docker: {e}")),
        }
    })
}

fn docker_required() -> bool {
    std::env::var("REQUIRE_DOCKER").is_ok_and(|v| v == "1")
}

/// A line on the real stderr, past libtest's capture (which only takes the
/// `eprintln!` macros): skips and measurements show in a plain `cargo test`.
fn say(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// Go on (true), or skip loudly (false), or fail under REQUIRE_DOCKER=1.
/// `what` says what is missing ("no Docker engine").
fn skip_unless(test: &str, what: &str, problem: Option<String>) -> bool {
    let Some(problem) = problem else { return true };
    if docker_required() {
        panic!("REQUIRE_DOCKER=1 and {what}: {problem}");
    }
    say(&format!(
        "\n==================================================================\n\
         SKIPPED: {what} ({test})\n  {problem}\n  (REQUIRE_DOCKER=1 turns this into a failure)\n\
         =================================================================="
    ));
    false
}

/// The gate of every test that needs the engine.
fn need_docker(test: &str) -> bool {
    skip_unless(test, "no Docker engine", engine().as_ref().err().cloned())
}

/// The image, built once per process by container/build.sh.
fn image() -> &'static str {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    match IMAGE.get_or_init(build_image) {
        Ok(tag) => tag,
        Err(e) => panic!("{e}"),
    }
}

fn own_prefix() -> String {
    format!("{}", std::process::id())
}

fn build_image() -> Result<String, String> {
    remove_stale_tags();
    let tag = format!("{REPO}:{}", own_prefix());
    // SAFETY: registers a plain function with the C library's exit hooks.
    unsafe {
        libc::atexit(remove_own_tags_at_exit);
    }
    let started = Instant::now();
    // From another directory: the scripts must not depend on the caller's.
    let out = Command::new(script("build.sh"))
        .arg(&tag)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run container/build.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "container/build.sh {tag} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    say(&format!(
        "measured: container/build.sh {tag} took {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(tag)
}

/// A second tag on the image, for a test that removes it or must tell its
/// containers from the others'.
fn extra_tag(suffix: &str) -> String {
    let tag = format!("{REPO}:{}-{suffix}", own_prefix());
    docker_ok(&["tag", image(), &tag]);
    tag
}

/// Remove the containers made from exactly these image references (the
/// reference as given to `docker run`, not the image id, which other tags
/// and other runs share), then the references.
fn remove_tags(tags: &[String]) {
    if tags.is_empty() {
        return;
    }
    let listing = docker(&["ps", "-a", "--format", "{{.ID}} {{.Image}}"]);
    for line in String::from_utf8_lossy(&listing.stdout).lines() {
        if let Some((id, image)) = line.split_once(' ') {
            if tags.iter().any(|t| t == image) {
                let _ = docker(&["rm", "-f", "-v", id]);
            }
        }
    }
    for tag in tags {
        let _ = docker(&["rmi", tag]);
    }
}

/// Tags of `mmp-test` whose name starts with a pid, grouped by pid.
fn tags_by_pid() -> BTreeMap<u32, Vec<String>> {
    let out = docker(&["images", REPO, "--format", "{{.Tag}}"]);
    let mut map: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for tag in String::from_utf8_lossy(&out.stdout).lines() {
        let pid = tag.split('-').next().unwrap_or("");
        if let Ok(pid) = pid.parse() {
            map.entry(pid).or_default().push(format!("{REPO}:{tag}"));
        }
    }
    map
}

/// What runs that were killed before their exit hook left behind.
fn remove_stale_tags() {
    for (pid, tags) in tags_by_pid() {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tags(&tags);
        }
    }
}

extern "C" fn remove_own_tags_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let me = std::process::id();
        if let Some(tags) = tags_by_pid().remove(&me) {
            remove_tags(&tags);
        }
    });
}

/// A container, removed (with its anonymous volumes) when dropped.
struct Container {
    id: String,
}

impl Container {
    /// `docker run -d ARGS`.
    fn run(args: &[&str]) -> Container {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        Container {
            id: docker_ok(&all),
        }
    }

    /// The host address of the container's port (published on loopback).
    fn addr(&self, port: &str) -> SocketAddr {
        let out = docker_ok(&["port", &self.id, port]);
        out.lines()
            .find_map(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no address in `docker port`: {out:?}"))
    }

    fn logs(&self) -> String {
        let out = docker(&["logs", &self.id]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "--format", format, &self.id])
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.id]);
    }
}

/// `IMAGE serve` with the fixtures' model mounted read-only, port 8080
/// published on a free loopback port. Returns the container, its address and
/// how long after `docker run` returned `/ping` first answered 200.
fn serve(image: &str, extra: &[&str]) -> (Container, SocketAddr, Duration) {
    let model = format!("{}:/opt/ml/model:ro", util::model_dir().display());
    let mut args = vec!["-p", "127.0.0.1::8080", "-v", model.as_str()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[image, "serve"]);
    let c = Container::run(&args);
    let started = Instant::now();
    let addr = c.addr("8080/tcp");
    let ready = wait_ping(&c, addr, started);
    (c, addr, ready)
}

/// Poll `/ping` (a new connection each time, no sleeping) until it answers
/// 200; the time since `started`.
fn wait_ping(c: &Container, addr: SocketAddr, started: Instant) -> Duration {
    let limit = Duration::from_secs(20);
    loop {
        if let Ok(r) = try_request(addr, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n") {
            if r.status == 200 {
                return started.elapsed();
            }
        }
        if started.elapsed() > limit {
            panic!("/ping never answered 200 in {limit:?}; logs:\n{}", c.logs());
        }
        std::thread::yield_now();
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    Ok(s)
}

fn try_request(addr: SocketAddr, raw: &[u8]) -> std::io::Result<util::Response> {
    let mut s = connect(addr)?;
    s.write_all(raw)?;
    util::read_response(&mut BufReader::new(s))
}

fn request(addr: SocketAddr, raw: &[u8]) -> util::Response {
    try_request(addr, raw).expect("request")
}

fn post(addr: SocketAddr, content_type: &str, accept: Option<&str>, body: &[u8]) -> util::Response {
    request(addr, &util::post_request(content_type, accept, body))
}

// ---------------------------------------------------------------- the image

/// True if the ELF file has no interpreter and needs no shared library.
fn elf_is_static(bin: &[u8]) -> bool {
    assert_eq!(&bin[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(bin[4], 2, "not a 64-bit ELF");
    let u16_at = |o: usize| u16::from_le_bytes(bin[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(bin[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bin[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        match u32_at(ph) {
            3 => return false, // PT_INTERP: a dynamic loader
            2 => {
                // PT_DYNAMIC (static-pie has one): no DT_NEEDED entry.
                let (off, size) = (u64_at(ph + 8), u64_at(ph + 32));
                for e in (off..off + size).step_by(16) {
                    match u64_at(e) {
                        0 => break,
                        1 => return false,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    true
}

#[test]
fn the_image_is_one_static_binary_under_20_mb_with_sagemakers_label() {
    if !need_docker("image") {
        return;
    }
    let image = image();
    let size: u64 = docker_ok(&["image", "inspect", "--format", "{{.Size}}", image])
        .parse()
        .unwrap();
    say(&format!(
        "measured: image size {size} bytes ({:.2} MB)",
        size as f64 / 1e6
    ));
    assert!(size < MAX_IMAGE_BYTES, "image is {size} bytes");

    let config: serde_json::Value = serde_json::from_str(&docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        image,
    ]))
    .unwrap();
    for label in [
        "accept-bind-to-port",
        "bidirectional-streaming",
        "multi-models",
    ] {
        assert_eq!(
            config["Labels"][format!("com.amazonaws.sagemaker.capabilities.{label}")],
            "true",
            "{config}"
        );
    }
    // Exec form, no shell, no init: `serve`/`train` arrive as argv[1].
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/mmp"]),
        "{config}"
    );
    assert_eq!(config["Cmd"], serde_json::json!(["serve"]), "{config}");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    // Root, as SageMaker expects.
    assert!(config["User"].as_str().unwrap_or("").is_empty(), "{config}");
    // FROM scratch + one COPY: a single layer.
    let layers = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        image,
    ]);
    assert_eq!(layers, "1", "layers");

    // The binary inside is statically linked.
    let c = Container {
        id: docker_ok(&["create", image]),
    };
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("mmp");
    docker_ok(&["cp", &format!("{}:/mmp", c.id), dest.to_str().unwrap()]);
    let bin = std::fs::read(&dest).unwrap();
    assert!(
        elf_is_static(&bin),
        "/mmp in the image is dynamically linked"
    );
    if let Ok(out) = Command::new("file").arg("-b").arg(&dest).output() {
        let desc = String::from_utf8_lossy(&out.stdout);
        say(&format!("measured: file /mmp: {}", desc.trim()));
        assert!(desc.contains("static"), "{desc}");
    }
}

// ---------------------------------------------------------------- serving

#[test]
fn serve_pings_within_a_second_and_answers_every_golden_input() {
    if !need_docker("serve") {
        return;
    }
    // --read-only: nothing in the image needs to write (there is no /tmp).
    let (c, addr, ready) = serve(image(), &["--read-only"]);
    say(&format!(
        "measured: /ping 200 {:.0} ms after `docker run` returned",
        ready.as_secs_f64() * 1e3
    ));
    assert!(ready < PING_BOUND, "/ping took {ready:?}");

    let r = request(addr, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, 0));
    let r = request(
        addr,
        b"GET /execution-parameters HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let params = r.json();
    assert_eq!(params["BatchStrategy"], "MULTI_RECORD", "{params}");
    assert_eq!(params["MaxPayloadInMB"], 6, "{params}");
    assert!(params["MaxConcurrentTransforms"].as_u64().unwrap() >= 1);

    for input in golden_inputs() {
        let body = std::fs::read(&input).unwrap();
        let content_type = mime(short_of(&input));
        for out in ["csv", "jsonl", "json"] {
            let r = post(addr, content_type, Some(mime(out)), &body);
            assert_eq!(r.status, 200, "{} -> {out}: {}", input.display(), r.text());
            assert!(r.complete);
            assert_eq!(
                r.text(),
                String::from_utf8(golden_expected(&input, out)).unwrap(),
                "{} -> {out}",
                input.display()
            );
        }
    }
    // The WebSocket the bidirectional-streaming label promises is there:
    // the handshake is answered 101 (only the head is read; the socket then
    // belongs to the WebSocket).
    let mut ws = connect(addr).unwrap();
    ws.write_all(
        b"GET /invocations-bidirectional-stream HTTP/1.1\r\nHost: x\r\n\
          Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut head = String::new();
    let mut ws_reader = BufReader::new(ws);
    while !head.ends_with("\r\n\r\n") {
        if ws_reader.read_line(&mut head).unwrap() == 0 {
            break;
        }
    }
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    drop(ws_reader);

    // The image logs one JSON object per line (MODEL_SERVER_LOG_FORMAT=json).
    let logs = c.logs();
    assert!(logs.contains("model loaded; ready"), "{logs}");
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v["level"] != "WARN" && v["level"] != "ERROR", "{line}");
    }

    // PID 1 is mmp itself (exec-form ENTRYPOINT, no shell, no init), so
    // SIGTERM reaches it directly.
    let top = docker_ok(&["top", &c.id, "-o", "pid,args"]);
    let procs: Vec<&str> = top.lines().skip(1).collect();
    assert_eq!(procs.len(), 1, "{top}");
    assert!(procs[0].trim_end().ends_with("/mmp serve"), "{top}");
    let pid1 = docker_ok(&["exec", &c.id, "/mmp", "--version"]);
    assert!(pid1.starts_with("mmp "), "{pid1}");
}

#[test]
fn serve_listens_on_sagemaker_bind_to_port() {
    if !need_docker("bind-to-port") {
        return;
    }
    let model = format!("{}:/opt/ml/model:ro", util::model_dir().display());
    let c = Container::run(&[
        "-e",
        "SAGEMAKER_BIND_TO_PORT=9090",
        "-p",
        "127.0.0.1::9090",
        "-v",
        &model,
        image(),
        "serve",
    ]);
    let addr = c.addr("9090/tcp");
    wait_ping(&c, addr, Instant::now());
    let r = post(addr, "text/csv", None, b"1,2,3\n");
    assert_eq!((r.status, r.text().as_str()), (200, "-1.75\n"));
}

/// Asynchronous Inference needs `Content-Length` answers (README,
/// "Response framing"): with `MMP_RESPONSE_FRAMING=content-length`, an
/// answer over the 4 MiB kept in memory goes to a file in TMPDIR, `/tmp`,
/// which a `FROM scratch` image does not have until `mmp serve` makes it.
#[test]
fn content_length_framing_holds_a_large_answer_in_the_image() {
    if !need_docker("content-length framing") {
        return;
    }
    let (c, addr, _) = serve(image(), &["-e", "MMP_RESPONSE_FRAMING=content-length"]);
    let n = 800_000;
    let r = post(addr, "text/csv", None, &util::csv_rows(0, n));
    assert_eq!(r.status, 200, "{}\nlogs:\n{}", r.text(), c.logs());
    assert!(r.body.len() > 4 << 20, "{} bytes", r.body.len());
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    let text = r.text();
    let got: Vec<f64> = text.lines().map(|l| l.parse().unwrap()).collect();
    let want: Vec<f64> = (0..n).map(|i| util::linear([i as f64, 1.0, 2.0])).collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------- multi-model

/// One request with a body (and a Content-Length) on a new connection.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> util::Response {
    request(addr, &util::raw_request(method, path, headers, body))
}

/// As SageMaker runs a multi-model endpoint: `SAGEMAKER_MULTI_MODEL=true`, no
/// `/opt/ml/model`, the models under `/opt/ml/models/{model_name}/model`
/// (mounted read-only here), a memory limit, and the calls SageMaker makes:
/// load, invoke with `X-Amzn-SageMaker-Target-Model`, list, unload, and a
/// load that does not fit (507, so SageMaker would unload another).
#[test]
fn multi_model_endpoint_loads_invokes_and_unloads_as_sagemaker_does() {
    if !need_docker("multi-model endpoint") {
        return;
    }
    let models = tempfile::tempdir().unwrap();
    for name in ["alpha", "beta"] {
        let dir = models.path().join(name).join("model");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(util::model_dir().join("model.json"), dir.join("model.json")).unwrap();
    }
    // An artifact larger than the container's whole memory limit.
    let big = models.path().join("big/model");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::copy(util::model_dir().join("model.json"), big.join("model.json")).unwrap();
    std::fs::File::create(big.join("weights.bin"))
        .unwrap()
        .set_len(80 << 20)
        .unwrap();
    let mount = format!("{}:/opt/ml/models:ro", models.path().display());
    let c = Container::run(&[
        "-e",
        "SAGEMAKER_MULTI_MODEL=true",
        "-m",
        "64m",
        "-p",
        "127.0.0.1::8080",
        "-v",
        &mount,
        image(),
        "serve",
    ]);
    let addr = c.addr("8080/tcp");
    // Ready with no model loaded.
    let ready = wait_ping(&c, addr, Instant::now());
    say(&format!(
        "measured: multi-model /ping 200 after {} ms",
        ready.as_millis()
    ));
    let json = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    let load = |name: &str| {
        let body =
            serde_json::json!({"model_name": name, "url": format!("/opt/ml/models/{name}/model")});
        call(addr, "POST", "/models", &json, body.to_string().as_bytes())
    };
    let invoke = |name: &str| {
        call(
            addr,
            "POST",
            &format!("/models/{name}/invoke"),
            &[
                ("Content-Type", "text/csv"),
                ("Accept", "text/csv"),
                ("X-Amzn-SageMaker-Target-Model", &format!("{name}.tar.gz")),
            ],
            b"1,2,3\n",
        )
    };
    let started = Instant::now();
    let r = load("alpha");
    say(&format!(
        "measured: multi-model load in the container {} ms",
        started.elapsed().as_millis()
    ));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), c.logs());
    assert_eq!(load("beta").status, 200);
    assert_eq!(load("alpha").status, 409);
    for name in ["alpha", "beta"] {
        let r = invoke(name);
        assert_eq!((r.status, r.text().as_str()), (200, "-1.75\n"), "{name}");
    }
    let r = call(
        addr,
        "GET",
        "/models",
        &[("Accept", "application/json")],
        b"",
    );
    assert_eq!(
        r.json(),
        serde_json::json!({"models": [
            {"modelName": "alpha", "modelUrl": "/opt/ml/models/alpha/model"},
            {"modelName": "beta", "modelUrl": "/opt/ml/models/beta/model"},
        ]})
    );
    // The cgroup limit (64 MiB) is the budget: 80 MiB cannot fit.
    let r = load("big");
    assert_eq!(r.status, 507, "{}", r.text());
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("67108864"),
        "the budget does not come from the cgroup: {msg}"
    );
    // Unload, then it is gone.
    assert_eq!(call(addr, "DELETE", "/models/alpha", &[], b"").status, 200);
    assert_eq!(invoke("alpha").status, 404);
    assert_eq!(call(addr, "GET", "/models/alpha", &[], b"").status, 404);
    assert_eq!(invoke("beta").status, 200);
    // The invoke log line names the model and SageMaker's TargetModel
    // (request lines reach the log within 100 ms: poll for it).
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let logs = c.logs();
        if let Some(l) = logs.lines().find(|l| l.contains("beta.tar.gz")) {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with the target model:\n{logs}"
        );
        std::thread::yield_now();
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["model"], "beta");
    assert_eq!(v["target_model"], "beta.tar.gz");
}

#[test]
fn docker_stop_lets_a_streaming_request_finish_and_exits_0() {
    if !need_docker("docker stop") {
        return;
    }
    let (c, addr, _) = serve(image(), &[]);

    // The server's log, line by line, as it is written.
    let mut follow = Command::new("docker")
        .args(["logs", "-f", &c.id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, log_lines) = mpsc::channel::<String>();
    for pipe in [
        Box::new(follow.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(follow.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let wait_log = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match log_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needle:?}; logs:\n{}", c.logs()),
            }
        }
    };

    // A chunked request whose body stays open: the status line and the
    // first predictions come back while it is.
    let input = util::fixtures().join("golden/basic.csv");
    let body = std::fs::read(&input).unwrap();
    let split = body.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut conn = connect(addr).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut raw = chunked_head("text/csv", None);
    raw.extend(chunk(&body[..split]));
    conn.write_all(&raw).unwrap();
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");

    // SIGTERM (docker stop gives SIGKILL after 30 s, as SageMaker does).
    let stop_started = Instant::now();
    let id = c.id.clone();
    let stopper = std::thread::spawn(move || {
        let out = docker(&["stop", "-t", "30", &id]);
        (out, stop_started.elapsed())
    });
    wait_log("received SIGTERM");
    wait_log("waiting for in-flight requests");

    // Finish the body after the stop was sent; the answer must be whole.
    let mut rest = chunk(&body[split..]);
    rest.extend_from_slice(LAST_CHUNK);
    conn.write_all(&rest).unwrap();
    let mut whole = BufReader::new(status_line.as_bytes().chain(reader));
    let response = util::read_response(&mut whole).unwrap();
    let finished = stop_started.elapsed();
    assert_eq!(response.status, 200);
    assert!(response.complete, "the response was cut: {response:?}");
    assert_eq!(response.body, golden_expected(&input, "csv"));

    let (out, stopped) = stopper.join().unwrap();
    assert!(
        out.status.success(),
        "docker stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = follow.kill();
    let _ = follow.wait();
    say(&format!(
        "measured: docker stop -> response complete {:.0} ms, \
         container exited {:.0} ms after SIGTERM",
        finished.as_secs_f64() * 1e3,
        stopped.as_secs_f64() * 1e3
    ));
    assert!(stopped < STOP_BOUND, "stop took {stopped:?}");
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "{}", c.logs());
    assert_eq!(c.inspect("{{.State.OOMKilled}}"), "false");
    assert!(c.logs().contains("all requests completed; exiting"));
}

// ---------------------------------------------------------------- training

/// A SageMaker training tree in a temporary directory: noiseless data from
/// the fixtures' model (y = 0.5 + x1 - 2 x2 + 0.25 x3), label first.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new(with_training_data: bool) -> Tree {
        let tree = Tree {
            dir: tempfile::tempdir().unwrap(),
        };
        let write = |rel: &str, text: &str| {
            let p = tree.dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("input/config/hyperparameters.json", r#"{"l2": "0"}"#);
        write(
            "input/config/inputdataconfig.json",
            r#"{"training": {"TrainingInputMode": "File", "ContentType": "text/csv"}}"#,
        );
        write(
            "input/config/resourceconfig.json",
            r#"{"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}"#,
        );
        if with_training_data {
            let mut csv = String::new();
            for i in 0..50 {
                let x = [(i % 7) as f64 - 3.0, (i % 5) as f64 * 0.5, (i % 11) as f64];
                let y = 0.5 + x[0] - 2.0 * x[1] + 0.25 * x[2];
                csv.push_str(&format!("{y},{},{},{}\n", x[0], x[1], x[2]));
            }
            write("input/data/training/part-0.csv", &csv);
        }
        // The container writes as root. Directories it writes into are made
        // here, world-writable, so that a non-root test user can still
        // delete what it wrote.
        for d in ["model", "output"] {
            let p = tree.dir.path().join(d);
            std::fs::create_dir_all(&p).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        tree
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn mount(&self) -> String {
        format!("{}:/opt/ml", self.dir.path().display())
    }

    /// Delete it, and say so if that fails (root-owned leftovers).
    fn remove(self) {
        let path = self.dir.path().to_path_buf();
        if let Err(e) = self.dir.close() {
            panic!("cannot remove the training tree {}: {e}", path.display());
        }
    }
}

fn assert_fixture_model(tree: &Tree) {
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tree.path("model/model.json")).unwrap()).unwrap();
    let close = |v: &serde_json::Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-9;
    assert!(close(&model["bias"], 0.5), "{model}");
    let w = model["weights"].as_array().unwrap();
    assert_eq!(w.len(), 3, "{model}");
    for (g, want) in w.iter().zip([1.0, -2.0, 0.25]) {
        assert!(close(g, want), "{model}");
    }
}

#[test]
fn docker_run_train_writes_the_model_and_a_failure_leaves_output_failure() {
    if !need_docker("train") {
        return;
    }
    let tree = Tree::new(true);
    let mount = tree.mount();
    // --read-only: the job writes nothing outside /opt/ml.
    let out = docker(&["run", "--rm", "--read-only", "-v", &mount, image(), "train"]);
    assert!(
        out.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_fixture_model(&tree);
    assert!(!tree.path("output/failure").exists());
    tree.remove();

    // No training channel: output/failure, and a non-zero exit (255).
    let tree = Tree::new(false);
    let mount = tree.mount();
    let out = docker(&["run", "--rm", "-v", &mount, image(), "train"]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let failure = std::fs::read_to_string(tree.path("output/failure")).unwrap();
    assert!(failure.contains("channel \"training\""), "{failure}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(failure.lines().next().unwrap()));
    assert!(!tree.path("model/model.json").exists());
    tree.remove();
}

/// The AWS sample's flow, in the container: train on iris with the species
/// names in column 1 (`IMAGE train`, predictor_type multiclass_classifier),
/// then serve that model (`IMAGE serve`) and send a headerless iris feature
/// CSV: one species name first on each line, scikit-learn's prediction
/// (tests/reference/sklearn_reference.py, run by .venv-ref's python, the
/// independent reference tests/classify.rs uses).
#[test]
fn docker_run_train_on_iris_species_then_serve_answers_scikit_learns_species() {
    const TEST: &str = "iris in the container";
    if !need_docker(TEST) {
        return;
    }
    let python = root().join(".venv-ref/bin/python");
    let missing = (!python.exists()).then(|| {
        format!(
            "{} is missing: run scripts/setup.sh (it installs scikit-learn)",
            python.display()
        )
    });
    if !skip_unless(TEST, "no scikit-learn venv", missing) {
        return;
    }
    let tree = Tree::new(false);
    std::fs::write(
        tree.path("input/config/hyperparameters.json"),
        r#"{"predictor_type": "multiclass_classifier", "l2": "0.5"}"#,
    )
    .unwrap();
    // Writes input/data/training/train.csv (species, 4 features),
    // features.csv (the 4 features only) and expected.json.
    let o = Command::new(&python)
        .arg(root().join("tests/reference/sklearn_reference.py"))
        .args(["iris", "0.5"])
        .arg(tree.path(""))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tree.path("expected.json")).unwrap()).unwrap();
    let want: Vec<&str> = expected["predict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let train = std::fs::read_to_string(tree.path("input/data/training/train.csv")).unwrap();
    assert!(train.starts_with("setosa,"), "{}", &train[..40]);

    let mount = tree.mount();
    let out = docker(&["run", "--rm", "--read-only", "-v", &mount, image(), "train"]);
    assert!(
        out.status.success(),
        "train failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let log = text(&out.stdout);
    assert!(
        log.contains("3 classes: setosa, versicolor, virginica"),
        "{log}"
    );
    assert!(log.contains("train:accuracy="), "{log}");
    assert!(!tree.path("output/failure").exists());

    let model = format!("{}:/opt/ml/model:ro", tree.path("model").display());
    let c = Container::run(&["-p", "127.0.0.1::8080", "-v", &model, image(), "serve"]);
    let started = Instant::now();
    let addr = c.addr("8080/tcp");
    wait_ping(&c, addr, started);
    let features = std::fs::read(tree.path("features.csv")).unwrap();
    assert!(
        !text(&features).contains("setosa"),
        "features only, no label column"
    );
    let r = post(addr, "text/csv", Some("text/csv"), &features);
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    let got: Vec<String> = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body.as_bytes())
        .records()
        .map(|rec| rec.unwrap()[0].to_string())
        .collect();
    assert_eq!(body.lines().count(), want.len(), "one line per record");
    assert_eq!(got, want, "species per line vs scikit-learn's predict");
    drop(c);
    tree.remove();
}

// ---------------------------------------------------------------- scripts

/// Run a container/ script from a directory that is not the repository.
fn run_script(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(script(name))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_script_has_a_usage_message() {
    for name in [
        "build.sh",
        "build_and_push.sh",
        "start.sh",
        "stop.sh",
        "train.sh",
    ] {
        let out = run_script(name, &[], &[]);
        assert_eq!(out.status.code(), Some(2), "{name} without arguments");
        assert!(text(&out.stderr).starts_with("usage: "), "{name}: {out:?}");
        let out = run_script(name, &["-h"], &[]);
        assert_eq!(out.status.code(), Some(0), "{name} -h");
        assert!(text(&out.stdout).starts_with("usage: "), "{name}: {out:?}");
    }
}

#[test]
fn start_serves_and_stop_removes_the_container_and_the_image() {
    if !need_docker("start.sh/stop.sh") {
        return;
    }
    let tag = extra_tag("start");
    let model = util::model_dir();
    let out = run_script(
        "start.sh",
        &[&tag, model.to_str().unwrap()],
        &[("PORT", "0")],
    );
    assert!(out.status.success(), "start.sh: {out:?}");
    let stdout = text(&out.stdout);
    let url = stdout
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in start.sh's output:\n{stdout}"));
    assert!(stdout.contains("curl "), "{stdout}");
    let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    // start.sh returned: it is ready.
    let r = request(addr, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    let r = post(addr, "text/csv", None, b"1,2,3\n4,5,6\n");
    assert_eq!(r.text(), "-1.75\n-4.0\n");

    let out = run_script("stop.sh", &[&tag], &[]);
    assert!(out.status.success(), "stop.sh: {out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("exited with code 0"), "{stderr}");
    assert!(stderr.contains(&format!("removed image {tag}")), "{stderr}");
    assert!(!docker(&["image", "inspect", &tag]).status.success());
    let name = format!("{}-serve", tag.replace(':', "-"));
    assert!(!docker(&["container", "inspect", &name]).status.success());
}

#[test]
fn train_script_propagates_the_exit_code() {
    if !need_docker("train.sh") {
        return;
    }
    let image = image();
    let tree = Tree::new(true);
    let out = run_script("train.sh", &[image, tree.dir.path().to_str().unwrap()], &[]);
    assert!(out.status.success(), "train.sh: {out:?}");
    assert_fixture_model(&tree);
    tree.remove();

    let tree = Tree::new(false);
    let out = run_script("train.sh", &[image, tree.dir.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(255), "train.sh: {out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("training failed with exit code 255"),
        "{stderr}"
    );
    assert!(stderr.contains("output/failure:"), "{stderr}");
    tree.remove();
}

// ---------------------------------------------------------------- build_and_push.sh

/// Stand-in `aws` and `docker` commands that log their argv (and docker
/// login's stdin, docker build's context) to `log`, with canned answers.
struct Stubs {
    dir: tempfile::TempDir,
}

const AWS_STUB: &str = r#"#!/bin/sh
{ printf 'aws'; printf ' %s' "$@"; echo; } >> "$STUB_LOG"
case "$*" in
  "sts get-caller-identity --query Account --output text")
    if [ -n "${STUB_STS_FAIL:-}" ]; then
      echo 'Unable to locate credentials. You can configure credentials by running "aws configure".' >&2
      exit 255
    fi
    echo 123456789012 ;;
  "configure get region")
    [ -n "${STUB_REGION:-}" ] || exit 1
    echo "$STUB_REGION" ;;
  "ecr describe-repositories "*)
    if [ -z "${STUB_REPO_EXISTS:-}" ]; then
      echo "An error occurred (RepositoryNotFoundException) when calling the DescribeRepositories operation" >&2
      exit 254
    fi
    echo '{"repositories": []}' ;;
  "ecr create-repository "*) echo '{"repository": {}}' ;;
  "ecr get-login-password "*) echo stub-ecr-token ;;
  *) echo "aws stub: unexpected call: $*" >&2; exit 99 ;;
esac
"#;

const DOCKER_STUB: &str = r#"#!/bin/sh
case "$1" in
  build)
    # The context, a temporary directory, is the last argument.
    n=$#; i=0; line=docker
    for a in "$@"; do
      i=$((i + 1))
      if [ "$i" -lt "$n" ]; then line="$line $a"; else ctx=$a; fi
    done
    { echo "$line <context>"; echo "  context: $(cd "$ctx" && ls | tr '\n' ' ')"; } >> "$STUB_LOG"
    echo "Successfully built 0123456789ab" ;;
  login)
    # Read the piped token first: `aws ... | docker login` start together,
    # and the aws line must be logged before this one.
    token=$(cat)
    { printf 'docker'; printf ' %s' "$@"; echo; echo "  stdin: $token"; } >> "$STUB_LOG"
    echo "Login Succeeded" ;;
  tag | push)
    { printf 'docker'; printf ' %s' "$@"; echo; } >> "$STUB_LOG" ;;
  *)
    { printf 'docker'; printf ' %s' "$@"; echo; } >> "$STUB_LOG"
    echo "docker stub: unexpected call: $*" >&2; exit 99 ;;
esac
"#;

impl Stubs {
    fn new(with_aws: bool) -> Stubs {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut stubs = vec![("docker", DOCKER_STUB)];
        if with_aws {
            stubs.push(("aws", AWS_STUB));
        }
        for (name, text) in stubs {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Stubs { dir }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// PATH: the stubs first; without the aws stub, no directory that holds
    /// a real `aws` either.
    fn path(&self, with_aws: bool) -> String {
        let mut dirs = vec![self.dir.path().to_path_buf()];
        for d in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            if with_aws || !d.join("aws").exists() {
                dirs.push(d);
            }
        }
        std::env::join_paths(dirs).unwrap().into_string().unwrap()
    }

    fn run(&self, with_aws: bool, image: &str, env: &[(&str, &str)]) -> (Output, Vec<String>) {
        let path = self.path(with_aws);
        let log = self.log_path();
        let _ = std::fs::remove_file(&log);
        let mut all = vec![("PATH", path.as_str()), ("STUB_LOG", log.to_str().unwrap())];
        all.extend_from_slice(env);
        let out = Command::new(script("build_and_push.sh"))
            .arg(image)
            .env_remove("AWS_PROFILE")
            .env_remove("DOCKER_BUILD_ARGS")
            .envs(all)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        (out, calls)
    }
}

#[test]
fn build_and_push_calls_aws_and_docker_in_the_seeds_order() {
    let stubs = Stubs::new(true);

    // No region configured (us-west-2), no repository yet (created).
    let (out, calls) = stubs.run(true, "mmkv", &[]);
    assert!(out.status.success(), "{out:?}\ncalls: {calls:#?}");
    let registry = "123456789012.dkr.ecr.us-west-2.amazonaws.com";
    assert_eq!(
        calls,
        [
            "aws sts get-caller-identity --query Account --output text".to_string(),
            "aws configure get region".into(),
            "aws ecr describe-repositories --repository-names mmkv --region us-west-2".into(),
            "aws ecr create-repository --repository-name mmkv --region us-west-2".into(),
            "aws ecr get-login-password --region us-west-2".into(),
            format!("docker login --username AWS --password-stdin {registry}"),
            "  stdin: stub-ecr-token".into(),
            "docker build -t mmkv <context>".into(),
            "  context: Dockerfile mmp ".into(),
            format!("docker tag mmkv {registry}/mmkv:latest"),
            format!("docker push {registry}/mmkv:latest"),
        ]
    );
    assert!(text(&out.stdout).contains(&format!("pushed {registry}/mmkv:latest")));

    // A configured region, an existing repository, an explicit tag.
    let (out, calls) = stubs.run(
        true,
        "mmkv:v2",
        &[("STUB_REGION", "eu-central-1"), ("STUB_REPO_EXISTS", "1")],
    );
    assert!(out.status.success(), "{out:?}\ncalls: {calls:#?}");
    let registry = "123456789012.dkr.ecr.eu-central-1.amazonaws.com";
    assert_eq!(
        calls,
        [
            "aws sts get-caller-identity --query Account --output text".to_string(),
            "aws configure get region".into(),
            "aws ecr describe-repositories --repository-names mmkv --region eu-central-1".into(),
            "aws ecr get-login-password --region eu-central-1".into(),
            format!("docker login --username AWS --password-stdin {registry}"),
            "  stdin: stub-ecr-token".into(),
            "docker build -t mmkv:v2 <context>".into(),
            "  context: Dockerfile mmp ".into(),
            format!("docker tag mmkv:v2 {registry}/mmkv:v2"),
            format!("docker push {registry}/mmkv:v2"),
        ]
    );
}

#[test]
fn build_and_push_explains_a_missing_aws_cli_or_missing_credentials() {
    let stubs = Stubs::new(false);
    let (out, calls) = stubs.run(false, "mmkv", &[]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the AWS CLI ('aws') is not on PATH"),
        "{stderr}"
    );
    assert!(calls.is_empty(), "{calls:?}");

    let stubs = Stubs::new(true);
    let (out, calls) = stubs.run(true, "mmkv", &[("STUB_STS_FAIL", "1")]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Unable to locate credentials"), "{stderr}");
    assert!(
        stderr.contains("'aws sts get-caller-identity' failed"),
        "{stderr}"
    );
    assert_eq!(
        calls,
        ["aws sts get-caller-identity --query Account --output text"]
    );
}

// ---------------------------------------------------------------- the SDK

/// A port that was free a moment ago (local mode publishes on all
/// interfaces and takes only a number).
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn compose_problem() -> Option<String> {
    let v2 = Command::new("docker").args(["compose", "version"]).output();
    if v2.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("v2")) {
        return None;
    }
    match Command::new("docker-compose").arg("version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some(
            "neither `docker compose` (v2) nor `docker-compose` runs; local mode needs one".into(),
        ),
    }
}

fn sdk_python() -> Result<PathBuf, String> {
    let python = root().join(".venv-sdk/bin/python");
    let ok = Command::new(&python)
        .args([
            "-c",
            "import sagemaker, sys; sys.exit(0 if sagemaker.__version__.startswith('2.') else 1)",
        ])
        .env("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
        .output();
    match ok {
        Ok(o) if o.status.success() => Ok(python),
        Ok(o) => Err(format!(
            "{} cannot import sagemaker 2.x (run scripts/setup.sh): {}",
            python.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{}: {e} (run scripts/setup.sh)", python.display())),
    }
}

#[test]
fn sagemaker_sdk_local_mode_trains_transforms_and_serves_with_the_image() {
    const TEST: &str = "SageMaker SDK local mode";
    if !need_docker(TEST) {
        return;
    }
    let python = match sdk_python() {
        Ok(p) => p,
        Err(e) => {
            skip_unless(TEST, "no SageMaker SDK venv", Some(e));
            return;
        }
    };
    if !skip_unless(TEST, "no docker compose", compose_problem()) {
        return;
    }
    // Its own tag, so that its containers (named by docker-compose) can be
    // found and removed without touching the other tests'.
    let tag = extra_tag("sdk");
    let work = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let stdout_path = logs.path().join("stdout");
    let stderr_path = logs.path().join("stderr");
    let started = Instant::now();
    let mut child = Command::new(&python)
        .arg(root().join("tests/sdk/local_mode.py"))
        .args(["--image", &tag, "--mmp", env!("CARGO_BIN_EXE_mmp")])
        .arg("--work")
        .arg(work.path())
        .args(["--port", &free_port().to_string()])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    // Four jobs (two trainings, a transform, an endpoint), each a
    // docker-compose start and stop.
    let limit = Duration::from_secs(420);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    remove_tags(std::slice::from_ref(&tag));
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    for line in stdout.lines().filter(|l| l.starts_with("SDK-RESULT ")) {
        say(&format!("measured: {line}"));
    }
    say(&format!(
        "measured: SDK local mode run took {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let tail = |s: &str| {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(120)..].join("\n")
    };
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "tests/sdk/local_mode.py failed ({s}):\n--- stdout\n{}\n--- stderr\n{}",
            tail(&stdout),
            tail(&stderr)
        ),
        None => panic!(
            "tests/sdk/local_mode.py did not finish in {limit:?}:\n--- stdout\n{}\n--- stderr\n{}",
            tail(&stdout),
            tail(&stderr)
        ),
    }
    assert!(
        stdout.contains(r#"SDK-RESULT {"network_violations": []}"#),
        "{stdout}"
    );
    // The two-instance training: local mode streams both containers' logs
    // (`algo-1-xxxxx`, `algo-2-xxxxx`); the second says why it wrote nothing.
    assert!(
        stdout.contains("mmp train: host algo-2-") && stdout.contains(
            "only the first host (algo-1-"
        ) && stdout.contains(
            "writes model.json; this host writes nothing, so the merged model directory holds one model.json"
        ),
        "{}",
        tail(&stdout)
    );
}
