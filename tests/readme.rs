//! The README's shell examples, run as a user would copy them, so the
//! README cannot drift from the binary.
//!
//! # Which blocks run (the convention; README.md's *Tests* says the same)
//!
//! - A fenced block whose info string's first word is `sh` (` ```sh `) is
//!   **run**, in README order, as one `bash -euo pipefail` script. Every
//!   block runs in the same scratch folder, which holds a copy of
//!   `fixtures/` (so paths read as from the repository root, and files one
//!   block writes are there for the next), with the directory of the `mmp`
//!   under test (`CARGO_BIN_EXE_mmp`) first on `PATH`. It must exit 0
//!   within 60 s.
//! - A ` ```text ` block that comes **right after** a run block (nothing
//!   but blank lines between) is that block's exact **stdout**. Without one
//!   the output is not compared.
//! - A run block that is one `mmp serve ... --bind 127.0.0.1:8080` command
//!   (comment lines aside; `VAR=value` assignments may come first) is
//!   **started in the background**, as a second terminal would, and
//!   stays up until the next such block or the end of the README; the test
//!   waits for its `/ping` to answer 200. Port `8080` (written `:8080`) in
//!   it becomes `:0`, and in the blocks after it, the port it bound.
//! - Everything else is shown, not run: ` ```console ` (commands with a
//!   `$ ` prompt, for what needs Docker, AWS, root or a long run),
//!   ` ```text ` elsewhere, other languages, and indented blocks.
//!
//! A new section that follows these rules is covered with no change here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const README: &str = include_str!("../README.md");

/// One fenced block of the README.
#[derive(Debug)]
struct Block {
    /// The info string (`sh`, `text`, `console`, `python`, ...).
    info: String,
    /// Its lines, joined with `\n`, with a final `\n`.
    body: String,
    /// 1-based line of the opening fence.
    line: usize,
    /// Whether only blank lines separate it from the block before it.
    follows_previous: bool,
}

/// Fenced blocks, in order (a fence is a line starting with three
/// backticks at column 0; indented blocks are never fenced).
fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    let mut gap_is_blank = false;
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            gap_is_blank &= line.trim().is_empty();
            continue;
        };
        let mut body = String::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if l.trim_end() == "```" {
                closed = true;
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        assert!(closed, "README.md line {}: unclosed code block", n + 1);
        out.push(Block {
            info: info.trim().to_string(),
            body,
            line: n + 1,
            follows_previous: gap_is_blank,
        });
        gap_is_blank = true;
    }
    out
}

fn is_run(b: &Block) -> bool {
    b.info.split_whitespace().next() == Some("sh")
}

/// The command of a block that is a single `mmp serve` command.
fn serve_command(b: &Block) -> Option<String> {
    let cmds: Vec<&str> = b
        .body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let [one] = cmds[..] else { return None };
    // `VAR=value mmp serve ...` too: environment assignments first.
    let command = one
        .split_whitespace()
        .skip_while(|w| w.split_once('=').is_some_and(|(k, _)| is_env_name(k)))
        .collect::<Vec<_>>();
    (command.starts_with(&["mmp", "serve"]) && !one.contains("&&") && !one.contains(';'))
        .then(|| one.to_string())
}

fn is_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `mmp serve` from a README block, on the port the kernel picks.
struct Server {
    child: Child,
    addr: SocketAddr,
    line: usize,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(cmd: &str, b: &Block, env: &Env) -> Server {
    assert!(
        cmd.contains("--bind 127.0.0.1:8080") || cmd.contains("--bind localhost:8080"),
        "README.md line {}: a serve block must bind 127.0.0.1:8080 (the test moves it to a free port): {cmd}",
        b.line
    );
    let cmd = cmd.replace(":8080", ":0");
    let mut child = env
        .bash(&format!("exec {cmd}"))
        .env("RUST_LOG", "info")
        .env_remove("MODEL_SERVER_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its startup line says where it listens: `addr=127.0.0.1:PORT`.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut log = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .map(|a| a.trim_matches('"').to_string());
            log.push(line);
            if let Some(a) = addr {
                let _ = tx.send(Ok(a));
            }
        }
        let _ = tx.send(Err(log));
    });
    let addr: SocketAddr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(a)) => a.parse().unwrap(),
        other => {
            let _ = child.kill();
            panic!(
                "README.md line {}: `{cmd}` did not start: {other:?}",
                b.line
            );
        }
    };
    let server = Server {
        child,
        addr,
        line: b.line,
    };
    wait_ready(&server);
    server
}

/// Poll `/ping` until it answers 200 (the model is loaded).
fn wait_ready(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut c) = TcpStream::connect(s.addr) {
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = [0u8; 12];
            if c.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .is_ok()
                && c.read_exact(&mut head).is_ok()
                && &head[9..12] == b"200"
            {
                return;
            }
        }
        std::thread::yield_now();
    }
    panic!(
        "README.md line {}: the server never answered /ping with 200",
        s.line
    );
}

