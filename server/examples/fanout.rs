//! SSE fan-out across web nodes: how fast a run's events and a class's changes reach every
//! open page when the pages are spread over two web-only nodes on one PostgreSQL database.
//!
//! The harness plays a class and its worker node. It signs in as the instructor on node A,
//! creates a class with teams, lets students join and queue one run per team, then opens
//! the run pages' and class pages' live streams, half on each node. Acting as the worker, it
//! stores step events for every run exactly as a worker does (a row in `run_events`, then a
//! `pg_notify`), at a steady rate, and records when each insert returned. Each stream notes
//! when each event arrives: the delay is arrival minus insert. Class changes (phase switches
//! through node A) are timed from the request. Missing or repeated events are counted, and
//! both nodes' memory is read before and after the streams open.
//!
//! ```sh
//! bench/fanout.sh                                    # 500 run pages + 500 class pages
//! cargo run --release -p server --example fanout -- --help
//! ```

mod load;

use app::live::ssr::{Notice, Notifier};
use app::runs::event_log::EventLog;
use load::{client, form, memory_mib, quantile};
use run_protocol::Event;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Open streams one student account may hold (the server's cap).
const STREAMS_PER_STUDENT: usize = 8;

const USAGE: &str = "fanout --node-a URL --node-b URL --database URL --password PW
       [--run-pages N] [--class-pages N] [--teams N] [--events N] [--rate R]
       [--class-changes N] [--pid-a PID] [--pid-b PID] [--out FILE]
  Opens N run pages (default 500) and N class pages (default 500), half on each web node,
  as students of a class whose instructor \"fanout\" has password PW; stores --events step
  events (default 40) for each of --teams runs (default 25) at R events/s in all (default
  50) in the PostgreSQL database at URL, as a worker node does; and switches the class's
  phase --class-changes times (default 10). PIDs, when given, are the nodes' processes,
  whose memory is read before and after the streams open.";

/// What the harness was asked to do (see [`USAGE`]).
struct Options {
    node_a: String,
    node_b: String,
    database: String,
    password: String,
    run_pages: usize,
    class_pages: usize,
    teams: usize,
    events: i64,
    rate: f64,
    class_changes: usize,
    pids: Vec<u32>,
    out: Option<String>,
}

/// Reads the command line; the usage text when it is incomplete or asks for help.
fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        node_a: String::new(),
        node_b: String::new(),
        database: String::new(),
        password: String::new(),
        run_pages: 500,
        class_pages: 500,
        teams: 25,
        events: 40,
        rate: 50.0,
        class_changes: 10,
        pids: Vec::new(),
        out: None,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| text.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--node-a" => options.node_a = value()?.trim_end_matches('/').to_string(),
            "--node-b" => options.node_b = value()?.trim_end_matches('/').to_string(),
            "--database" => options.database = value()?,
            "--password" => options.password = value()?,
            "--run-pages" => options.run_pages = number(value()?)? as usize,
            "--class-pages" => options.class_pages = number(value()?)? as usize,
            "--teams" => options.teams = number(value()?)?.max(1.0) as usize,
            "--events" => options.events = number(value()?)?.max(1.0) as i64,
            "--rate" => options.rate = number(value()?)?.max(1.0),
            "--class-changes" => options.class_changes = number(value()?)? as usize,
            "--pid-a" | "--pid-b" => options.pids.push(number(value()?)? as u32),
            "--out" => options.out = Some(value()?),
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if options.node_a.is_empty()
        || options.node_b.is_empty()
        || options.database.is_empty()
        || options.password.is_empty()
    {
        return Err(USAGE.to_string());
    }
    Ok(options)
}

/// What the streams saw: per run stream, each event's sequence number and arrival; per
/// class stream, each change's arrival.
#[derive(Default)]
struct Arrivals {
    runs: Vec<(i64, Vec<(i64, Instant)>)>,
    classes: Vec<Vec<Instant>>,
    /// Streams the server refused, with the status and the start of the answer.
    refused: Vec<String>,
}

