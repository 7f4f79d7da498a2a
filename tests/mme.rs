//! Multi-model endpoints over a real socket, as SageMaker drives them (AWS DG,
//! "Custom Containers Contract for Multi-Model Endpoints"): every route and
//! status, pagination, the memory budget's 507, loads, unloads and invokes
//! racing from many threads, an unload during a streamed invoke, metrics and
//! log lines, and ten thousand models at once.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::*;

/// A multi-model server loading from `root`, with extra variables.
fn mme_server(root: &Path, env: &[(&str, &str)]) -> Server {
    let mut vars = vec![("MMP_MME_MODEL_ROOT", root.to_str().unwrap())];
    vars.extend_from_slice(env);
    Server::start_with(&vars, &["--multi-model"])
}

/// Write `ROOT/NAME/model/model.json` as SageMaker lays models out, and
/// return that directory (the `url` of a load request).
fn write_model(root: &Path, name: &str, bias: f64, weights: &[f64]) -> PathBuf {
    let dir = root.join(name).join("model");
    std::fs::create_dir_all(&dir).unwrap();
    let text = serde_json::json!({"bias": bias, "weights": weights}).to_string();
    std::fs::write(dir.join("model.json"), text).unwrap();
    dir
}

/// A persistent connection (SageMaker's front end keeps them open).
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn new(s: &Server) -> Conn {
        let w = s.connect();
        Conn {
            reader: BufReader::new(w.try_clone().unwrap()),
            writer: w,
        }
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let raw = raw_request(method, path, headers, body);
        self.writer.write_all(&raw).unwrap();
        read_response(&mut self.reader).unwrap()
    }
}

/// One request on a new connection.
fn call(s: &Server, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    Conn::new(s).send(method, path, headers, body)
}

fn load_body(name: &str, url: &Path) -> Vec<u8> {
    serde_json::json!({"model_name": name, "url": url})
        .to_string()
        .into_bytes()
}

fn load(s: &Server, name: &str, url: &Path) -> Response {
    call(
        s,
        "POST",
        "/models",
        &[("Content-Type", "application/json")],
        &load_body(name, url),
    )
}

fn invoke(s: &Server, name: &str, csv: &str) -> Response {
    call(
        s,
        "POST",
        &format!("/models/{name}/invoke"),
        &[("Content-Type", "text/csv"), ("Accept", "text/csv")],
        csv.as_bytes(),
    )
}

/// The CSV answer's numbers.
fn numbers(r: &Response) -> Vec<f64> {
    r.text().lines().map(|l| l.parse().unwrap()).collect()
}

