//! Load and soak harness: a class of simulated students against one running server.
//!
//! Each student joins with the class code, holds the class's live stream open (and the
//! run page's stream, for the team whose run trains), and until the time is up does what
//! students do, with a few seconds of thought between requests: reads a lesson page and
//! its data, tokenizes and reads the attention of a sentence, checks in, and saves quiz
//! answers. One team's run trains meanwhile. Every request is timed by kind; every minute
//! the server's memory is sampled. The summary is printed and written as JSON.
//!
//! ```sh
//! bench/soak.sh            # starts a server, runs 300 students for 10 minutes
//! cargo run --release -p server --example soak -- --help
//! ```

mod load;

use load::{client, form, memory_mib, quantile};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the harness was asked to do.
struct Options {
    base: String,
    students: usize,
    minutes: f64,
    server_pid: Option<u32>,
    password: String,
    out: Option<String>,
}

const USAGE: &str =
    "soak --base URL --password PW [--students N] [--minutes M] [--server-pid PID] [--out FILE]
  Simulates N students (default 300) for M minutes (default 10) against the server at URL,
  whose instructor account \"soak\" has password PW. PID, when given, is the server's
  process, whose memory is sampled every minute.";

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        base: String::new(),
        students: 300,
        minutes: 10.0,
        server_pid: None,
        password: String::new(),
        out: None,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--base" => options.base = value()?,
            "--students" => {
                options.students = value()?.parse().map_err(|e| format!("--students: {e}"))?
            }
            "--minutes" => {
                options.minutes = value()?.parse().map_err(|e| format!("--minutes: {e}"))?
            }
            "--server-pid" => {
                options.server_pid =
                    Some(value()?.parse().map_err(|e| format!("--server-pid: {e}"))?)
            }
            "--password" => options.password = value()?,
            "--out" => options.out = Some(value()?),
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if options.base.is_empty() || options.password.is_empty() {
        return Err(USAGE.to_string());
    }
    Ok(options)
}

/// Latencies and outcomes per request kind.
#[derive(Default)]
struct Tally {
    latencies: BTreeMap<&'static str, Vec<f64>>,
    server_errors: BTreeMap<&'static str, usize>,
    busy: BTreeMap<&'static str, usize>,
    other_refusals: BTreeMap<&'static str, usize>,
    failures: BTreeMap<&'static str, usize>,
    /// The first refusal's status and body per kind, to show why.
    first_refusal: BTreeMap<&'static str, String>,
}

type Shared = Arc<Mutex<Tally>>;

/// Sends `request`, recording its latency and status under `kind`; returns the body.
async fn timed(
    tally: &Shared,
    kind: &'static str,
    request: reqwest::RequestBuilder,
) -> Option<String> {
    let start = Instant::now();
    let result = request.send().await;
    let (status, body) = match result {
        Ok(response) => {
            let status = response.status();
            (Some(status), response.text().await.ok())
        }
        Err(error) => (None, Some(error.to_string())),
    };
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let mut tally = tally.lock().unwrap();
    tally.latencies.entry(kind).or_default().push(ms);
    if status.is_none_or(|s| s.is_client_error() || s.is_server_error()) {
        let status = status.map_or("no answer".to_string(), |s| s.to_string());
        let detail = body
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect::<String>();
        tally
            .first_refusal
            .entry(kind)
            .or_insert(format!("{status}: {detail}"));
    }
    match status {
        None => *tally.failures.entry(kind).or_default() += 1,
        Some(s) if s.is_server_error() => *tally.server_errors.entry(kind).or_default() += 1,
        Some(s) if s.as_u16() == 429 => *tally.busy.entry(kind).or_default() += 1,
        Some(s) if s.is_client_error() => *tally.other_refusals.entry(kind).or_default() += 1,
        Some(_) => {}
    }
    body
}

/// Holds a live stream open, reading it, until `deadline`.
async fn hold_stream(
    tally: Shared,
    kind: &'static str,
    request: reqwest::RequestBuilder,
    deadline: Instant,
) {
    let start = Instant::now();
    match request.send().await {
        Ok(mut response) => {
            let status = response.status();
            {
                let mut tally = tally.lock().unwrap();
                tally
                    .latencies
                    .entry(kind)
                    .or_default()
                    .push(start.elapsed().as_secs_f64() * 1000.0);
                if status.is_server_error() {
                    *tally.server_errors.entry(kind).or_default() += 1;
                } else if status.is_client_error() {
                    *tally.other_refusals.entry(kind).or_default() += 1;
                }
            }
            while Instant::now() < deadline {
                match tokio::time::timeout_at(deadline.into(), response.chunk()).await {
                    Ok(Ok(Some(_))) => {}
                    _ => break,
                }
            }
        }
        Err(_) => *tally.lock().unwrap().failures.entry(kind).or_default() += 1,
    }
}

