//! Every black-box test of `mmp`, as one test binary (ripgrep's layout): a
//! binary per file linked the library and the test harness once per file,
//! and made each file declare the helpers again behind
//! `#[allow(dead_code)]`. Run one file's tests with
//! `cargo test --test tests serve_http::`.
//!
//! The tests share one process and run on libtest's parallel threads, so
//! none may change what the process shares: environment variables go to the
//! child (`Command::env`), never `std::env::set_var`; no test changes the
//! current directory; ports are `127.0.0.1:0`; descriptors a test makes are
//! close-on-exec, or another test's child inherits them.
//!
//! `tests/alloc.rs` stays its own binary: it installs a counting global
//! allocator, which would count every other test's allocations too.

mod transform_fake;
mod util;

mod bidi;
mod classify;
mod container;
mod faults;
mod framing;
mod http_clients;
mod json_stream;
mod limits;
mod mme;
mod observability;
mod output_targets;
mod readme;
mod score_cli;
mod score_parallel;
mod serve_http;
mod serve_parallel;
mod serve_slow;
mod train_cli;
mod train_then_serve;
mod transform_cli;
mod transform_faults;
mod transform_framing;
