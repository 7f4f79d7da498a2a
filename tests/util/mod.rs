//! Helpers shared by the black-box tests: the real `mmp` binary, fixtures,
//! a server process on a free loopback port, and a raw HTTP/1.1 client that
//! can tell a complete chunked response from a cut one.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn mmp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mmp"))
}

/// `fixtures/` in the source tree.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The fixtures' model directory (D = 3).
pub fn model_dir() -> PathBuf {
    fixtures().join("model")
}

/// Golden inputs: `fixtures/golden/NAME.{csv,jsonl,json}`.
pub fn golden_inputs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures().join("golden"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().contains(".expected."))
        .collect();
    v.sort();
    assert!(v.len() >= 10, "golden fixtures missing");
    v
}

/// The expected output of a golden input in an output format
/// (`csv`, `jsonl`, `json`), written by scripts/gen_golden.py.
pub fn golden_expected(input: &Path, out: &str) -> Vec<u8> {
    let mut name = input.file_name().unwrap().to_owned();
    name.push(format!(".expected.{out}"));
    std::fs::read(input.with_file_name(name)).unwrap()
}

/// Media type of a short format name.
pub fn mime(short: &str) -> &'static str {
    match short {
        "csv" => "text/csv",
        "jsonl" => "application/jsonlines",
        "json" => "application/json",
        other => panic!("unknown format {other}"),
    }
}

/// Short format name of a path's extension.
pub fn short_of(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => "csv",
        Some("jsonl") => "jsonl",
        Some("json") => "json",
        other => panic!("unknown extension {other:?}"),
    }
}

/// One case of `fixtures/bad/`: an input and what it must produce.
#[derive(Debug)]
pub struct BadCase {
    pub input: PathBuf,
    pub status: u16,
    pub error: String,
    pub message: String,
    pub max_record_bytes: Option<String>,
    pub max_document_bytes: Option<String>,
}

/// Every case of `fixtures/bad/`.
pub fn bad_cases() -> Vec<BadCase> {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(fixtures().join("bad")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("expect") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                .map(str::to_string)
        };
        cases.push(BadCase {
            input: path.with_extension(""),
            status: field("status").unwrap().parse().unwrap(),
            error: field("error").unwrap(),
            message: field("message").unwrap(),
            max_record_bytes: field("max-record-bytes"),
            max_document_bytes: field("max-document-bytes"),
        });
    }
    cases.sort_by(|a, b| a.input.cmp(&b.input));
    assert!(cases.len() >= 20, "bad fixtures missing");
    cases
}

/// One raw-HTTP case of `fixtures/bad/http/`.
#[derive(Debug)]
pub struct HttpCase {
    pub name: String,
    pub request: Vec<u8>,
    pub status: u16,
    pub error: Option<String>,
    /// A substring of the error message.
    pub message: Option<String>,
    /// The exact body (`\n` written as `\\n` in the file).
    pub body: Option<String>,
    /// Close the sending side after the request (a body cut short).
    pub half_close: bool,
}