#[test]
fn every_route_and_status() {
    let root = tempfile::tempdir().unwrap();
    let s = mme_server(root.path(), &[]);
    // Up with no model loaded: ready.
    let r = call(&s, "GET", "/ping", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    // No default model.
    let r = s.post("text/csv", None, b"1,2,3\n");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "multi_model");
    let r = call(&s, "GET", "/models", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"models": []}));

    // Load, describe, invoke.
    let url = write_model(root.path(), "m1", 1.0, &[2.0, -1.0]);
    let r = load(&s, "m1", &url);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["modelName"], "m1");
    let r = call(&s, "GET", "/models/m1", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::json!({"modelName": "m1", "modelUrl": url.to_str().unwrap()})
    );
    let r = invoke(&s, "m1", "1,1\n0.5,3\n");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(numbers(&r), vec![1.0 + 2.0 - 1.0, 1.0 + 1.0 - 3.0]);
    // Loaded already.
    let r = load(&s, "m1", &url);
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"], "model_already_loaded");

    // Not loaded.
    for (method, path) in [
        ("GET", "/models/m2"),
        ("DELETE", "/models/m2"),
        ("POST", "/models/m2/invoke"),
    ] {
        let r = call(&s, method, path, &[("Content-Type", "text/csv")], b"1,2\n");
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.json()["error"], "model_not_found", "{method} {path}");
    }

    // Broken artifacts: 400 naming the file and the reason.
    let broken = root.path().join("broken/model");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("model.json"), br#"{"bias": 1, "weights": []}"#).unwrap();
    let r = load(&s, "broken", &broken);
    assert_eq!(r.status, 400);
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("model.json") && msg.contains("\"weights\" is empty"),
        "{msg}"
    );
    let empty = root.path().join("empty/model");
    std::fs::create_dir_all(&empty).unwrap();
    let r = load(&s, "empty", &empty);
    assert_eq!(r.status, 400);
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("model.json") && msg.contains("No such file"),
        "{msg}"
    );
    // A failed load leaves nothing behind: the name is free again.
    std::fs::write(empty.join("model.json"), br#"{"bias": 0, "weights": [1]}"#).unwrap();
    assert_eq!(load(&s, "empty", &empty).status, 200);

    // No such directory.
    let r = load(&s, "ghost", &root.path().join("ghost/model"));
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "model_dir_not_found");

    // Unload: gone at once.
    let r = call(&s, "DELETE", "/models/m1", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(call(&s, "GET", "/models/m1", &[], b"").status, 404);
    assert_eq!(invoke(&s, "m1", "1,1\n").status, 404);
    assert_eq!(call(&s, "DELETE", "/models/m1", &[], b"").status, 404);
    // And loadable again.
    assert_eq!(load(&s, "m1", &url).status, 200);

    // Wrong methods.
    assert_eq!(call(&s, "PUT", "/models", &[], b"").status, 405);
    assert_eq!(call(&s, "GET", "/models/m1/invoke", &[], b"").status, 405);
    // The server is still serving after all of that.
    assert_eq!(invoke(&s, "m1", "1,1\n").status, 200);
}

#[test]
fn bad_load_requests_are_400_and_nothing_reads_outside_the_root() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let s = mme_server(root.path(), &[]);
    let url = write_model(root.path(), "ok", 0.0, &[1.0]);
    let away = write_model(outside.path(), "away", 0.0, &[1.0]);
    std::os::unix::fs::symlink(&away, root.path().join("link")).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "not {\"model_name\""),
        (br#"{"model_name": "x"}"#.to_vec(), "missing field `url`"),
        (load_body("a/b", &url), "contains '/'"),
        (load_body("..", &url), "not a valid name"),
        (load_body("", &url), "empty"),
        (load_body(&"n".repeat(1025), &url), "1025 bytes"),
        (
            br#"{"model_name": "x", "url": "relative/model"}"#.to_vec(),
            "not an absolute path",
        ),
        // Outside the root, directly, through `..`, and through a link.
        (load_body("x", &away), "outside the model root"),
        (
            load_body(
                "x",
                &root
                    .path()
                    .join("ok/../..")
                    .join(outside.path().file_name().unwrap())
                    .join("away/model"),
            ),
            "outside the model root",
        ),
        (
            load_body("x", &root.path().join("link")),
            "outside the model root",
        ),
        (load_body("x", &url.join("model.json")), "not a directory"),
    ];
    for (body, why) in cases {
        let r = call(&s, "POST", "/models", &[], &body);
        assert_eq!(
            r.status,
            400,
            "{}: {}",
            String::from_utf8_lossy(&body),
            r.text()
        );
        assert_eq!(r.json()["error"], "bad_request");
        let msg = r.json()["message"].as_str().unwrap().to_string();
        assert!(msg.contains(why), "{why}: {msg}");
    }
    let r = call(&s, "POST", "/models", &[], &vec![b' '; 70 * 1024]);
    assert_eq!(r.status, 413);
    // None of them was loaded.
    assert_eq!(
        call(&s, "GET", "/models", &[], b"").json(),
        serde_json::json!({"models": []})
    );
    // Names in paths are percent-decoded, and a decoded '/' is refused.
    assert_eq!(load(&s, "a b", &url).status, 200);
    assert_eq!(
        call(&s, "GET", "/models/a%20b", &[], b"").json()["modelName"],
        "a b"
    );
    let r = call(&s, "GET", "/models/a%2Fb", &[], b"");
    assert_eq!(r.status, 400);
    // Bad list parameters.
    for q in ["limit=0", "limit=ten", "next_page_token=xyz"] {
        let r = call(&s, "GET", &format!("/models?{q}"), &[], b"");
        assert_eq!(r.status, 400, "{q}");
        let param = q.split('=').next().unwrap();
        assert!(r.json()["message"].as_str().unwrap().contains(param), "{q}");
    }
}