const LESSONS: [&str; 8] = [
    "fine-tuning",
    "tokenization",
    "attention",
    "cls-token",
    "model-choice",
    "hyperparameters",
    "lora",
    "overfitting",
];
const SENTENCES: [&str; 4] = [
    "the movie was not good .",
    "a gorgeous , witty , seductive movie .",
    "unhappiness is a long word",
    "the cast was charming but the plot was dull .",
];

/// One student's session (`client` holds their cookie) until `deadline`.
async fn student(
    client: reqwest::Client,
    base: String,
    tally: Shared,
    index: usize,
    deadline: Instant,
) {
    let mut step = index;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // Think for 2 to 6 seconds between requests, spread so students do not march in step.
        let think = Duration::from_millis(2_000 + (step as u64 * 7_919 % 4_000));
        tokio::time::sleep(think.min(deadline.saturating_duration_since(now))).await;
        if Instant::now() >= deadline {
            break;
        }
        let lesson = LESSONS[step % LESSONS.len()];
        let sentence = SENTENCES[step % SENTENCES.len()];
        match step % 6 {
            0 => {
                timed(
                    &tally,
                    "page /lessons/*",
                    client.get(format!("{base}/lessons/{lesson}")),
                )
                .await;
            }
            1 => {
                timed(
                    &tally,
                    "fn lesson",
                    form(&client, &base, "lesson", &format!("slug={lesson}")),
                )
                .await;
            }
            2 => {
                timed(
                    &tally,
                    "fn tokenize",
                    form(
                        &client,
                        &base,
                        "tokenize",
                        &format!("text={}", sentence.replace(' ', "+")),
                    ),
                )
                .await;
            }
            3 => {
                timed(
                    &tally,
                    "fn attention",
                    form(
                        &client,
                        &base,
                        "attention",
                        &format!("text={}", sentence.replace(' ', "+")),
                    ),
                )
                .await;
            }
            4 => {
                timed(
                    &tally,
                    "fn save-answer",
                    form(
                        &client,
                        &base,
                        "save-answer",
                        &format!("key={lesson}-1&text=answer+{step}&submit=false"),
                    ),
                )
                .await;
            }
            _ => {
                timed(&tally, "fn my-class", form(&client, &base, "my-class", "")).await;
                timed(
                    &tally,
                    "fn checkin",
                    form(&client, &base, "checkin", &format!("slug={lesson}")),
                )
                .await;
            }
        }
        step += 1;
    }
}

