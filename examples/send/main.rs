//! Sends signed test deliveries to a webhook receiver, like `stripe trigger`,
//! and reports how it answered: a histogram of status codes with their bodies
//! (`200 ok` and `200 duplicate: already processed` are told apart), failed
//! connections, deliveries per second and latency percentiles. With `--count`,
//! `--concurrency`, `--duplicates` and `--size` it is the load generator of the
//! README's load run.
//!
//! Bodies have each provider's shape (a Stripe event, a GitHub push, a Shopify
//! order) and are signed with `hookgate::testing`, exactly as the provider
//! signs them; a retry resends an earlier event with the same id, as the
//! provider's retries do. Deliveries are built before the clock starts (up to
//! 200,000 events and 512 MiB of distinct bodies; larger runs build each one
//! just before sending it, outside its timing), so the numbers measure the
//! receiver, not the sender.
//!
//! ```text
//! cargo run --example server --features axum,sqlite &
//! cargo run --release --example send --features http -- \
//!     --url http://127.0.0.1:3000/webhooks/github --provider github \
//!     --count 2000 --concurrency 16 --duplicates 0.1 --size 16384
//! ```
//!
//! It exits 1 when a request got no answer or a 5xx one (unless
//! `--allow-failures`), so CI can rely on it. `--help` lists every option.

mod args;
mod deliveries;
mod load;
mod payload;
mod report;

use std::process::ExitCode;
use std::sync::Arc;

use args::{Command, USAGE};
use deliveries::{Deliveries, Plan};
use report::Summary;

#[tokio::main]
async fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Command::Send(args)) => args,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("send: {err}");
            return ExitCode::from(2);
        }
    };

    let plan = Plan::new(&args);
    let retries = plan.retries();
    let deliveries = Arc::new(Deliveries::build(plan));
    if !args.quiet {
        let body_len = if args.count > 0 {
            deliveries.get(0).body.len()
        } else {
            0
        };
        println!(
            "sending {} {} `{}` deliveries ({retries} of them retries, {body_len}-byte bodies{}) to {} over {} connection(s)",
            args.count,
            args.provider.name(),
            args.kind,
            if deliveries.is_prebuilt() { ", built beforehand" } else { ", built while sending" },
            args.url,
            args.concurrency,
        );
    }

    let mut run = load::run(
        args.url.clone(),
        deliveries,
        args.count,
        args.concurrency,
        args.duration,
    )
    .await;
    let summary = Summary::of(&mut run);
    if !args.quiet {
        report::print(&run, &summary);
    }
    println!("{}", summary.line());

    if summary.has_failures() && !args.allow_failures {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
