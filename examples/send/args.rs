//! The command line, parsed by hand: `--flag value` (or `--flag=value`) pairs
//! and a few switches. The example adds no dependency for it.

use std::time::Duration;

use hyper::Uri;

use crate::payload::Provider;

/// What `--help` prints.
pub const USAGE: &str = "\
Send signed test webhook deliveries to a receiver, like `stripe trigger`, and
report how it answered. With --count and --concurrency it is a load generator.

Usage: cargo run --release --example send --features http -- --url URL [OPTIONS]

Options:
  --url URL          where to POST (http:// only), e.g. http://127.0.0.1:3000/webhooks/stripe
  --provider NAME    stripe, github or shopify [default: stripe]
  --secret SECRET    signing secret [default: $STRIPE_WEBHOOK_SECRET, $GITHUB_WEBHOOK_SECRET
                     or $SHOPIFY_WEBHOOK_SECRET, else the demo secret of examples/server.rs]
  --kind KIND        Stripe event type, GitHub event (`issues.opened` sends event `issues`
                     with action `opened`) or Shopify topic
                     [default: checkout.session.completed, push, orders/create]
  --count N          deliveries to send [default: 1]
  --concurrency C    requests in flight at once, each on its own keep-alive connection [default: 1]
  --duplicates R     fraction 0.0-1.0 of deliveries that resend an earlier event the way the
                     provider retries it (same event id, signed again) [default: 0]
  --size BYTES       pad each JSON body to about this size with provider-shaped filler
                     (commits, line items) [default: no padding]
  --duration SECS    stop starting new deliveries after this long, even if fewer than N were sent
  --allow-failures   exit 0 even if a request failed to connect or was answered 5xx
  --quiet            print only the machine-readable summary line
  -h, --help         print this help

The exit code is 1 when any request failed at the connection level or was answered
5xx (unless --allow-failures), and 2 for a command-line error.
";

/// A parsed command line.
#[derive(Debug)]
pub enum Command {
    /// `--help`.
    Help,
    /// Send deliveries.
    Send(Args),
}

/// The settings of a run.
#[derive(Debug)]
pub struct Args {
    /// Where to POST.
    pub url: Uri,
    /// Whose deliveries to imitate.
    pub provider: Provider,
    /// The signing secret.
    pub secret: String,
    /// The event type, GitHub event or Shopify topic.
    pub kind: String,
    /// How many deliveries to send.
    pub count: u64,
    /// How many requests are in flight at once.
    pub concurrency: usize,
    /// The fraction of deliveries that are retries of an earlier event.
    pub duplicates: f64,
    /// The body size to pad to; `None` sends the bare event.
    pub size: Option<usize>,
    /// When to stop starting new deliveries.
    pub duration: Option<Duration>,
    /// Exit 0 even after connection failures or 5xx answers.
    pub allow_failures: bool,
    /// Print only the summary line.
    pub quiet: bool,
}

/// A command line that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    /// A flag this program does not know.
    #[error("unknown argument `{0}` (see --help)")]
    Unknown(String),
    /// A flag given without its value.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// A value that does not parse.
    #[error("{flag} `{value}` is not {expected}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
        /// What the flag takes.
        expected: &'static str,
    },
    /// No `--url`.
    #[error("--url is required, e.g. --url http://127.0.0.1:3000/webhooks/stripe")]
    MissingUrl,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, ArgError> {
    let mut url = None;
    let mut provider = Provider::Stripe;
    let mut secret = None;
    let mut kind = None;
    let mut count = 1;
    let mut concurrency = 1;
    let mut duplicates = 0.0;
    let mut size = None;
    let mut duration = None;
    let mut allow_failures = false;
    let mut quiet = false;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // `--flag=value` is the same as `--flag value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut value = |name: &'static str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(ArgError::MissingValue(name))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--url" => url = Some(parse_url(value("--url")?)?),
            "--provider" => {
                let name = value("--provider")?;
                provider = Provider::from_name(&name).ok_or(ArgError::Invalid {
                    flag: "--provider",
                    value: name,
                    expected: "stripe, github or shopify",
                })?;
            }
            "--secret" => secret = Some(value("--secret")?),
            "--kind" => kind = Some(parse_kind(value("--kind")?)?),
            "--count" => count = number("--count", value("--count")?, "a whole number")?,
            "--concurrency" => {
                concurrency = number(
                    "--concurrency",
                    value("--concurrency")?,
                    "a whole number ≥ 1",
                )?;
                if concurrency == 0 {
                    return Err(invalid("--concurrency", "0", "a whole number ≥ 1"));
                }
            }
            "--duplicates" => {
                let text = value("--duplicates")?;
                duplicates = number("--duplicates", text.clone(), "a fraction from 0.0 to 1.0")?;
                if !(0.0..=1.0).contains(&duplicates) {
                    return Err(invalid("--duplicates", &text, "a fraction from 0.0 to 1.0"));
                }
            }
            "--size" => size = Some(number("--size", value("--size")?, "a number of bytes")?),
            "--duration" => {
                let text = value("--duration")?;
                let secs: f64 = number("--duration", text.clone(), "a number of seconds")?;
                duration = Some(
                    Duration::try_from_secs_f64(secs)
                        .map_err(|_| invalid("--duration", &text, "a number of seconds"))?,
                );
            }
            "--allow-failures" => allow_failures = true,
            "--quiet" => quiet = true,
            _ => return Err(ArgError::Unknown(flag)),
        }
    }

    let secret = secret
        .or_else(|| std::env::var(provider.secret_env()).ok())
        .unwrap_or_else(|| provider.demo_secret().to_owned());
    Ok(Command::Send(Args {
        url: url.ok_or(ArgError::MissingUrl)?,
        provider,
        secret,
        kind: kind.unwrap_or_else(|| provider.default_kind().to_owned()),
        count,
        concurrency,
        duplicates,
        size,
        duration,
        allow_failures,
        quiet,
    }))
}

fn invalid(flag: &'static str, value: &str, expected: &'static str) -> ArgError {
    ArgError::Invalid {
        flag,
        value: value.to_owned(),
        expected,
    }
}

fn number<T: std::str::FromStr>(
    flag: &'static str,
    value: String,
    expected: &'static str,
) -> Result<T, ArgError> {
    value.parse().map_err(|_| ArgError::Invalid {
        flag,
        value,
        expected,
    })
}

/// An `http://` URL with a host (the sender speaks plain HTTP/1.1 only).
fn parse_url(value: String) -> Result<Uri, ArgError> {
    match value.parse::<Uri>() {
        Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => Ok(uri),
        _ => Err(ArgError::Invalid {
            flag: "--url",
            value,
            expected: "an http:// URL with a host, e.g. http://127.0.0.1:3000/webhooks/stripe",
        }),
    }
}

/// A kind travels in a header for GitHub and Shopify, so it is kept to
/// visible ASCII, as every real event type and topic is.
fn parse_kind(value: String) -> Result<String, ArgError> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(value)
    } else {
        Err(ArgError::Invalid {
            flag: "--kind",
            value,
            expected:
                "an event type in visible ASCII, e.g. invoice.paid, issues.opened or orders/paid",
        })
    }
}
