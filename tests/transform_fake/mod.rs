//! A deliberately faulty container for `mmp transform`'s tests: a loopback
//! HTTP/1.1 server whose `/invocations` answer is chosen per request by the
//! test (a status, a dropped connection, a cut chunked response, no answer
//! at all, a wrong number of lines), and which records every request it
//! gets, so tests can count attempts and check mini-batches.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The non-blank lines of the body.
    pub fn records(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.body)
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

/// What to answer to one `/invocations`.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this body and `Content-Type: text/csv`, `Content-Length`.
    Ok(Vec<u8>),
    /// 200 with this body, chunked.
    Chunked(Vec<u8>),
    /// This status and body.
    Status(u16, Vec<u8>),
    /// Close the connection without answering.
    Drop,
    /// Start a chunked 200, send this much, then close (no last chunk).
    Cut(Vec<u8>),
    /// Never answer (until the server is dropped).
    Hang,
}

/// Chooses the reply: the request, and how many `/invocations` came before.
pub type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// The echo container: one line per record, the record itself.
pub fn echo(req: &Seen) -> Reply {
    let mut out = String::new();
    for r in req.records() {
        out.push_str(&r);
        out.push('\n');
    }
    Reply::Ok(out.into_bytes())
}

struct Shared {
    seen: Mutex<Vec<Seen>>,
    /// `/ping`s still to answer 503.
    ping_failures: Mutex<usize>,
    released: Mutex<bool>,
    cv: Condvar,
    in_flight: Mutex<(usize, usize)>,
    /// Whether `/invocations` bodies are read (else only the head is, and
    /// the connection is held open, unread, after the reply).
    read_bodies: bool,
}

/// The server; dropping it releases hung requests.
pub struct Fake {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Fake {
    /// Serve `/ping` (200), `/execution-parameters` (`params`: 200 with this
    /// body, or 404 if `None`) and `/invocations` (by `handler`).
    pub fn start(
        params: Option<&str>,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Fake {
        Fake::start_with(0, params, handler)
    }

    /// As [`Fake::start`], with the first `ping_failures` pings answered 503.
    pub fn start_with(
        ping_failures: usize,
        params: Option<&str>,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Fake {
        Fake::serve(ping_failures, params, true, handler)
    }

    /// A container that never reads an `/invocations` body: it reads the
    /// head, replies by `handler` (its `Seen` has no body), and then holds
    /// the connection open without reading more, until dropped.
    pub fn not_reading(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Fake {
        Fake::serve(0, None, false, handler)
    }

    fn serve(
        ping_failures: usize,
        params: Option<&str>,
        read_bodies: bool,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            seen: Mutex::new(Vec::new()),
            ping_failures: Mutex::new(ping_failures),
            released: Mutex::new(false),
            cv: Condvar::new(),
            in_flight: Mutex::new((0, 0)),
            read_bodies,
        });
        let handler: Arc<Handler> = Arc::new(handler);
        let params = params.map(str::to_string);
        let sh = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                if *sh.released.lock().unwrap() {
                    break;
                }
                let (sh, handler, params) = (sh.clone(), handler.clone(), params.clone());
                std::thread::spawn(move || connection(stream, &sh, &*handler, params.as_deref()));
            }
        });
        Fake { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every `/invocations` so far.
    pub fn invocations(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == "/invocations")
            .cloned()
            .collect()
    }

    /// All requests so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Most `/invocations` that were being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.in_flight.lock().unwrap().1
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        *self.shared.released.lock().unwrap() = true;
        self.shared.cv.notify_all();
        // Wake the accept loop so it sees `released`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn connection(stream: TcpStream, sh: &Shared, handler: &Handler, params: Option<&str>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    loop {
        let Some(req) = read_request(&mut reader, sh.read_bodies) else {
            return;
        };
        let n = {
            let mut seen = sh.seen.lock().unwrap();
            let n = seen.iter().filter(|s| s.path == "/invocations").count();
            seen.push(req.clone());
            n
        };
        let reply = match req.path.as_str() {
            "/ping" => {
                let mut left = sh.ping_failures.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    Reply::Status(503, b"loading".to_vec())
                } else {
                    Reply::Status(200, Vec::new())
                }
            }
            "/execution-parameters" => match params {
                Some(p) => Reply::Ok(p.as_bytes().to_vec()),
                None => Reply::Status(404, b"not found".to_vec()),
            },
            "/invocations" => {
                {
                    let mut f = sh.in_flight.lock().unwrap();
                    f.0 += 1;
                    f.1 = f.1.max(f.0);
                }
                let r = handler(&req, n);
                sh.in_flight.lock().unwrap().0 -= 1;
                r
            }
            _ => Reply::Status(404, Vec::new()),
        };
        let ok = match reply {
            Reply::Ok(body) => write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .and_then(|()| w.write_all(&body)),
            Reply::Status(code, body) => write!(
                w,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .and_then(|()| w.write_all(&body)),
            Reply::Chunked(body) => write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
                body.len()
            )
            .and_then(|()| w.write_all(&body))
            .and_then(|()| w.write_all(b"\r\n0\r\n\r\n")),
            Reply::Cut(body) => {
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
                    body.len()
                )
                .and_then(|()| w.write_all(&body))
                .and_then(|()| w.write_all(b"\r\n"));
                return;
            }
            Reply::Drop => return,
            Reply::Hang => {
                hold(sh);
                return;
            }
        };
        if ok.is_err() || w.flush().is_err() {
            return;
        }
        if req.path == "/invocations" && !sh.read_bodies {
            hold(sh);
            return;
        }
    }
}

/// Hold the connection open, reading nothing, until the server is dropped.
fn hold(sh: &Shared) {
    let mut released = sh.released.lock().unwrap();
    while !*released {
        released = sh.cv.wait(released).unwrap();
    }
}

fn read_request(r: &mut BufReader<TcpStream>, read_bodies: bool) -> Option<Seen> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let _method = parts.next()?;
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let chunked = get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let mut body = Vec::new();
    if !read_bodies && path == "/invocations" {
        // The body is left unread.
    } else if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).ok()?;
            let size = usize::from_str_radix(line.trim(), 16).ok()?;
            let mut data = vec![0; size + 2];
            r.read_exact(&mut data).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&data[..size]);
        }
    } else if let Some(len) = get("content-length") {
        body.resize(len.parse().ok()?, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some(Seen {
        path,
        headers,
        body,
        chunked,
    })
}
