//! What the load examples (`fanout`, `soak`) share: a browser-like client, server
//! function calls, quantiles and a process's memory.

use reqwest::header::CONTENT_TYPE;
use std::time::Duration;

/// A browser-like client: its own cookies (its session), no redirects followed, and
/// requests given up after `timeout`.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .expect("an HTTP client")
}

/// A call of the server function at `/api/{endpoint}` with the form-encoded `body`.
pub fn form(
    client: &reqwest::Client,
    base: &str,
    endpoint: &str,
    body: &str,
) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}/api/{endpoint}"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.to_string())
}

/// The `q`-quantile (0..=1) of sorted `values`, by the nearest rank; NaN when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The resident memory of process `pid`, in MiB.
pub fn memory_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}