/// The arrivals, shared by the streams' tasks.
type Shared = Arc<Mutex<Arrivals>>;

async fn post(
    client: &reqwest::Client,
    base: &str,
    endpoint: &str,
    body: &str,
) -> serde_json::Value {
    let response = form(client, base, endpoint, body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{endpoint}: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(
        status.is_success() || status.is_redirection(),
        "{endpoint}: {status} {text}"
    );
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// Which stream a task holds.
#[derive(Clone, Copy)]
enum Stream {
    Run(i64),
    Class,
}

/// Holds one live stream open until `stop`, noting each run event (by `id:`) or class
/// change as it arrives; `opened` counts streams whose answer started.
async fn hold(
    client: reqwest::Client,
    url: String,
    stream: Stream,
    arrivals: Shared,
    opened: Arc<tokio::sync::Semaphore>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut stop = stop;
    let response = match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            arrivals.lock().unwrap().refused.push(format!(
                "{status} {}",
                body.chars().take(120).collect::<String>()
            ));
            opened.add_permits(1);
            return;
        }
        Err(error) => {
            arrivals.lock().unwrap().refused.push(error.to_string());
            opened.add_permits(1);
            return;
        }
    };
    opened.add_permits(1);
    let mut response = response;
    let (mut buffer, mut id, mut event) = (String::new(), None::<i64>, String::new());
    let mut seen_events = Vec::new();
    let mut seen_changes = Vec::new();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            _ = stop.changed() => break,
        };
        let Ok(Some(chunk)) = chunk else { break };
        let now = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                match (stream, event.as_str()) {
                    (Stream::Run(_), app::live::RUN_EVENT) => {
                        if let Some(seq) = id {
                            seen_events.push((seq, now));
                        }
                    }
                    (Stream::Class, app::live::CLASS_CHANGED_EVENT) => seen_changes.push(now),
                    _ => {}
                }
                id = None;
                event.clear();
            } else if let Some(value) = line.strip_prefix("id:") {
                id = value.trim().parse().ok();
            } else if let Some(value) = line.strip_prefix("event:") {
                event = value.trim().to_string();
            }
        }
    }
    let mut arrivals = arrivals.lock().unwrap();
    match stream {
        Stream::Run(run_id) => arrivals.runs.push((run_id, seen_events)),
        Stream::Class => arrivals.classes.push(seen_changes),
    }
}