/// Every case of `fixtures/bad/http/`.
pub fn http_cases() -> Vec<HttpCase> {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(fixtures().join("bad/http")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("expect") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .map(|v| v.trim_start().replace("\\n", "\n"))
        };
        let request_path = path.with_extension("");
        cases.push(HttpCase {
            name: request_path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            request: std::fs::read(&request_path).unwrap(),
            status: field("status").unwrap().parse().unwrap(),
            error: field("error"),
            message: field("message"),
            body: field("body"),
            half_close: field("half-close").is_some_and(|v| v == "true"),
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(cases.len() >= 15, "http fixtures missing");
    cases
}

/// A `mmp serve` process on a free loopback port.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Start with the fixtures' model and these extra environment variables;
    /// returns once `/ping` answers 200.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Server::start_with(env, &["--model-dir", model_dir().to_str().unwrap()])
    }

    /// Start with these arguments after `serve --bind 127.0.0.1:0`.
    pub fn start_with(env: &[(&str, &str)], args: &[&str]) -> Server {
        let mut cmd = mmp();
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .args(args)
            .env_clear()
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn mmp serve");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // `addr=127.0.0.1:1234` in text logs, `"addr":"…"` in JSON.
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .or_else(|| {
                        line.split("\"addr\":\"")
                            .nth(1)
                            .and_then(|r| r.split('"').next())
                    });
                if let Some(addr) = addr {
                    let _ = tx.send(addr.trim_matches('"').to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start: {:?}", logs.lock().unwrap());
            }
        };
        let server = Server { child, addr, logs };
        server.wait_ready();
        server
    }

    /// Poll `/ping` until it answers 200 (the model is loaded).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = self.try_request(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n") {
                if r.status == 200 {
                    return;
                }
            }
            std::thread::yield_now();
        }
        panic!("server never became ready: {:?}", self.logs());
    }

    /// A new connection, with generous timeouts so a hang fails the test.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    fn try_request(&self, raw: &[u8]) -> io::Result<Response> {
        let mut s = TcpStream::connect(self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.write_all(raw)?;
        read_response(&mut BufReader::new(s))
    }

    /// Send one raw request on a new connection and read the response.
    pub fn request(&self, raw: &[u8]) -> Response {
        self.try_request(raw).expect("request")
    }

    /// POST a body with a Content-Length.
    pub fn post(&self, content_type: &str, accept: Option<&str>, body: &[u8]) -> Response {
        self.request(&post_request(content_type, accept, body))
    }

    /// A metric's current value from `/metrics` (0 if absent).
    pub fn metric(&self, name: &str) -> f64 {
        let r = self.request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        r.text()
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// Log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Wait until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.logs().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}: {:?}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Peak and current resident memory, KiB, from /proc.
    pub fn memory_kib(&self) -> (u64, u64) {
        memory_kib(self.child.id())
    }

    /// Send a signal by name (`TERM`, `INT`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Wait for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not exit within {timeout:?}: {:?}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Peak (`VmHWM`) and current (`VmRSS`) resident memory of a running
/// process, KiB, from /proc. The peak counts from the process's `exec`,
/// not from the fork in this (large, many-test) process.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let get = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (get("VmHWM:"), get("VmRSS:"))
}

/// A raw request with these headers, a Content-Length and `body`.
pub fn raw_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// A raw POST /invocations with a Content-Length.
pub fn post_request(content_type: &str, accept: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut headers = vec![("Content-Type", content_type)];
    headers.extend(accept.map(|a| ("Accept", a)));
    raw_request("POST", "/invocations", &headers, body)
}

/// Headers of a chunked POST /invocations (the chunks follow).
pub fn chunked_head(content_type: &str, accept: Option<&str>) -> Vec<u8> {
    let mut raw = format!(
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"
    );
    if let Some(a) = accept {
        raw.push_str(&format!("Accept: {a}\r\n"));
    }
    raw.push_str("\r\n");
    raw.into_bytes()
}

/// One chunk in chunked encoding.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{:x}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

/// The last chunk.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A whole chunked POST /invocations of `body` in chunks of `piece` bytes.
pub fn chunked_request(content_type: &str, body: &[u8], piece: usize) -> Vec<u8> {
    let mut raw = chunked_head(content_type, None);
    for p in body.chunks(piece) {
        raw.extend_from_slice(&chunk(p));
    }
    raw.extend_from_slice(LAST_CHUNK);
    raw
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body ended properly: the terminating chunk arrived, or all of a
    /// Content-Length.
    pub complete: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as a JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// Read one response; a body cut short is returned with `complete: false`.
pub fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    let complete;
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                complete = false;
                break;
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad chunk size {line:?}"),
                    )
                })?;
            if size == 0 {
                line.clear();
                r.read_line(&mut line)?;
                complete = true;
                break;
            }
            let mut data = vec![0; size + 2];
            if r.read_exact(&mut data).is_err() {
                complete = false;
                break;
            }
            body.extend_from_slice(&data[..size]);
        }
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().unwrap();
        body.resize(len, 0);
        complete = r.read_exact(&mut body).is_ok();
    } else {
        complete = r.read_to_end(&mut body).is_ok();
    }
    Ok(Response {
        status,
        headers,
        body,
        complete,
    })
}

/// `n` CSV rows of 3 features, `i,1,2` for `i` from `from`: each row's
/// prediction differs, so a lost or repeated row shows.
pub fn csv_rows(from: usize, n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in from..from + n {
        writeln!(v, "{i},1,2").unwrap();
    }
    v
}

/// Names in `dir`, sorted, hidden ones included: no temporary file may be
/// left beside an output.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Send `signal` to `child` (if any), then wait for it to end, at most
/// `limit`: a process still running then is killed and the test fails.
pub fn end_within(child: Child, signal: Option<i32>, limit: Duration) -> Output {
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    if let Some(sig) = signal {
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(pid, sig) };
    }
    match rx.recv_timeout(limit) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("still running {limit:?} after it was told to end");
        }
    }
}