/// The scratch folder and the PATH the blocks run with.
struct Env {
    dir: tempfile::TempDir,
    path: String,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        copy_dir(&root.join("fixtures"), &dir.path().join("fixtures"));
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_mmp")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Env { dir, path }
    }

    fn bash(&self, script: &str) -> Command {
        let mut c = Command::new("bash");
        c.args(["-euo", "pipefail", "-c", script])
            .current_dir(self.dir.path())
            .env("PATH", &self.path)
            .env_remove("SM_MODEL_DIR")
            .stdin(Stdio::null());
        c
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest: PathBuf = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Run `script` to its end, or kill it after `limit`.
fn run_block(env: &Env, script: &str, b: &Block) -> std::process::Output {
    let child = env
        .bash(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!(
                "README.md line {}: still running after 60 s:\n{script}",
                b.line
            );
        }
    }
}

#[test]
fn readme_sh_blocks_run_as_written() {
    let all = blocks(README);
    let env = Env::new();
    let mut server: Option<Server> = None;
    let mut ran = 0;
    for (i, b) in all.iter().enumerate() {
        if !is_run(b) {
            continue;
        }
        if let Some(cmd) = serve_command(b) {
            drop(server.take()); // the previous one stops first
            server = Some(start_server(&cmd, b, &env));
            ran += 1;
            continue;
        }
        let script = match &server {
            Some(s) => b.body.replace(":8080", &format!(":{}", s.addr.port())),
            None => b.body.clone(),
        };
        let out = run_block(&env, &script, b);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "README.md line {}: exit {:?}\n--- block\n{}--- stdout\n{stdout}--- stderr\n{stderr}",
            b.line,
            out.status.code(),
            b.body
        );
        if let Some(expected) = all
            .get(i + 1)
            .filter(|n| n.info == "text" && n.follows_previous)
        {
            assert_eq!(
                stdout, expected.body,
                "README.md line {}: the output differs from the text block at line {}\n--- block\n{}--- stderr\n{stderr}",
                b.line, expected.line, b.body
            );
        }
        ran += 1;
    }
    // The quick start alone has four; fewer means the parser lost them.
    assert!(ran >= 4, "only {ran} sh blocks found in README.md");
}

#[test]
fn the_convention_is_parsed_as_documented() {
    let text = "intro\n\n```sh\necho hi\n```\n\n```text\nhi\n```\n\nprose\n\n```text\nnot an output\n```\n    indented\n```console\n$ mmp serve\n```\n```sh\n# the server\nmmp serve --bind 127.0.0.1:8080\n```\n";
    let b = blocks(text);
    assert_eq!(b.len(), 5);
    assert!(is_run(&b[0]) && b[0].body == "echo hi\n");
    assert!(
        b[1].info == "text" && b[1].follows_previous,
        "output of block 0"
    );
    assert!(!b[2].follows_previous, "prose between: not an output");
    assert!(!is_run(&b[3]), "console is not run");
    assert_eq!(
        serve_command(&b[4]).as_deref(),
        Some("mmp serve --bind 127.0.0.1:8080")
    );
    assert_eq!(serve_command(&b[0]), None);
    let env_first =
        &blocks("```sh\nSAGEMAKER_MULTI_MODEL=true mmp serve --bind 127.0.0.1:8080\n```\n")[0];
    assert!(serve_command(env_first).is_some());
    let two = &blocks("```sh\nmmp serve --bind 127.0.0.1:8080 & curl x\nmmp score\n```\n")[0];
    assert_eq!(serve_command(two), None, "two commands: run, not started");
}

#[test]
fn version_names_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_mmp"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let commit = mmp::GIT_COMMIT;
    // Against git itself, where the build took the commit from git (no
    // MMP_GIT_COMMIT given, as in a Docker build without .git).
    let git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if std::env::var_os("MMP_GIT_COMMIT").is_none() {
        if let Ok(g) = git {
            if g.status.success() {
                assert_eq!(commit, String::from_utf8_lossy(&g.stdout).trim());
            }
        }
    }
    assert_eq!(
        text,
        format!("mmp {} (commit {commit})\n", env!("CARGO_PKG_VERSION"))
    );
}

/// The README's configuration table lists every variable the server reads
/// (`mmp::config::VARIABLES`, which `mmp serve --help` prints too).
#[test]
fn the_configuration_table_lists_every_variable() {
    let rows: Vec<&str> = README.lines().filter(|l| l.starts_with("| `")).collect();
    for (name, _, _) in mmp::config::VARIABLES {
        assert!(
            rows.iter().any(|r| r.starts_with(&format!("| `{name}`"))),
            "README.md has no table row for {name}"
        );
    }
}

/// `mmp serve --help` lists the variables with their defaults.
#[test]
fn serve_help_lists_the_variables() {
    let out = Command::new(env!("CARGO_BIN_EXE_mmp"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (name, default, _) in mmp::config::VARIABLES {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{help}"));
        assert!(line.contains(default), "{line:?} lacks {default:?}");
    }
}
