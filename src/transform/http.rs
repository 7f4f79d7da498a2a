//! A small blocking HTTP/1.1 client for talking to a container on this
//! machine: keep-alive, `Content-Length` or chunked request bodies, and
//! responses with `Content-Length`, chunked, or read to close.
//!
//! Why not a general client crate: a streaming container (ours, on
//! `MaxPayloadInMB=0`) answers while it is still reading the body, so a
//! client that sends the whole body before reading anything (ureq does)
//! fills both sockets' buffers and deadlocks on a large file. Here a body of
//! more than [`DUPLEX_ABOVE`] bytes is written by a second thread while this
//! one reads the answer. The client also has to tell a complete response
//! from a cut one (a chunked response without its last chunk is how a
//! server reports a failure after its 200, style.md §4), which is an error
//! here, never a short success.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::error::{Result, TransformError};

/// Bodies larger than this are sent from a second thread while the response
/// is read (see the module docs).
pub const DUPLEX_ABOVE: usize = 64 * 1024;
/// Size of the pieces a streamed body is sent in.
const CHUNK: usize = 256 * 1024;
/// Longest status line or header we accept.
const MAX_HEAD_LINE: usize = 16 * 1024;

/// Where the container is: `http://host:port`.
#[derive(Clone, Debug)]
pub struct Url {
    /// `host:port` for the `Host` header.
    pub authority: String,
    /// Resolved addresses.
    pub addrs: Vec<SocketAddr>,
    /// Path prefix (usually empty).
    pub base: String,
}

impl Url {
    /// Parse and resolve an `http://` URL.
    pub fn parse(url: &str) -> Result<Url> {
        let bad = |why: &str| TransformError::Usage(format!("--endpoint {url:?}: {why}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("must start with http:// (a container on this machine; no TLS)"))?;
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addrs: Vec<SocketAddr> = with_port
            .to_socket_addrs()
            .map_err(|e| bad(&format!("cannot resolve: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(bad("resolves to no address"));
        }
        Ok(Url {
            authority: authority.to_string(),
            addrs,
            base: base.to_string(),
        })
    }
}

/// A request body.
pub enum Body<'a> {
    /// No body.
    Empty,
    /// Bytes in memory, sent with `Content-Length`.
    Bytes(&'a [u8]),
    /// A stream of unknown length, sent chunked (`MaxPayloadInMB=0`).
    Stream(&'a mut (dyn Read + Send)),
}

/// What the status line and headers said.
#[derive(Clone, Debug, Default)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The server will close the connection after this response.
    close: bool,
    /// Body framing.
    framing: Framing,
}

#[derive(Clone, Copy, Debug, Default)]
enum Framing {
    #[default]
    None,
    Length(u64),
    Chunked,
    ToClose,
}

/// One connection to the container, reused while the server keeps it open.
pub struct Client {
    url: Url,
    conn: Option<(TcpStream, BufReader<TcpStream>)>,
}

fn connection(e: io::Error, what: &str) -> TransformError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            TransformError::Connection(format!("{what}: timed out"))
        }
        _ => TransformError::Connection(format!("{what}: {e}")),
    }
}

impl Client {
    /// A client for `url`; it connects on first use.
    pub fn new(url: Url) -> Client {
        Client { url, conn: None }
    }