/// Wait until `cond` holds, polling, or fail after 20 s.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `mmp score --model-dir fixtures/model ARGS`, run to the end.
pub fn mmp_score(args: &[&str]) -> Output {
    mmp()
        .arg("score")
        .arg("--model-dir")
        .arg(model_dir())
        .args(args)
        .output()
        .unwrap()
}

/// A temporary folder with these files (`path`, text), their folders made.
pub fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

/// A FIFO at `path`, its folders made (by mkfifo(1), so with its mode).
pub fn mkfifo(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let o = Command::new("mkfifo").arg(path).output().unwrap();
    assert!(o.status.success(), "mkfifo {}: {o:?}", path.display());
}

/// Every sample of a scrape, keyed by `name{label="value",...}` (labels
/// sorted), parsed by an independent parser (the `prometheus-parse` crate).
pub fn scrape(s: &Server) -> std::collections::HashMap<String, f64> {
    let r = s.request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
    assert!(!parsed.samples.is_empty());
    let mut out = std::collections::HashMap::new();
    for sample in parsed.samples {
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        labels.sort();
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        };
        out.insert(format!("{}{{{}}}", sample.metric, labels.join(",")), value);
    }
    out
}

/// The fixture model's answer for a row: `bias + weights · x`
/// (fixtures/model/model.json: bias 0.5, weights 1, -2, 0.25), summed in
/// order as the model's formula says.
pub fn linear(x: [f64; 3]) -> f64 {
    let dot = 0.0 + 1.0 * x[0] + -2.0 * x[1] + 0.25 * x[2];
    0.5 + dot
}

/// A CSV input of `n` records larger than `mmp score`'s inline threshold, with quoted
/// fields (some holding a newline, so lines and records differ) and CRLF
/// endings; record `i` (0-based) is bad (`1,x,3`) when `bad(i)`. Returns the
/// bytes, each record's prediction (`None` if bad) and each record's line
/// and byte.
#[allow(clippy::type_complexity)]
pub fn big_csv(
    n: usize,
    bad: impl Fn(usize) -> bool,
) -> (Vec<u8>, Vec<Option<f64>>, Vec<(u64, u64)>) {
    let mut data = Vec::with_capacity(n * 24);
    let mut preds = Vec::with_capacity(n);
    let mut starts = Vec::with_capacity(n);
    let mut line = 1u64;
    for i in 0..n {
        starts.push((line, data.len() as u64));
        let x = [
            (i % 1000) as f64 + 0.25,
            -((i % 7) as f64) - 0.5,
            (i % 13) as f64,
        ];
        let start = data.len();
        if bad(i) {
            data.extend_from_slice(b"1,x,3\n");
            preds.push(None);
        } else {
            match i % 5 {
                0 => write!(data, "\"{}\n\",{},\"{}\"\n", x[0], x[1], x[2]).unwrap(),
                1 => write!(data, "{},{},{}\r\n", x[0], x[1], x[2]).unwrap(),
                _ => writeln!(data, "{},{},{}", x[0], x[1], x[2]).unwrap(),
            }
            preds.push(Some(linear(x)));
        }
        line += data[start..].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    (data, preds, starts)
}

/// Send `head`, then `block` again and again, never reading the answer:
/// the server's writes block, so it must stop reading the body, and ours
/// block in turn (a write timeout ends them). Asserts it took in less than
/// 256 MiB and peaked under 64 MiB of RSS meanwhile.
pub fn assert_stops_reading(s: &Server, head: &[u8], block: &[u8], limit: u64) {
    let conn = s.connect();
    conn.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut writer = conn.try_clone().unwrap();
    writer.write_all(head).unwrap();
    let mut sent = 0u64;
    while sent + (block.len() as u64) <= limit {
        match writer.write_all(block) {
            Ok(()) => sent += block.len() as u64,
            Err(_) => break,
        }
    }
    assert!(
        sent < 256 << 20,
        "the server kept reading: {sent} bytes accepted"
    );
    let (peak, _) = s.memory_kib();
    assert!(peak < 64 * 1024, "server peak RSS {peak} KiB");
}

/// The fixtures' model told to sleep `ms` per batch, so it says it is
/// expensive and runs on the compute pool (`predict_delay_ms`; 0: only
/// that).
pub fn delayed_model(ms: u64) -> tempfile::TempDir {
    let text = std::fs::read_to_string(model_dir().join("model.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["predict_delay_ms"] = ms.into();
    tree(&[("model.json", &doc.to_string())])
}
