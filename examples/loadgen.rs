//! Load and soak generator for `mmp serve`, run by `scripts/soak.sh`.
//!
//! `CONNS` threads each keep one HTTP/1.1 connection alive and send, for a
//! fixed time, a deterministic mix of requests: small and large good CSV,
//! good JSON lines, bad records (400), unsupported types (415) and pings.
//! Every answer is checked against a prediction computed here from
//! `model.json` (not by mmp), so the summary counts wrong answers and
//! unexpected errors. Loopback only; bounded in time; it stops by itself.
//!
//!     loadgen ADDR MODEL_DIR SECONDS CONNS [SERVER_PID]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    wrong: AtomicU64,
    unexpected: AtomicU64,
    bytes_out: AtomicU64,
}

struct Model {
    bias: f64,
    weights: Vec<f64>,
}

impl Model {
    fn predict(&self, x: &[f64]) -> f64 {
        let dot: f64 = self.weights.iter().zip(x).map(|(w, v)| w * v).sum();
        self.bias + dot
    }
}

/// One request kind: the raw request, the status and predictions expected.
struct Case {
    raw: Vec<u8>,
    status: u16,
    predictions: Option<Vec<f64>>,
}

fn rows(model: &Model, n: usize, seed: u64, jsonl: bool) -> (Vec<u8>, Vec<f64>) {
    let d = model.weights.len();
    let mut body = Vec::new();
    let mut expect = Vec::new();
    let mut x = seed | 1;
    for _ in 0..n {
        let row: Vec<f64> = (0..d)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x % 20_000) as f64 - 10_000.0) / 1000.0
            })
            .collect();
        let text: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        if jsonl {
            writeln!(body, "[{}]", text.join(",")).unwrap();
        } else {
            writeln!(body, "{}", text.join(",")).unwrap();
        }
        expect.push(model.predict(&row));
    }
    (body, expect)
}

/// A POST whose answer is CSV (one number per line), whatever the input.
fn post(ct: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nAccept: text/csv\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

fn cases(model: &Model) -> Vec<Case> {
    let mut v = Vec::new();
    for seed in 0..8u64 {
        let (b, e) = rows(model, 1 + seed as usize % 5, seed, false);
        v.push(Case {
            raw: post("text/csv", &b),
            status: 200,
            predictions: Some(e),
        });
    }
    let (b, e) = rows(model, 20_000, 99, false);
    v.push(Case {
        raw: post("text/csv; charset=utf-8", &b),
        status: 200,
        predictions: Some(e),
    });
    for seed in 100..103u64 {
        let (b, e) = rows(model, 3, seed, true);
        v.push(Case {
            raw: post("application/jsonlines", &b),
            status: 200,
            predictions: Some(e),
        });
    }
    v.push(Case {
        raw: post("text/csv", b"1,2\n"),
        status: 400,
        predictions: None,
    });
    v.push(Case {
        raw: post("text/csv", b"x\n"),
        status: 400,
        predictions: None,
    });
    v.push(Case {
        raw: post("text/plain", b"1\n"),
        status: 415,
        predictions: None,
    });
    v.push(Case {
        raw: b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        status: 200,
        predictions: None,
    });
    v
}

/// Read one response: status and body (Content-Length or chunked).
fn read(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<u8>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut len, mut chunked) = (0usize, false);
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        chunked |= l == "transfer-encoding: chunked";
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
    } else {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    }
    Ok((status, body))
}

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: loadgen ADDR MODEL_DIR SECONDS CONNS [SERVER_PID]");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let text = std::fs::read_to_string(format!("{}/model.json", args[2])).expect("model.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("model.json is JSON");
    let model = Model {
        bias: v["bias"].as_f64().expect("bias"),
        weights: v["weights"]
            .as_array()
            .expect("weights")
            .iter()
            .map(|w| w.as_f64().expect("number"))
            .collect(),
    };
    let secs: u64 = args[3].parse().expect("SECONDS");
    let conns: usize = args[4].parse().expect("CONNS");
    let pid = args.get(5).cloned();
    let cases = Arc::new(cases(&model));
    let counts = Arc::new(Counts::default());
    let end = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    // The server's RSS once a fifth of the run is over (when every
    // connection's buffers have grown to their working size), and at the end.
    let sampler = pid.clone().map(|pid| {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs) / 5);
            rss_kib(&pid)
        })
    });
    let workers: Vec<_> = (0..conns)
        .map(|c| {
            let (cases, counts, addr) = (cases.clone(), counts.clone(), addr.clone());
            std::thread::spawn(move || {
                let connect = || {
                    let s = TcpStream::connect(&addr).ok()?;
                    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
                    Some((s.try_clone().ok()?, BufReader::new(s)))
                };
                let mut conn = connect();
                let mut i = c as u64;
                while Instant::now() < end {
                    i = i
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let case = &cases[(i >> 33) as usize % cases.len()];
                    let Some((w, r)) = conn.as_mut() else {
                        counts.unexpected.fetch_add(1, Ordering::Relaxed);
                        conn = connect();
                        continue;
                    };
                    counts.requests.fetch_add(1, Ordering::Relaxed);
                    let answer = w.write_all(&case.raw).and_then(|()| read(r));
                    match answer {
                        Err(_) => {
                            counts.unexpected.fetch_add(1, Ordering::Relaxed);
                            conn = connect();
                        }
                        Ok((status, body)) => {
                            counts
                                .bytes_out
                                .fetch_add(body.len() as u64, Ordering::Relaxed);
                            if status != case.status {
                                counts.unexpected.fetch_add(1, Ordering::Relaxed);
                            } else if let Some(expect) = &case.predictions {
                                let got: Vec<f64> = String::from_utf8_lossy(&body)
                                    .lines()
                                    .filter_map(|l| l.parse().ok())
                                    .collect();
                                if &got != expect {
                                    counts.wrong.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            // Error answers close the connection: reconnect.
                            if status >= 400 {
                                conn = connect();
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss_start = sampler.and_then(|s| s.join().ok());
    let rss_end = pid.as_deref().map(rss_kib);
    let n = counts.requests.load(Ordering::Relaxed);
    let wrong = counts.wrong.load(Ordering::Relaxed);
    let unexpected = counts.unexpected.load(Ordering::Relaxed);
    println!(
        "loadgen: {n} requests in {elapsed:.1} s ({:.0}/s) over {conns} connections, {:.1} MB of answers; \
         wrong answers {wrong}, unexpected errors {unexpected}; server RSS start {} KiB, end {} KiB \
         (start: a fifth into the run)",
        n as f64 / elapsed,
        counts.bytes_out.load(Ordering::Relaxed) as f64 / 1e6,
        rss_start.map_or("?".into(), |v| v.to_string()),
        rss_end.map_or("?".into(), |v| v.to_string()),
    );
    if wrong > 0 || unexpected > 0 {
        std::process::exit(1);
    }
}