    fn connect(&mut self, deadline: Instant) -> Result<()> {
        if let Some((stream, _)) = &self.conn {
            if still_open(stream) {
                return Ok(());
            }
            self.conn = None;
        }
        let mut last = None;
        for addr in &self.url.addrs {
            let left = remaining(deadline)?;
            match TcpStream::connect_timeout(addr, left) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let reader = s
                        .try_clone()
                        .map_err(|e| connection(e, "cloning the socket"))?;
                    self.conn = Some((s, BufReader::with_capacity(256 * 1024, reader)));
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        let e = last.unwrap_or_else(|| io::Error::other("no address"));
        Err(connection(
            e,
            &format!("connecting to {}", self.url.authority),
        ))
    }

    /// Send one request and pass the response body, piece by piece, to
    /// `on_body` (after the head, which is returned). A response that ends
    /// early is an error. `deadline` bounds the whole exchange.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        deadline: Instant,
        on_body: &mut dyn FnMut(&Head, &[u8]) -> Result<()>,
    ) -> Result<Head> {
        // A streamed body cannot be replayed: give it a fresh connection, so
        // a stale kept-alive one cannot waste it.
        if matches!(body, Body::Stream(_)) {
            self.conn = None;
        }
        self.connect(deadline)?;
        let mut body = body;
        let result = self.exchange(method, path, headers, &mut body, deadline, on_body);
        if result.as_ref().map_or(true, |h| h.close) {
            self.conn = None;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &mut Body<'_>,
        deadline: Instant,
        on_body: &mut dyn FnMut(&Head, &[u8]) -> Result<()>,
    ) -> Result<Head> {
        let Some((stream, reader)) = self.conn.as_mut() else {
            return Err(TransformError::Connection("not connected".into()));
        };
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mmp-transform/{}\r\n",
            self.url.base,
            self.url.authority,
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        match body {
            Body::Empty if method == "GET" => {}
            Body::Empty => head.push_str("Content-Length: 0\r\n"),
            Body::Bytes(b) => head.push_str(&format!("Content-Length: {}\r\n", b.len())),
            Body::Stream(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
        }
        head.push_str("\r\n");

        stream
            .set_write_timeout(Some(remaining(deadline)?))
            .map_err(|e| connection(e, "configuring the socket"))?;
        let duplex = match body {
            Body::Bytes(b) => b.len() > DUPLEX_ABOVE,
            Body::Stream(_) => true,
            Body::Empty => false,
        };
        if !duplex {
            let mut w = BufWriter::new(&*stream);
            w.write_all(head.as_bytes())
                .and_then(|()| match body {
                    Body::Bytes(b) => w.write_all(b),
                    _ => Ok(()),
                })
                .and_then(|()| w.flush())
                .map_err(|e| connection(e, "sending the request"))?;
            return read_response(reader, deadline, on_body);
        }
        // Full duplex: a second thread sends while this one reads.
        let writer = stream
            .try_clone()
            .map_err(|e| connection(e, "cloning the socket"))?;
        std::thread::scope(|s| {
            let sender = s.spawn(move || send_body(writer, head.as_bytes(), body));
            let response = read_response(reader, deadline, on_body);
            if response.is_err() {
                // Unblock the sender if the server stopped reading.
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            let sent = sender.join().unwrap_or_else(|_| {
                Err(TransformError::Connection(
                    "the body sender panicked".into(),
                ))
            });
            match (response, sent) {
                // An error answer can come before the whole body was read
                // (a 413): the answer is what matters, but the connection
                // is no longer usable.
                (Ok(mut h), Err(_)) if !(200..300).contains(&h.status) => {
                    h.close = true;
                    Ok(h)
                }
                (Ok(_), Err(e)) => Err(e),
                (r, _) => r,
            }
        })
    }
}

/// Whether a kept-alive connection is still usable: the server has not
/// closed it (a non-blocking peek sees no end of stream) and sent nothing
/// unasked. Checked before each reuse, so an idle connection the server
/// dropped costs a reconnect, not one of the request's attempts.
fn still_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let open = matches!(stream.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).is_ok() && open
}

/// The time left before `deadline`; an error once it has passed.
pub fn remaining(deadline: Instant) -> Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or(TransformError::Timeout { secs: 0.0 })
}

/// Write the head and the body (chunked if streamed).
fn send_body(stream: TcpStream, head: &[u8], body: &mut Body<'_>) -> Result<()> {
    let mut w = BufWriter::with_capacity(CHUNK + 32, stream);
    let err = |e| connection(e, "sending the request body");
    w.write_all(head).map_err(err)?;
    match body {
        Body::Empty => {}
        Body::Bytes(b) => w.write_all(b).map_err(err)?,
        Body::Stream(r) => {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(TransformError::io("reading the body to send", e));
                    }
                };
                write!(w, "{n:x}\r\n").map_err(err)?;
                w.write_all(&buf[..n]).map_err(err)?;
                w.write_all(b"\r\n").map_err(err)?;
            }
            w.write_all(b"0\r\n\r\n").map_err(err)?;
        }
    }
    w.flush().map_err(err)
}

/// Read one response (skipping interim 1xx ones).
fn read_response(
    r: &mut BufReader<TcpStream>,
    deadline: Instant,
    on_body: &mut dyn FnMut(&Head, &[u8]) -> Result<()>,
) -> Result<Head> {
    loop {
        let head = read_head(r, deadline)?;
        if (100..200).contains(&head.status) {
            continue;
        }
        read_body(r, &head, deadline, on_body)?;
        return Ok(head);
    }
}

/// A timeout stays a timeout; any other failure inside a body is a cut.
fn or_cut(e: TransformError, cut: impl Fn() -> TransformError) -> TransformError {
    match e {
        TransformError::Timeout { .. } => e,
        _ => cut(),
    }
}

/// Set the read timeout to what is left of the deadline.
fn arm(r: &BufReader<TcpStream>, deadline: Instant) -> Result<()> {
    r.get_ref()
        .set_read_timeout(Some(remaining(deadline)?))
        .map_err(|e| connection(e, "configuring the socket"))
}

fn read_line(r: &mut BufReader<TcpStream>, deadline: Instant, line: &mut Vec<u8>) -> Result<()> {
    line.clear();
    arm(r, deadline)?;
    let n = r
        .by_ref()
        .take(MAX_HEAD_LINE as u64)
        .read_until(b'\n', line)
        .map_err(|e| timeout_or(e, deadline, "reading the response"))?;
    if n == 0 || line.last() != Some(&b'\n') {
        return Err(TransformError::Connection(
            "the connection closed before the response was complete".into(),
        ));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(())
}

/// A read that failed because the deadline passed is a timeout.
fn timeout_or(e: io::Error, deadline: Instant, what: &str) -> TransformError {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) && Instant::now() + Duration::from_millis(5) >= deadline
    {
        TransformError::Timeout { secs: 0.0 }
    } else {
        connection(e, what)
    }
}