#[test]
fn without_multi_model_the_routes_do_not_exist() {
    let s = Server::start(&[]);
    assert_eq!(call(&s, "GET", "/models", &[], b"").status, 404);
    let r = call(&s, "POST", "/models", &[], b"{}");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    assert_eq!(s.post("text/csv", None, b"1,2,3\n").status, 200);
}

#[test]
fn the_variable_turns_it_on_too() {
    let root = tempfile::tempdir().unwrap();
    let vars = [
        ("SAGEMAKER_MULTI_MODEL", "true"),
        ("MMP_MME_MODEL_ROOT", root.path().to_str().unwrap()),
    ];
    // No --model-dir, and no /opt/ml/model: it must not try to load one.
    let s = Server::start_with(&vars, &[]);
    assert_eq!(call(&s, "GET", "/models", &[], b"").status, 200);
}

#[test]
fn invoke_is_the_invocations_pipeline() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("fixture/model");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(model_dir().join("model.json"), dir.join("model.json")).unwrap();
    let s = mme_server(root.path(), &[]);
    assert_eq!(load(&s, "fixture", &dir).status, 200);
    // Every golden input in every output format: the golden files come from
    // scripts/gen_golden.py (Python's csv and json modules).
    for input in golden_inputs() {
        let body = std::fs::read(&input).unwrap();
        for out in ["csv", "jsonl", "json"] {
            let r = call(
                &s,
                "POST",
                "/models/fixture/invoke",
                &[
                    ("Content-Type", mime(short_of(&input))),
                    ("Accept", mime(out)),
                ],
                &body,
            );
            assert_eq!(r.status, 200, "{input:?} {out}: {}", r.text());
            assert_eq!(r.header("content-type"), Some(mime(out)));
            assert_eq!(
                r.text(),
                String::from_utf8(golden_expected(&input, out)).unwrap(),
                "{input:?} {out}"
            );
        }
    }
    // The same headers and error statuses as /invocations.
    let r = call(
        &s,
        "POST",
        "/models/fixture/invoke",
        &[
            ("Content-Type", "text/csv"),
            ("X-Amzn-SageMaker-Custom-Attributes", "trace=7"),
            ("X-Amzn-SageMaker-Target-Model", "customer-7/model.tar.gz"),
        ],
        b"1,2,3\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-amzn-sagemaker-custom-attributes"),
        Some("trace=7")
    );
    assert!(r.header("x-request-id").is_some());
    for case in bad_cases()
        .iter()
        .filter(|c| c.max_record_bytes.is_none() && c.max_document_bytes.is_none())
    {
        let body = std::fs::read(&case.input).unwrap();
        let r = call(
            &s,
            "POST",
            "/models/fixture/invoke",
            &[("Content-Type", mime(short_of(&case.input)))],
            &body,
        );
        assert_eq!(r.status, case.status, "{:?}", case.input);
        assert_eq!(r.json()["error"], case.error.as_str(), "{:?}", case.input);
    }
    let r = call(
        &s,
        "POST",
        "/models/fixture/invoke",
        &[("Content-Type", "text/html")],
        b"x",
    );
    assert_eq!(r.status, 415);
    let r = call(
        &s,
        "POST",
        "/models/fixture/invoke",
        &[("Content-Type", "text/csv"), ("Accept", "image/png")],
        b"1,2,3\n",
    );
    assert_eq!(r.status, 406);
}