/// The `q`-quantile of sorted `values` (seconds), in milliseconds.
fn quantile_ms(sorted: &[f64], q: f64) -> f64 {
    quantile(sorted, q) * 1000.0
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
    let (a, b) = (options.node_a.clone(), options.node_b.clone());
    let started = Instant::now();

    // The instructor sets the class up on node A.
    let teacher = client(Duration::from_secs(600));
    post(
        &teacher,
        &a,
        "sign-in",
        &format!("username=fanout&password={}", options.password),
    )
    .await;
    let class = post(&teacher, &a, "create-class", "name=Fan-out+class").await;
    let class_id = class["id"].as_i64().expect("a class id");
    let code = class["join_code"].as_str().unwrap().to_string();
    for team in 1..=options.teams {
        post(
            &teacher,
            &a,
            "add-team",
            &format!("class_id={class_id}&name=Team+{team}"),
        )
        .await;
    }
    post(
        &teacher,
        &a,
        "set-phase",
        &format!("class_id={class_id}&phase=competition"),
    )
    .await;
    let preview = post(&teacher, &a, "find-class", &format!("code={code}")).await;
    let teams: Vec<i64> = preview["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();

    // Enough students for the streams at the server's per-account cap, at least one per
    // team; the first of each team queues its team's run (no worker trains it here).
    let streams = options.run_pages + options.class_pages;
    let students = streams.div_ceil(STREAMS_PER_STUDENT).max(teams.len());
    let mut clients = Vec::with_capacity(students);
    for index in 0..students {
        let client = client(Duration::from_secs(600));
        post(
            &client,
            if index % 2 == 0 { &a } else { &b },
            "join-class",
            &format!(
                "code={code}&display_name=Student+{index}&team_id={}",
                teams[index % teams.len()]
            ),
        )
        .await;
        clients.push(client);
    }
    let mut runs = Vec::with_capacity(teams.len());
    for client in clients.iter().take(teams.len()) {
        let queued = post(client, &a, "submit-run", "form[model]=all-MiniLM-L6-v2&form[method]=full&form[lora_rank]=16&form[lora_alpha]=&form[learning_rate]=5e-5&form[batch_size]=16&form[epochs]=1&form[warmup_ratio]=0.1&form[max_len]=64&form[train_subset]=1000&form[seed]=1&form[probe_sentence]=&confirmed=true").await;
        runs.push(queued["Queued"].as_i64().expect("a queued run"));
    }
    eprintln!(
        "class ready: {} teams, {students} students, {} runs queued, in {:.1} s",
        teams.len(),
        runs.len(),
        started.elapsed().as_secs_f64()
    );

    // Memory before the streams, then every stream opened: page i on node A when i is
    // even, B when odd; run page i watches the run of its student's team.
    let memory_before: Vec<Option<f64>> = options.pids.iter().map(|p| memory_mib(*p)).collect();
    let arrivals: Shared = Arc::default();
    let opened = Arc::new(tokio::sync::Semaphore::new(0));
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::with_capacity(streams);
    // Run page p watches team p % T's run, held by that team's students in turn; class
    // pages go round all students. Each student then holds at most the per-account cap.
    let per_team = students / teams.len();
    for page in 0..streams {
        let node = if page % 2 == 0 { &a } else { &b };
        let (stream, student) = if page < options.run_pages {
            let team_index = page % runs.len();
            let turn = (page / runs.len()) % per_team;
            (
                Stream::Run(runs[team_index]),
                team_index + teams.len() * turn,
            )
        } else {
            (Stream::Class, (page - options.run_pages) % students)
        };
        let url = match stream {
            Stream::Run(run_id) => format!("{node}/api/runs/{run_id}/events"),
            Stream::Class => format!("{node}/api/class-events"),
        };
        tasks.push(tokio::spawn(hold(
            clients[student].clone(),
            url,
            stream,
            arrivals.clone(),
            opened.clone(),
            stop.clone(),
        )));
    }
    let _ = opened.acquire_many(streams as u32).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let memory_after: Vec<Option<f64>> = options.pids.iter().map(|p| memory_mib(*p)).collect();
    let refused = arrivals.lock().unwrap().refused.clone();
    eprintln!(
        "{} streams open ({} refused) in {:.1} s",
        streams - refused.len(),
        refused.len(),
        started.elapsed().as_secs_f64()
    );

    // The worker's part: every run's step events at the chosen rate, each stored and then
    // announced as a worker does; and the class's phase switched through node A.
    let pool = server::db::connect_and_migrate(&options.database)
        .await
        .expect("the database opens");
    let log = EventLog::new(pool.clone());
    let notifier = Notifier::new(&pool);
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let mut inserted: HashMap<(i64, i64), Instant> = HashMap::new();
    let mut changes = Vec::new();
    let total = options.events * runs.len() as i64;
    let change_every = (total as usize / options.class_changes.max(1)).max(1);
    let produce_start = Instant::now();
    let mut next = Instant::now();
    let mut produced = 0usize;
    for seq in 1..=options.events {
        for &run_id in &runs {
            let event = Event::Step {
                step: seq as usize,
                epoch: 1,
                loss: 0.7 / (1.0 + seq as f64 / 10.0),
                lr: 5e-5,
                grad_norm: 1.3,
                examples_per_sec: 16.0,
            };
            let payload = serde_json::to_string(&event).unwrap();
            log.append(run_id, seq, event.kind(), &payload)
                .await
                .expect("the event is stored");
            inserted.insert((run_id, seq), Instant::now());
            notifier.notify(Notice::RunEvent(run_id, seq));
            produced += 1;
            if options.class_changes > 0
                && produced.is_multiple_of(change_every)
                && changes.len() < options.class_changes
            {
                let phase = if changes.len() % 2 == 0 {
                    "quiz"
                } else {
                    "competition"
                };
                let sent = Instant::now();
                post(
                    &teacher,
                    &a,
                    "set-phase",
                    &format!("class_id={class_id}&phase={phase}"),
                )
                .await;
                changes.push(sent);
            }
            next += interval;
            tokio::time::sleep_until(next.into()).await;
        }
    }
    let produce_seconds = produce_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = stop_sender.send(true);
    for task in tasks {
        let _ = task.await;
    }

    // Delays, losses and repeats.
    let arrivals = std::mem::take(&mut *arrivals.lock().unwrap());
    let (mut delays, mut lost, mut repeated, mut delivered) = (Vec::new(), 0usize, 0usize, 0usize);
    let mut last_arrival = produce_start;
    for (run_id, seen) in &arrivals.runs {
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for (seq, at) in seen {
            *counts.entry(*seq).or_default() += 1;
            delivered += 1;
            last_arrival = last_arrival.max(*at);
            if let Some(stored) = inserted.get(&(*run_id, *seq)) {
                delays.push(at.saturating_duration_since(*stored).as_secs_f64());
            }
        }
        lost += (1..=options.events)
            .filter(|s| !counts.contains_key(s))
            .count();
        repeated += counts
            .values()
            .filter(|&&n| n > 1)
            .map(|n| n - 1)
            .sum::<usize>();
    }
    delays.sort_by(f64::total_cmp);
    let mut class_delays = Vec::new();
    let mut class_missed = 0;
    for seen in &arrivals.classes {
        // Each change is the first arrival after it was sent.
        for (index, sent) in changes.iter().enumerate() {
            let until = changes.get(index + 1).copied();
            match seen
                .iter()
                .find(|at| **at >= *sent && until.is_none_or(|u| **at < u))
            {
                Some(at) => class_delays.push(at.duration_since(*sent).as_secs_f64()),
                None => class_missed += 1,
            }
        }
    }
    class_delays.sort_by(f64::total_cmp);
    let delivery_seconds = last_arrival.duration_since(produce_start).as_secs_f64();
    let open_streams = streams - arrivals.refused.len();
    let per_stream_kib: Vec<Option<f64>> = memory_before
        .iter()
        .zip(&memory_after)
        .map(|(before, after)| {
            Some((after.as_ref()? - before.as_ref()?) * 1024.0 / (open_streams as f64 / 2.0))
        })
        .collect();
    let summary = serde_json::json!({
        "run_pages": options.run_pages,
        "class_pages": options.class_pages,
        "streams_open": open_streams,
        "streams_refused": arrivals.refused.len(),
        "refusals": arrivals.refused.iter().take(5).collect::<Vec<_>>(),
        "runs": runs.len(),
        "events_per_run": options.events,
        "events_stored": total,
        "store_rate_per_s": total as f64 / produce_seconds,
        "deliveries": delivered,
        "deliveries_per_s": delivered as f64 / delivery_seconds.max(1e-9),
        "run_delay_ms": {
            "p50": quantile_ms(&delays, 0.5),
            "p99": quantile_ms(&delays, 0.99),
            "max": quantile_ms(&delays, 1.0),
        },
        "lost": lost,
        "repeated": repeated,
        "class_changes": changes.len(),
        "class_deliveries": class_delays.len(),
        "class_missed": class_missed,
        "class_delay_ms": {
            "p50": quantile_ms(&class_delays, 0.5),
            "p99": quantile_ms(&class_delays, 0.99),
            "max": quantile_ms(&class_delays, 1.0),
        },
        "memory_mib_before": memory_before,
        "memory_mib_after": memory_after,
        "memory_kib_per_stream": per_stream_kib,
    });
    println!("{}", serde_json::to_string_pretty(&summary).unwrap());
    if let Some(out) = options.out {
        std::fs::write(&out, serde_json::to_string_pretty(&summary).unwrap())
            .unwrap_or_else(|e| panic!("cannot write {out}: {e}"));
    }
    pool.close().await;
}
