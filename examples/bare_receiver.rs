//! The baseline of the README's load run: a bare axum 0.8 server whose one
//! route, `POST /{provider}`, only reads the body (up to 25 MiB) and computes
//! its HMAC-SHA256 under the provider's secret, answering `200 ok`. No
//! signature check, no deduplication, no handlers: the least any webhook
//! receiver does, to compare hookgate's receiver with (drive both with
//! `examples/send`).
//!
//! ```text
//! cargo run --release --example bare_receiver --features axum -- --addr 127.0.0.1:3001 --for 60
//! ```
//!
//! It stops on Ctrl-C, or after `--for SECS`. Secrets come from
//! `STRIPE_WEBHOOK_SECRET`, `GITHUB_WEBHOOK_SECRET` and `SHOPIFY_WEBHOOK_SECRET`,
//! else the demo secrets `examples/send` signs with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// GitHub's largest deliveries are 25 MiB.
const BODY_LIMIT: usize = 25 << 20;

const USAGE: &str = "\
Usage: cargo run --release --example bare_receiver --features axum -- [--addr ADDR] [--for SECS]

  --addr ADDR   where to listen [default: 127.0.0.1:3001]
  --for SECS    stop after this many seconds [default: run until Ctrl-C]
";

/// The secret of each provider route.
type Secrets = Arc<HashMap<&'static str, Vec<u8>>>;

fn secrets() -> Secrets {
    let secret = |env: &str, demo: &str| std::env::var(env).unwrap_or_else(|_| demo.to_owned());
    Arc::new(HashMap::from([
        (
            "stripe",
            secret("STRIPE_WEBHOOK_SECRET", "whsec_hookgate_demo").into_bytes(),
        ),
        (
            "github",
            secret("GITHUB_WEBHOOK_SECRET", "github_hookgate_demo").into_bytes(),
        ),
        (
            "shopify",
            secret("SHOPIFY_WEBHOOK_SECRET", "shopify_hookgate_demo").into_bytes(),
        ),
    ]))
}

/// Reads the body (axum's `Bytes` extractor, under `DefaultBodyLimit`) and
/// computes its HMAC; nothing else.
async fn receive(
    State(secrets): State<Secrets>,
    Path(provider): Path<String>,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let Some(secret) = secrets.get(provider.as_str()) else {
        return (StatusCode::NOT_FOUND, "unknown provider");
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        unreachable!("HMAC takes keys of any length");
    };
    mac.update(&body);
    // Keep the tag "used" so the work cannot be optimised away.
    std::hint::black_box(mac.finalize().into_bytes());
    (StatusCode::OK, "ok")
}

/// `--addr` and `--for`, or why they do not parse.
fn parse_args() -> Result<Option<(SocketAddr, Option<Duration>)>, String> {
    let mut addr: SocketAddr = ([127, 0, 0, 1], 3001).into();
    let mut run_for = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--addr" => {
                let value = args.next().ok_or("--addr needs a value")?;
                addr = value.parse().map_err(|_| {
                    format!("--addr `{value}` is not an address like 127.0.0.1:3001")
                })?;
            }
            "--for" => {
                let value = args.next().ok_or("--for needs a value")?;
                let secs: f64 = value
                    .parse()
                    .map_err(|_| format!("--for `{value}` is not a number of seconds"))?;
                run_for = Some(
                    Duration::try_from_secs_f64(secs)
                        .map_err(|_| format!("--for `{value}` is not a number of seconds"))?,
                );
            }
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    Ok(Some((addr, run_for)))
}

/// Ctrl-C, or the end of `--for`.
async fn shutdown(run_for: Option<Duration>) {
    let deadline = async {
        match run_for {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = deadline => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let (addr, run_for) = match parse_args() {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("bare_receiver: {err}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let app = Router::new()
        .route("/{provider}", post(receive))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(secrets());
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("bare_receiver: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(addr);
    println!("bare_receiver listening on http://{addr} (POST /stripe, /github, /shopify)");
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown(run_for))
        .await
    {
        eprintln!("bare_receiver: {err}");
        return ExitCode::FAILURE;
    }
    println!("bare_receiver stopped");
    ExitCode::SUCCESS
}