#[test]
fn list_pages_in_name_order_with_tokens_while_more_remain() {
    let root = tempfile::tempdir().unwrap();
    let s = mme_server(root.path(), &[]);
    let mut names: Vec<String> = (0..25)
        .map(|i| format!("model-{:02}", (i * 7) % 25))
        .collect();
    for n in &names {
        let url = write_model(root.path(), n, 0.0, &[1.0]);
        assert_eq!(load(&s, n, &url).status, 200);
    }
    names.sort();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            None => "/models?limit=10".to_string(),
            Some(t) => format!("/models?limit=10&next_page_token={t}"),
        };
        let v = call(&s, "GET", &path, &[], b"").json();
        pages += 1;
        for m in v["models"].as_array().unwrap() {
            let name = m["modelName"].as_str().unwrap().to_string();
            let url = root.path().join(&name).join("model");
            assert_eq!(m["modelUrl"], url.to_str().unwrap());
            seen.push(name);
        }
        if pages == 1 {
            // A model loaded before the cursor mid-listing is not listed on
            // the later pages, and nothing is repeated or skipped.
            let url = write_model(root.path(), "model-00a", 0.0, &[1.0]);
            assert_eq!(load(&s, "model-00a", &url).status, 200);
        }
        match v.get("nextPageToken") {
            Some(t) => token = Some(t.as_str().unwrap().to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, names);
    // Without a limit: MMS's default of 100, all on one page.
    let v = call(&s, "GET", "/models", &[], b"").json();
    assert_eq!(v["models"].as_array().unwrap().len(), 26);
    assert!(v.get("nextPageToken").is_none());
    // Exactly a page: no token for an empty next page.
    let v = call(&s, "GET", "/models?limit=26", &[], b"").json();
    assert!(v.get("nextPageToken").is_none());
}

#[test]
fn budget_fits_n_models_and_refuses_the_next_until_one_is_deleted() {
    let root = tempfile::tempdir().unwrap();
    const N: usize = 4;
    let urls: Vec<PathBuf> = (0..=N)
        .map(|i| write_model(root.path(), &format!("m{i}"), i as f64, &[1.0, 2.0, 3.0]))
        .collect();
    // Each artifact is one model.json of the same length.
    let size = std::fs::metadata(urls[0].join("model.json")).unwrap().len();
    let budget = (N as u64 * size + size / 2).to_string();
    let s = mme_server(root.path(), &[("MMP_MME_MEMORY_BUDGET", &budget)]);
    for (i, url) in urls.iter().take(N).enumerate() {
        assert_eq!(load(&s, &format!("m{i}"), url).status, 200);
    }
    let r = load(&s, &format!("m{N}"), &urls[N]);
    assert_eq!(r.status, 507, "{}", r.text());
    assert_eq!(r.json()["error"], "insufficient_memory");
    assert!(r.json()["message"].as_str().unwrap().contains(&budget));
    // Refused again while nothing was freed; then SageMaker unloads one.
    assert_eq!(load(&s, &format!("m{N}"), &urls[N]).status, 507);
    assert_eq!(call(&s, "DELETE", "/models/m0", &[], b"").status, 200);
    assert_eq!(load(&s, &format!("m{N}"), &urls[N]).status, 200);
    assert_eq!(invoke(&s, &format!("m{N}"), "1,1,1\n").status, 200);
    assert_eq!(load(&s, "m0", &urls[0]).status, 507);

    let m = scrape(&s);
    assert_eq!(m["mmp_mme_models_loaded{}"], N as f64);
    assert_eq!(m["mmp_mme_loads_total{}"], (N + 1) as f64);
    assert_eq!(m["mmp_mme_unloads_total{}"], 1.0);
    assert_eq!(m["mmp_mme_loads_refused_total{}"], 3.0);
    assert_eq!(m["mmp_mme_load_seconds_count{}"], (N + 1) as f64);
    // Invocations are counted by route, never by model.
    assert_eq!(
        m[r#"mmp_http_requests_total{route="/models/:model_name/invoke",status="200"}"#],
        1.0
    );
    assert!(m.keys().all(|k| !k.contains("model=")), "a per-model label");
}

#[test]
fn concurrent_loads_of_one_name_give_one_200_and_the_rest_409() {
    let root = tempfile::tempdir().unwrap();
    let url = write_model(root.path(), "same", 0.0, &[1.0; 64]);
    let s = mme_server(root.path(), &[]);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| load(&s, "same", &url).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&c| c == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&c| c == 409).count(),
        15,
        "{statuses:?}"
    );
}