#[tokio::main]
async fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let base = options.base.trim_end_matches('/').to_string();
    let tally: Shared = Arc::default();

    // The instructor sets the class up: teams, the competition phase.
    let teacher = client(Duration::from_secs(60));
    let signed_in = form(
        &teacher,
        &base,
        "sign-in",
        &format!("username=soak&password={}", options.password),
    )
    .send()
    .await
    .expect("the server answers");
    assert!(
        signed_in.status().is_redirection() || signed_in.status().is_success(),
        "sign-in: {}",
        signed_in.status()
    );
    let class: serde_json::Value = form(&teacher, &base, "create-class", "name=Soak+class")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let class_id = class["id"].as_i64().expect("a class id");
    let code = class["join_code"].as_str().unwrap().to_string();
    for team in 1..=10 {
        form(
            &teacher,
            &base,
            "add-team",
            &format!("class_id={class_id}&name=Team+{team}"),
        )
        .send()
        .await
        .unwrap();
    }
    form(
        &teacher,
        &base,
        "set-phase",
        &format!("class_id={class_id}&phase=competition"),
    )
    .send()
    .await
    .unwrap();
    let preview: serde_json::Value = form(&teacher, &base, "find-class", &format!("code={code}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let teams: Vec<i64> = preview["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();

    // Students join, a few at a time, as a class does in its first minute.
    let minutes = Duration::from_secs_f64(options.minutes * 60.0);
    let started = Instant::now();
    let deadline = started + minutes;
    let mut tasks = Vec::new();
    let mut joined = Vec::new();
    for index in 0..options.students {
        let client = client(Duration::from_secs(60));
        let team = teams[index % teams.len()];
        timed(
            &tally,
            "fn join-class",
            form(
                &client,
                &base,
                "join-class",
                &format!("code={code}&display_name=Student+{index}&team_id={team}"),
            ),
        )
        .await;
        tasks.push(tokio::spawn(hold_stream(
            tally.clone(),
            "stream class",
            client.get(format!("{base}/api/class-events")),
            deadline,
        )));
        joined.push((client, team));
    }
    // The first team trains a run long enough to last the soak on a 2-core CPU (12,000
    // sentences, one epoch); its members watch its page's stream.
    let (trainer_client, trainer_team) = &joined[0];
    let submitted = form(trainer_client, &base, "submit-run", "form[model]=all-MiniLM-L6-v2&form[method]=full&form[lora_rank]=16&form[lora_alpha]=&form[learning_rate]=5e-5&form[batch_size]=16&form[epochs]=1&form[warmup_ratio]=0.1&form[max_len]=64&form[train_subset]=12000&form[seed]=1&form[probe_sentence]=&confirmed=true")
        .send().await.unwrap().text().await.unwrap();
    let run_id = serde_json::from_str::<serde_json::Value>(&submitted)
        .ok()
        .and_then(|v| v["Queued"].as_i64());
    eprintln!("run queued: {submitted}");
    for (index, (client, team)) in joined.iter().enumerate() {
        if let Some(run_id) = run_id.filter(|_| team == trainer_team) {
            tasks.push(tokio::spawn(hold_stream(
                tally.clone(),
                "stream run",
                client.get(format!("{base}/api/runs/{run_id}/events")),
                deadline,
            )));
        }
        tasks.push(tokio::spawn(student(
            client.clone(),
            base.clone(),
            tally.clone(),
            index,
            deadline,
        )));
    }
    eprintln!(
        "{} students joined in {:.1} s",
        options.students,
        started.elapsed().as_secs_f64()
    );

    // Memory and health every minute.
    let mut memory = Vec::new();
    let mut minute = 0;
    while Instant::now() < deadline {
        let next = started + Duration::from_secs(60 * (minute + 1));
        tokio::time::sleep_until(next.min(deadline).into()).await;
        minute += 1;
        let mib = options.server_pid.and_then(memory_mib);
        timed(
            &tally,
            "healthz",
            client(Duration::from_secs(60)).get(format!("{base}/healthz")),
        )
        .await;
        let requests: usize = tally.lock().unwrap().latencies.values().map(Vec::len).sum();
        eprintln!("minute {minute}: server memory {mib:?} MiB, {requests} requests so far");
        memory.push((minute, mib));
    }
    for task in tasks {
        let _ = task.await;
    }
    if let Some(run_id) = run_id {
        let run = form(&joined[0].0, &base, "run", &format!("run_id={run_id}"))
            .send()
            .await
            .ok();
        let run: serde_json::Value = match run {
            Some(response) => response.json().await.unwrap_or_default(),
            None => serde_json::Value::Null,
        };
        eprintln!(
            "the run during the soak: status {}, validation accuracy {}",
            run["status"], run["validation_accuracy"]
        );
    }

    let tally = tally.lock().unwrap();
    let mut kinds = Vec::new();
    println!(
        "{:<20} {:>8} {:>9} {:>9} {:>9} {:>6} {:>6} {:>6}",
        "kind", "count", "p50 ms", "p99 ms", "max ms", "5xx", "429", "4xx"
    );
    for (kind, values) in &tally.latencies {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let (p50, p99, max) = (
            quantile(&sorted, 0.5),
            quantile(&sorted, 0.99),
            sorted.last().copied().unwrap_or(f64::NAN),
        );
        let errors = tally.server_errors.get(kind).copied().unwrap_or(0)
            + tally.failures.get(kind).copied().unwrap_or(0);
        let busy = tally.busy.get(kind).copied().unwrap_or(0);
        let refused = tally.other_refusals.get(kind).copied().unwrap_or(0);
        println!(
            "{kind:<20} {:>8} {p50:>9.1} {p99:>9.1} {max:>9.1} {errors:>6} {busy:>6} {refused:>6}",
            sorted.len()
        );
        kinds.push(serde_json::json!({
            "kind": kind, "count": sorted.len(), "p50_ms": p50, "p99_ms": p99, "max_ms": max,
            "server_errors": errors, "busy_429": busy, "other_4xx": refused,
        }));
    }
    for (kind, refusal) in &tally.first_refusal {
        println!("first refusal of {kind}: {refusal}");
    }
    for (minute, mib) in &memory {
        println!(
            "minute {minute}: {}",
            mib.map_or("memory not sampled".to_string(), |m| format!("{m:.0} MiB"))
        );
    }
    if let Some(out) = options.out {
        let report = serde_json::json!({
            "students": options.students,
            "minutes": options.minutes,
            "run_id": run_id,
            "kinds": kinds,
            "memory_mib_per_minute": memory.iter().map(|(m, mib)| serde_json::json!({"minute": m, "mib": mib})).collect::<Vec<_>>(),
        });
        std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap())
            .expect("the report is written");
        eprintln!("report written to {out}");
    }
}