fn read_head(r: &mut BufReader<TcpStream>, deadline: Instant) -> Result<Head> {
    let mut line = Vec::new();
    read_line(r, deadline, &mut line)?;
    let text = String::from_utf8_lossy(&line);
    let mut parts = text.split_whitespace();
    let version = parts.next().unwrap_or("");
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| TransformError::Connection(format!("not an HTTP response: {text:?}")))?;
    let mut head = Head {
        status,
        close: version == "HTTP/1.0",
        ..Head::default()
    };
    let mut length = None;
    let mut chunked = false;
    loop {
        read_line(r, deadline, &mut line)?;
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let Some((name, value)) = text.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(value.parse::<u64>().map_err(|_| {
                    TransformError::Connection(format!("bad Content-Length {value:?}"))
                })?)
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => head.close |= value.eq_ignore_ascii_case("close"),
            "content-type" => head.content_type = Some(value.to_string()),
            _ => {}
        }
    }
    head.framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        head.close = true;
        Framing::ToClose
    };
    Ok(head)
}

fn read_body(
    r: &mut BufReader<TcpStream>,
    head: &Head,
    deadline: Instant,
    on_body: &mut dyn FnMut(&Head, &[u8]) -> Result<()>,
) -> Result<()> {
    let cut = || {
        TransformError::Connection(
            "the connection closed before the response was complete (cut response)".into(),
        )
    };
    // Pass up to `n` bytes (all, for `None`) to `on_body`; returns how many
    // arrived before the end of the stream.
    let mut pump = |r: &mut BufReader<TcpStream>, n: Option<u64>| -> Result<u64> {
        let mut left = n.unwrap_or(u64::MAX);
        let mut got = 0;
        while left > 0 {
            arm(r, deadline)?;
            let buf = r
                .fill_buf()
                .map_err(|e| timeout_or(e, deadline, "reading the response"))?;
            if buf.is_empty() {
                break;
            }
            let take = (buf.len() as u64).min(left) as usize;
            on_body(head, &buf[..take])?;
            r.consume(take);
            left -= take as u64;
            got += take as u64;
        }
        Ok(got)
    };
    match head.framing {
        Framing::None => Ok(()),
        Framing::Length(n) => {
            if pump(r, Some(n))? < n {
                return Err(cut());
            }
            Ok(())
        }
        Framing::ToClose => pump(r, None).map(drop),
        Framing::Chunked => {
            let mut line = Vec::new();
            loop {
                read_line(r, deadline, &mut line).map_err(|e| or_cut(e, cut))?;
                let text = String::from_utf8_lossy(&line);
                let size = text.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16)
                    .map_err(|_| TransformError::Connection(format!("bad chunk size {text:?}")))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        read_line(r, deadline, &mut line).map_err(|e| or_cut(e, cut))?;
                        if line.is_empty() {
                            return Ok(());
                        }
                    }
                }
                if pump(r, Some(size))? < size {
                    return Err(cut());
                }
                read_line(r, deadline, &mut line).map_err(|e| or_cut(e, cut))?;
                if !line.is_empty() {
                    return Err(TransformError::Connection("bad chunk ending".into()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server answering each connection with `reply`.
    fn serve(reply: &'static [u8]) -> Url {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().take(2) {
                let mut s = s.unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                let _ = s.write_all(reply);
            }
        });
        Url::parse(&format!("http://{addr}")).unwrap()
    }

    fn get(url: Url) -> Result<(u16, Vec<u8>)> {
        let mut c = Client::new(url);
        let mut body = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let head = c.request("GET", "/x", &[], Body::Empty, deadline, &mut |_, b| {
            body.extend_from_slice(b);
            Ok(())
        })?;
        Ok((head.status, body))
    }

    #[test]
    fn chunked_and_length_bodies() {
        let url = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n");
        assert_eq!(get(url).unwrap(), (200, b"abcde".to_vec()));
        let url = serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno");
        assert_eq!(get(url).unwrap(), (404, b"no".to_vec()));
        let url = serve(b"HTTP/1.0 200 OK\r\n\r\nto close");
        assert_eq!(get(url).unwrap(), (200, b"to close".to_vec()));
    }

    #[test]
    fn a_cut_response_is_an_error() {
        let url = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
        let e = get(url).unwrap_err();
        assert!(
            e.to_string().contains("before the response was complete"),
            "{e}"
        );
        let url = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc");
        assert!(get(url).is_err());
        let url = serve(b"");
        assert!(matches!(
            get(url).unwrap_err(),
            TransformError::Connection(_)
        ));
    }

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.base.as_str()),
            ("127.0.0.1:8080", "")
        );
        let u = Url::parse("http://localhost:9/prefix/").unwrap();
        assert_eq!(u.base, "/prefix");
        assert!(Url::parse("https://x").is_err());
        assert!(Url::parse("http://").is_err());
    }
}