#[test]
fn requests_are_served_while_a_large_model_loads() {
    let root = tempfile::tempdir().unwrap();
    let small = write_model(root.path(), "small", 1.0, &[1.0]);
    // Two million weights: some 26 MB of JSON, long enough to parse that
    // the requests below land in the middle of the load.
    let weights: Vec<f64> = (0..2_000_000).map(|i| (i % 1000) as f64 / 997.0).collect();
    let big = write_model(root.path(), "big", 0.0, &weights);
    let s = mme_server(root.path(), &[]);
    assert_eq!(load(&s, "small", &small).status, 200);
    let done = std::sync::atomic::AtomicBool::new(false);
    let served_during_load = std::thread::scope(|scope| {
        let loader = scope.spawn(|| {
            let r = load(&s, "big", &big);
            done.store(true, Ordering::SeqCst);
            r.status
        });
        // The load has reserved its name once it logs this.
        s.wait_log("loading model model=\"big\"", Duration::from_secs(30));
        let mut served = 0;
        let mut c = Conn::new(&s);
        while !done.load(Ordering::SeqCst) {
            let r = c.send("POST", "/models", &[], &load_body("big", &big));
            assert_eq!(r.status, 409, "{}", r.text());
            let r = c.send(
                "POST",
                "/models/small/invoke",
                &[("Content-Type", "text/csv")],
                b"2\n",
            );
            assert_eq!((r.status, r.text().as_str()), (200, "3.0\n"));
            // Still not ready after the invoke: it was answered mid-load.
            if c.send("GET", "/models/big", &[], b"").status == 404 {
                served += 1;
            }
        }
        assert_eq!(loader.join().unwrap(), 200);
        served
    });
    eprintln!("invokes answered while the big model loaded: {served_during_load}");
    assert!(
        served_during_load > 0,
        "no request was answered during the load"
    );
    assert_eq!(call(&s, "GET", "/models/big", &[], b"").status, 200);
}

