//! An expensive model (issue 16 §4): a model that takes 10 ms a batch
//! (`predict_delay_ms` in its `model.json`) runs on the compute pool, so
//! `/ping` still answers within 10 ms while more clients than the runtime
//! has workers keep it scoring, and its answers are the cheap model's, byte
//! for byte. With the pool off (`MMP_COMPUTE_THREADS=0`) the one runtime
//! worker sleeps in `predict` and the same pings wait: the measurement can
//! fail.

use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::{
    chunk, chunked_head, csv_rows, delayed_model, post_request, read_response, Response, Server,
    LAST_CHUNK,
};

/// What the slow model sleeps per batch.
const DELAY: Duration = Duration::from_millis(10);
/// Rows per scoring request: 4 full batches and a part (1024 a batch), so
/// a request keeps the model busy for 50 ms.
const ROWS: usize = 4 * 1024 + 100;
/// Scoring clients: more than the runtime's one worker, and than the
/// pool's threads on a small machine.
const CLIENTS: usize = 3;
/// Pings timed under load.
const PINGS: usize = 25;

/// The fixtures' model, told to sleep `DELAY` per batch.
pub(crate) fn slow_model() -> tempfile::TempDir {
    delayed_model(DELAY.as_millis() as u64)
}

/// `mmp serve` with one runtime worker, the slow model and this many
/// compute threads.
pub(crate) fn serve(dir: &tempfile::TempDir, compute_threads: &str) -> Server {
    Server::start_with(
        &[
            ("MODEL_SERVER_WORKERS", "1"),
            ("MMP_COMPUTE_THREADS", compute_threads),
        ],
        &["--model-dir", dir.path().to_str().unwrap()],
    )
}

fn ping(server: &Server) -> Duration {
    let started = Instant::now();
    let r = server.request(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    took
}

/// Sets the flag when dropped, so the clients stop however the pings end.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The median of `PINGS` ping times taken while `CLIENTS` clients keep
/// posting `body` (each checks every answer is `expected`), once every
/// client has had one answer, so all of them are scoring.
fn median_ping_under_load(server: &Server, body: &[u8], expected: &[u8]) -> Duration {
    let request = post_request("text/csv", None, body);
    let stop = AtomicBool::new(false);
    let (scoring, answered) = mpsc::channel();
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        for _ in 0..CLIENTS {
            let scoring = scoring.clone();
            let (request, stop) = (&request, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let mut conn = server.connect();
                    conn.write_all(request).unwrap();
                    let r = read_response(&mut BufReader::new(conn)).unwrap();
                    assert_eq!(r.status, 200, "{}", r.text());
                    assert!(r.complete);
                    assert!(r.body == expected, "a different answer under load");
                    let _ = scoring.send(());
                }
            });
        }
        drop(scoring);
        for _ in 0..CLIENTS {
            answered
                .recv_timeout(Duration::from_secs(60))
                .expect("every client has an answer");
        }
        let mut times: Vec<Duration> = (0..PINGS).map(|_| ping(server)).collect();
        times.sort();
        eprintln!("ping times under load: {times:?}");
        times[PINGS / 2]
    })
}

#[test]
fn ping_answers_within_10_ms_while_a_slow_model_scores_on_the_pool() {
    let body = csv_rows(0, ROWS);
    let expected = Server::start(&[]).post("text/csv", None, &body);
    assert_eq!(expected.status, 200);
    let dir = slow_model();
    // At least two compute threads, whatever the machine: the clients
    // outnumber them, so the pool is saturated and its queue in use.
    let server = serve(&dir, "2");
    let median = median_ping_under_load(&server, &body, &expected.body);
    assert!(
        median < DELAY,
        "the median ping took {median:?} under load, over {DELAY:?}"
    );
}

#[test]
fn with_the_pool_off_the_same_pings_wait_for_predict() {
    // The counter-test: one runtime worker asleep in `predict` nearly all
    // the time, so a ping waits for a batch to end.
    let body = csv_rows(0, ROWS);
    let expected = Server::start(&[]).post("text/csv", None, &body);
    let dir = slow_model();
    let server = serve(&dir, "0");
    let median = median_ping_under_load(&server, &body, &expected.body);
    assert!(
        median > DELAY,
        "the median ping took {median:?} with predict on the runtime"
    );
}

/// A chunked request of `chunks` bodies, one HTTP chunk each, written at
/// once: a server that answers an error before reading all of it then has
/// it all in its buffer, so closing does not reset the connection.
fn post_chunked(server: &Server, chunks: &[Vec<u8>]) -> Response {
    let mut request = chunked_head("text/csv", None);
    for c in chunks {
        request.extend(chunk(c));
    }
    request.extend_from_slice(LAST_CHUNK);
    let mut conn = server.connect();
    conn.write_all(&request).unwrap();
    read_response(&mut BufReader::new(conn)).unwrap()
}

#[test]
fn the_pool_answers_what_the_runtime_answers_errors_and_positions_too() {
    let cheap = Server::start(&[]);
    let dir = slow_model();
    let slow = serve(&dir, "2");
    // Many chunks, records cut across them: one hop each.
    let rows = csv_rows(0, 3000);
    let chunks: Vec<Vec<u8>> = rows.chunks(777).map(<[u8]>::to_vec).collect();
    let want = post_chunked(&cheap, &chunks);
    let got = post_chunked(&slow, &chunks);
    assert_eq!(got.status, 200);
    assert!(got.complete);
    assert_eq!(got.text(), want.text());
    // A bad record in the third chunk: the same status and message,
    // naming the same record, line and byte.
    let mut bad = csv_rows(0, 40);
    bad.extend_from_slice(b"1,x,2\n");
    bad.extend(csv_rows(40, 10));
    let chunks: Vec<Vec<u8>> = bad.chunks(100).map(<[u8]>::to_vec).collect();
    let want = post_chunked(&cheap, &chunks);
    let got = post_chunked(&slow, &chunks);
    assert_eq!(want.status, 400, "{}", want.text());
    assert_eq!(got.status, want.status);
    assert_eq!(got.json(), want.json());
    assert!(got.text().contains("record 41"), "{}", got.text());
}