#[test]
fn loads_unloads_and_invokes_racing_never_see_a_half_loaded_model() {
    let root = tempfile::tempdir().unwrap();
    // Models whose answers tell them apart: model k predicts k + x.
    const MODELS: usize = 4;
    let urls: Vec<PathBuf> = (0..MODELS)
        .map(|k| write_model(root.path(), &format!("r{k}"), k as f64 * 1000.0, &[1.0]))
        .collect();
    let s = mme_server(root.path(), &[]);
    let ok = AtomicUsize::new(0);
    let missing = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(4);
    std::thread::scope(|scope| {
        // Loaders and unloaders churn every model.
        for t in 0..2 {
            let (s, urls) = (&s, &urls);
            scope.spawn(move || {
                let mut c = Conn::new(s);
                let mut i = t;
                while Instant::now() < deadline {
                    let k = i % MODELS;
                    let name = format!("r{k}");
                    let r = c.send("POST", "/models", &[], &load_body(&name, &urls[k]));
                    assert!(
                        matches!(r.status, 200 | 409),
                        "load: {} {}",
                        r.status,
                        r.text()
                    );
                    let r = c.send("DELETE", &format!("/models/{name}"), &[], b"");
                    assert!(
                        matches!(r.status, 200 | 404),
                        "unload: {} {}",
                        r.status,
                        r.text()
                    );
                    i += 1;
                }
            });
        }
        // Invokers: every answer is the right model's, or a 404.
        for t in 0..4 {
            let (s, ok, missing) = (&s, &ok, &missing);
            scope.spawn(move || {
                let mut c = Conn::new(s);
                let mut i = t;
                while Instant::now() < deadline {
                    let k = i % MODELS;
                    let r = c.send(
                        "POST",
                        &format!("/models/r{k}/invoke"),
                        &[("Content-Type", "text/csv")],
                        b"1\n2\n",
                    );
                    match r.status {
                        200 => {
                            let base = k as f64 * 1000.0;
                            assert_eq!(numbers(&r), vec![base + 1.0, base + 2.0]);
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        404 => {
                            assert_eq!(r.json()["error"], "model_not_found");
                            missing.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("invoke r{k}: {other} {}", r.text()),
                    }
                    i += 1;
                }
            });
        }
    });
    eprintln!(
        "racing: {} answered, {} not loaded",
        ok.load(Ordering::Relaxed),
        missing.load(Ordering::Relaxed)
    );
    assert!(ok.load(Ordering::Relaxed) > 0 && missing.load(Ordering::Relaxed) > 0);
    // The registry ends consistent: whatever is listed answers.
    let v = call(&s, "GET", "/models", &[], b"").json();
    for m in v["models"].as_array().unwrap() {
        let name = m["modelName"].as_str().unwrap();
        assert_eq!(invoke(&s, name, "1\n").status, 200);
    }
}

#[test]
fn an_unload_during_a_streamed_invoke_lets_it_finish() {
    let root = tempfile::tempdir().unwrap();
    let url = write_model(root.path(), "stream", 0.5, &[1.0, 1.0]);
    let s = mme_server(root.path(), &[]);
    assert_eq!(load(&s, "stream", &url).status, 200);
    let mut w = s.connect();
    let mut head = b"POST /models/stream/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n\
                     Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    head.extend(chunk(b"1,1\n2,2\n"));
    w.write_all(&head).unwrap();
    // The status line arrives once the first predictions are out: the
    // request is running on the model.
    let mut reader = BufReader::new(w.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let r = call(&s, "DELETE", "/models/stream", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(invoke(&s, "stream", "1,1\n").status, 404);
    // The running request goes on to its end on the unloaded model.
    let mut rest = Vec::new();
    for i in 3..103 {
        rest.extend(chunk(format!("{i},{i}\n").as_bytes()));
    }
    rest.extend_from_slice(LAST_CHUNK);
    w.write_all(&rest).unwrap();
    let mut replay = BufReader::new(std::io::Cursor::new(status.into_bytes()).chain(reader));
    let r = read_response(&mut replay).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.complete, "the response was cut");
    let want: Vec<f64> = (1..103).map(|i| 0.5 + 2.0 * i as f64).collect();
    assert_eq!(numbers(&r), want);
}

#[test]
fn logs_carry_the_model_name_and_target_model() {
    let root = tempfile::tempdir().unwrap();
    let url = write_model(root.path(), "logged", 0.0, &[1.0]);
    let s = mme_server(root.path(), &[("MODEL_SERVER_LOG_FORMAT", "json")]);
    assert_eq!(load(&s, "logged", &url).status, 200);
    let r = call(
        &s,
        "POST",
        "/models/logged/invoke",
        &[
            ("Content-Type", "text/csv"),
            ("X-Amzn-SageMaker-Target-Model", "customers/7/model.tar.gz"),
        ],
        b"1\n",
    );
    assert_eq!(r.status, 200);
    let line = s.wait_log("customers/7/model.tar.gz", Duration::from_secs(10));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["path"], "/models/:model_name/invoke");
    assert_eq!(v["model"], "logged");
    assert_eq!(v["target_model"], "customers/7/model.tar.gz");
    assert_eq!(v["status"], 200);
    let line = s.wait_log("model loaded", Duration::from_secs(10));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["model"], "logged");
    assert!(v["load_ms"].as_f64().is_some());
}

/// Median and 99th percentile of the latency of `n` invokes of one model on
/// one connection, in microseconds.
fn invoke_latency(s: &Server, name: &str, n: usize) -> (f64, f64) {
    let mut c = Conn::new(s);
    let mut us: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let r = c.send(
                "POST",
                &format!("/models/{name}/invoke"),
                &[("Content-Type", "text/csv")],
                b"1,2,3,4\n",
            );
            assert_eq!(r.status, 200);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(f64::total_cmp);
    (us[n / 2], us[n * 99 / 100])
}

#[test]
fn ten_thousand_models() {
    const MODELS: usize = 10_000;
    // Each artifact: 64 weights, about 1.3 KB of JSON.
    let weights: Vec<f64> = (0..64).map(|i| i as f64 / 7.0).collect();
    let root = tempfile::tempdir().unwrap();
    let urls: Vec<PathBuf> = (0..MODELS)
        .map(|i| {
            write_model(
                root.path(),
                &format!("m{i:05}"),
                i as f64,
                &weights[..4 + i % 60],
            )
        })
        .collect();
    let artifacts: u64 = urls
        .iter()
        .map(|u| std::fs::metadata(u.join("model.json")).unwrap().len())
        .sum();
    // Per-request lines off: ten thousand of them are not what is measured.
    let s = mme_server(root.path(), &[("RUST_LOG", "info,mmp::request=warn")]);
    assert_eq!(load(&s, "m00000", &urls[0]).status, 200);
    let before = invoke_latency(&s, "m00000", 2000);
    let (_, rss_before) = s.memory_kib();

    let started = Instant::now();
    let next = AtomicUsize::new(1);
    let load_us = std::sync::Mutex::new(Vec::with_capacity(MODELS));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut c = Conn::new(&s);
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= MODELS {
                        break;
                    }
                    let t = Instant::now();
                    let r = c.send(
                        "POST",
                        "/models",
                        &[],
                        &load_body(&format!("m{i:05}"), &urls[i]),
                    );
                    assert_eq!(r.status, 200, "{}", r.text());
                    mine.push(t.elapsed().as_secs_f64() * 1e6);
                }
                load_us.lock().unwrap().extend(mine);
            });
        }
    });
    let loading = started.elapsed();
    let (_, rss_after) = s.memory_kib();
    let after = invoke_latency(&s, "m00000", 2000);
    let mut load_us = load_us.into_inner().unwrap();
    load_us.sort_by(f64::total_cmp);
    let grown = (rss_after.saturating_sub(rss_before)) * 1024;
    eprintln!(
        "10,000 models: loaded in {:.2} s; load p50 {:.0} us p99 {:.0} us (4 clients); \
         RSS +{:.1} MiB for {:.1} MiB of artifacts ({} B per model); \
         invoke p50/p99 {:.0}/{:.0} us with 1 model, {:.0}/{:.0} us with 10,000",
        loading.as_secs_f64(),
        load_us[load_us.len() / 2],
        load_us[load_us.len() * 99 / 100],
        grown as f64 / 1048576.0,
        artifacts as f64 / 1048576.0,
        grown / MODELS as u64,
        before.0,
        before.1,
        after.0,
        after.1,
    );
    // Listed, all of them, in pages.
    let v = call(&s, "GET", "/models?limit=1000", &[], b"").json();
    assert_eq!(v["models"].as_array().unwrap().len(), 1000);
    assert!(v["nextPageToken"].is_string());
    let m = scrape(&s);
    assert_eq!(m["mmp_mme_models_loaded{}"], MODELS as f64);
    // Memory grows by about the artifacts' size: loosely, at most three
    // times it plus a few MiB of allocator slack.
    assert!(
        grown < 3 * artifacts + 16 * 1024 * 1024,
        "RSS grew {grown} bytes for {artifacts} bytes of artifacts"
    );
    let names: BTreeSet<String> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["modelName"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains("m00000") && names.contains("m00999"));
}

/// The 404 and 405 hints of a multi-model endpoint name its routes, not
/// `/invocations` (a 404 there), and a 405 carries `Allow` (RFC 9110
/// §15.5.6).
#[test]
fn route_hints_name_the_model_routes() {
    let root = tempfile::tempdir().unwrap();
    let s = mme_server(root.path(), &[]);
    let r = call(&s, "PUT", "/models", &[], b"");
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
    let r405 = call(&s, "POST", "/models/alpha", &[], b"");
    assert_eq!(r405.status, 405, "{}", r405.text());
    assert_eq!(r405.header("allow"), Some("GET, HEAD, DELETE"));
    let r404 = call(&s, "GET", "/model", &[], b"");
    assert_eq!(r404.status, 404);
    for r in [&r405, &r404] {
        let message = r.json()["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("POST /models/{model_name}/invoke"),
            "{message}"
        );
        assert!(!message.contains("/invocations"), "{message}");
    }
}
