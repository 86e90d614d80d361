//! HTTP-level tests of the server under abuse: requests forged from another site, password
//! guessing and floods of sign-ins, join-code guessing, look-alike names. Each runs the real
//! binary, as a hostile or careless class would reach it.

mod support;

use reqwest::header::{CONTENT_TYPE, ORIGIN, RETRY_AFTER};
use std::path::Path;
use std::time::Duration;
use support::*;

/// Every server function's endpoint, read from the `#[server(...)]` attributes in app/src,
/// so a new server function is covered without editing this test.
fn server_function_endpoints() -> Vec<String> {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).unwrap();
                for attribute in source.split("#[server(").skip(1) {
                    let attribute = &attribute[..attribute.find(")]").unwrap()];
                    let endpoint = attribute
                        .split("endpoint = \"")
                        .nth(1)
                        .and_then(|rest| rest.split('"').next())
                        .unwrap_or_else(|| {
                            panic!("{}: a server fn without endpoint", path.display())
                        });
                    found.push(endpoint.to_string());
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(&repo_root().join("app/src"), &mut found);
    found.sort();
    found
}

/// Posts `body` to server function `endpoint` from a page whose origin is `origin`.
async fn post_from(
    client: &reqwest::Client,
    server: &Server,
    endpoint: &str,
    origin: &str,
    content_type: &str,
    body: &str,
) -> (StatusCode, String) {
    let response = client
        .post(server.url(&format!("/api/{endpoint}")))
        .header(ORIGIN, origin)
        .header(CONTENT_TYPE, content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn every_server_function_refuses_requests_from_another_site() {
    let server = Server::start();
    let teacher = signed_in_instructor(&server, "teacher").await;
    let (class_id, _code, _teams) = class_with_teams(&teacher, &server).await;
    let id = class_id.to_string();
    let endpoints = server_function_endpoints();
    assert!(endpoints.len() >= 30, "found only {endpoints:?}");
    assert!(endpoints.iter().any(|e| e == "set-phase"));

    for endpoint in &endpoints {
        let (status, body) = post_from(
            &teacher,
            &server,
            endpoint,
            "http://evil.example",
            FORM,
            &format!("class_id={id}&phase=quiz"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{endpoint}: {body}");
        assert!(body.contains("another website"), "{endpoint}: {body}");
        // Another port of the same machine is another site too.
        let same_machine_other_port = server.base.rsplit_once(':').unwrap().0.to_string() + ":1";
        let (status, _) = post_from(
            &teacher,
            &server,
            endpoint,
            &same_machine_other_port,
            FORM,
            "",
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{endpoint} from another port"
        );
        // The site's own origin, with a body type its forms never send.
        let (status, body) = post_from(
            &teacher,
            &server,
            endpoint,
            &server.base,
            "text/plain;charset=UTF-8",
            &format!("class_id={id}&phase=quiz"),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{endpoint}: {body}"
        );
    }

    // None of it changed anything: the class is still in its first phase, and the same
    // request from the site itself works.
    let class = ok(&teacher, &server, "class-admin", &[("class_id", &id)]).await;
    assert_eq!(class["summary"]["phase"], "study", "{class}");
    let (status, body) = post_from(
        &teacher,
        &server,
        "set-phase",
        &server.base,
        FORM,
        &format!("class_id={id}&phase=quiz"),
    )
    .await;
    assert!(
        status.is_success() || status.is_redirection(),
        "{status}: {body}"
    );
    let class = ok(&teacher, &server, "class-admin", &[("class_id", &id)]).await;
    assert_eq!(class["summary"]["phase"], "quiz");
}

#[tokio::test]
async fn guessed_passwords_are_slowed_down_and_the_owner_gets_in_after_the_wait() {
    let server = Server::start();
    add_instructor(&server, "teacher");
    let attempt = |password: &'static str| {
        let server = &server;
        async move {
            let response = browser()
                .post(server.url("/api/sign-in"))
                .header(CONTENT_TYPE, FORM)
                .body(format!("username=teacher&password={}", urlencode(password)))
                .send()
                .await
                .unwrap();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (
                response.status(),
                retry_after,
                response.text().await.unwrap(),
            )
        }
    };
    for _ in 0..5 {
        let (status, _, body) = attempt("guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    // Now even the right password must wait, and the answer says for how long.
    let (status, retry_after, body) = attempt(PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body.contains("Too many wrong passwords for this account"),
        "{body}"
    );
    assert!(body.contains("Try again in 1 s"), "{body}");
    assert_eq!(retry_after, Some(1));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = attempt(PASSWORD).await;
    assert!(
        status.is_success() || status.is_redirection(),
        "{status}: {body}"
    );
    // Success forgot the failures: a typo afterwards is an ordinary wrong password.
    assert_eq!(attempt("typo").await.0, StatusCode::UNAUTHORIZED);
}

/// Peak resident memory of the process `pid`, in MiB.
fn peak_memory_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

#[tokio::test]
async fn a_flood_of_sign_ins_is_answered_without_exhausting_memory() {
    let server = Server::start();
    let url = server.url("/api/sign-in");
    let flood = (0..256).map(|i| {
        let url = url.clone();
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header(CONTENT_TYPE, FORM)
                .body(format!("username=nobody{i}&password=whatever"))
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.text().await.unwrap())
        }
    });
    let answers = all_at_once(flood).await;
    let refused = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    for (status, body) in &answers {
        assert!(
            *status == StatusCode::UNAUTHORIZED || *status == StatusCode::TOO_MANY_REQUESTS,
            "{status}: {body}"
        );
        assert!(
            body.contains("Try again in") || body.contains("Wrong username"),
            "{body}"
        );
    }
    assert!(refused > 0, "256 sign-ins at once were all checked");
    let peak = peak_memory_mib(server.pid());
    assert!(peak < 1536, "the server peaked at {peak} MiB");
    assert_eq!(
        reqwest::get(server.url("/healthz")).await.unwrap().status(),
        StatusCode::OK
    );
}

/// Runs every future at once (each on its own task) and collects their outputs in order.
async fn all_at_once<T: Send + 'static>(
    futures: impl Iterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    outputs
}

#[tokio::test]
async fn join_code_guesses_are_counted_atomically_and_never_lock_the_class_out() {
    let server = Server::start();
    let teacher = signed_in_instructor(&server, "teacher").await;
    let (_class_id, code, _teams) = class_with_teams(&teacher, &server).await;
    // Thirteen wrong codes at once: ten are looked up, three must wait.
    let url = server.url("/api/find-class");
    let guesses = (0..13).map(|i| {
        let url = url.clone();
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header(CONTENT_TYPE, FORM)
                .body(format!("code=WRONG{i}"))
                .send()
                .await
                .unwrap();
            let retry_after = response.headers().get(RETRY_AFTER).cloned();
            (
                response.status(),
                retry_after,
                response.text().await.unwrap(),
            )
        }
    });
    let answers = all_at_once(guesses).await;
    let looked_up = answers
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::NOT_FOUND)
        .count();
    let waiting: Vec<_> = answers
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(looked_up, 10, "{answers:?}");
    assert_eq!(waiting.len(), 3, "{answers:?}");
    for (_, retry_after, body) in &waiting {
        assert!(body.contains("Too many wrong join codes"), "{body}");
        assert!(retry_after.is_some());
    }
    // The student with the right code waits seconds, not minutes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = call(&browser(), &server, "find-class", &[("code", &code)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn look_alike_names_are_refused_and_composed_names_are_one_name() {
    let server = Server::start();
    let teacher = signed_in_instructor(&server, "teacher").await;
    let (_class_id, code, teams) = class_with_teams(&teacher, &server).await;
    let team = teams[0].to_string();
    ok(
        &browser(),
        &server,
        "join-class",
        &[
            ("code", &code),
            ("display_name", "Zo\u{eb}"),
            ("team_id", &team),
        ],
    )
    .await;
    // The same name typed with a combining mark is the same name.
    let taken = refused(
        &browser(),
        &server,
        "join-class",
        &[
            ("code", &code),
            ("display_name", "Zoe\u{308}"),
            ("team_id", &team),
        ],
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(taken.contains("already called"), "{taken}");
    for sneaky in ["Zo\u{eb}\u{200b}", "\u{202e}\u{eb}oZ", "Z\u{2066}o\u{eb}"] {
        let body = refused(
            &browser(),
            &server,
            "join-class",
            &[
                ("code", &code),
                ("display_name", sneaky),
                ("team_id", &team),
            ],
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(body.contains("invisible character"), "{sneaky:?}: {body}");
    }
}

#[tokio::test]
async fn a_password_reset_signs_out_the_accounts_sessions() {
    let server = Server::start();
    let teacher = signed_in_instructor(&server, "teacher").await;
    let other_device = browser();
    ok(
        &other_device,
        &server,
        "sign-in",
        &[("username", "teacher"), ("password", PASSWORD)],
    )
    .await;
    // The teacher sets a new password on the class computer: both sessions end.
    let reset = server
        .command()
        .env("JIGSAW_INSTRUCTOR_PASSWORD", PASSWORD)
        .args(["instructor", "add", "teacher"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&reset.stdout);
    assert!(said.contains("sessions are signed out"), "{said}");
    for client in [&teacher, &other_device] {
        assert_eq!(ok(client, &server, "whoami", &[]).await, "Anonymous");
        refused(client, &server, "my-classes", &[], StatusCode::UNAUTHORIZED).await;
    }
    // Signing in again works as before.
    ok(
        &teacher,
        &server,
        "sign-in",
        &[("username", "teacher"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(
        ok(&teacher, &server, "whoami", &[]).await["Instructor"]["username"],
        "teacher"
    );
}

#[tokio::test]
async fn sessions_expire_after_two_weeks_without_use_not_two_weeks_after_sign_in() {
    let server = Server::start();
    let teacher = signed_in_instructor(&server, "teacher").await;
    sqlx::any::install_default_drivers();
    let database = format!(
        "sqlite://{}",
        server.data_dir.join("jigsaw-lab.db").display()
    );
    let pool = sqlx::AnyPool::connect(&database).await.unwrap();
    let now = unix_seconds();
    let expires_at = || async {
        sqlx::query_scalar::<_, i64>("SELECT MAX(expires_at) FROM sessions")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert!(expires_at().await > now + 13 * 86_400);
    // As if the session was last renewed on an earlier day and now expires tomorrow.
    let today = format!("\"renewed_on_day\":{}", now.div_euclid(86_400));
    let updated = sqlx::query(
        "UPDATE sessions SET record = REPLACE(record, $1, '\"renewed_on_day\":1'), expires_at = $2",
    )
    .bind(&today)
    .bind(now + 86_400)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(updated.rows_affected(), 1);
    let record: String = sqlx::query_scalar("SELECT record FROM sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(record.contains("\"renewed_on_day\":1"), "{record}");
    // Using the site today moves the expiry two weeks ahead again.
    assert_eq!(
        ok(&teacher, &server, "whoami", &[]).await["Instructor"]["username"],
        "teacher"
    );
    assert!(
        expires_at().await > now + 13 * 86_400,
        "the session was not renewed"
    );
    pool.close().await;
}

#[tokio::test]
async fn a_crowd_on_the_attention_viewer_is_queued_then_told_to_wait() {
    let server = Server::start();
    let sentence = "the film is a charming , funny and sad story . ".repeat(12);
    let body = format!("text={}", urlencode(&sentence[..500]));
    let url = server.url("/api/attention");
    let crowd = (0..64).map(|_| {
        let (url, body) = (url.clone(), body.clone());
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header(CONTENT_TYPE, FORM)
                .body(body)
                .send()
                .await
                .unwrap();
            let retry_after = response.headers().contains_key(RETRY_AFTER);
            let status = response.status();
            (status, retry_after, response.text().await.unwrap())
        }
    });
    let answers = all_at_once(crowd).await;
    let (mut answered, mut waiting) = (0, 0);
    for (status, retry_after, body) in &answers {
        match *status {
            StatusCode::OK => answered += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                waiting += 1;
                assert!(retry_after, "429 without Retry-After");
                assert!(body.contains("Try again in 2 s"), "{body}");
            }
            other => panic!("{other}: {}", &body[..body.len().min(300)]),
        }
    }
    assert!(answered >= 1, "no sentence was read");
    assert!(waiting >= 1, "64 readings at once were all queued");
    let peak = peak_memory_mib(server.pid());
    assert!(peak < 1536, "the server peaked at {peak} MiB");
}

#[tokio::test]
async fn one_student_cannot_fill_the_model_line_for_the_class() {
    let server = Server::start();
    let teacher = signed_in_instructor(&server, "teacher").await;
    let (_class_id, code, teams) = class_with_teams(&teacher, &server).await;
    let ana = joined_student(&server, &code, "Ana", teams[0]).await;
    let ben = joined_student(&server, &code, "Ben", teams[1]).await;
    let sentence = "the film is a charming , funny and sad story . ".repeat(12);
    let body = format!("text={}", urlencode(&sentence[..500]));
    let url = server.url("/api/attention");
    // Ana sends six long sentences at once; Ben sends one at the same moment.
    let burst = (0..7).map(|i| {
        let client = if i == 6 { ben.clone() } else { ana.clone() };
        let (url, body) = (url.clone(), body.clone());
        async move {
            let response = client
                .post(url)
                .header(CONTENT_TYPE, FORM)
                .body(body)
                .send()
                .await
                .unwrap();
            (i, response.status(), response.text().await.unwrap())
        }
    });
    let answers = all_at_once(burst).await;
    let ana_answered = answers
        .iter()
        .filter(|(i, status, _)| *i < 6 && *status == StatusCode::OK)
        .count();
    let ana_told: Vec<&String> = answers
        .iter()
        .filter(|(i, status, _)| *i < 6 && *status == StatusCode::TOO_MANY_REQUESTS)
        .map(|(_, _, body)| body)
        .collect();
    assert!(ana_answered >= 1, "{answers:?}");
    assert_eq!(ana_answered + ana_told.len(), 6, "only 200 or 429");
    assert!(
        !ana_told.is_empty(),
        "six at once from one student were all read"
    );
    assert!(
        ana_told
            .iter()
            .all(|body| body.contains("You already have 2 sentences")),
        "{ana_told:?}"
    );
    let (_, ben_status, ben_body) = &answers[6];
    assert_eq!(*ben_status, StatusCode::OK, "{ben_body}");
}

#[tokio::test]
async fn live_streams_are_capped_per_student() {
    let server = Server::start();
    let teacher = signed_in_instructor(&server, "teacher").await;
    let (_class_id, code, teams) = class_with_teams(&teacher, &server).await;
    let zoe = joined_student(&server, &code, "Zoe", teams[0]).await;
    let open = || async {
        zoe.get(server.url("/api/class-events"))
            .send()
            .await
            .unwrap()
    };
    let mut streams = Vec::new();
    for _ in 0..8 {
        let stream = open().await;
        assert_eq!(stream.status(), StatusCode::OK);
        streams.push(stream);
    }
    let refused = open().await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key(RETRY_AFTER));
    let message = refused.text().await.unwrap();
    assert!(message.contains("Close some tabs"), "{message}");
    // Another student is not affected; a closed page frees its place.
    let ana = joined_student(&server, &code, "Ana", teams[1]).await;
    let other = ana
        .get(server.url("/api/class-events"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    drop(streams.pop());
    let mut reopened = None;
    for _ in 0..200 {
        let stream = open().await;
        if stream.status() == StatusCode::OK {
            reopened = Some(stream);
            break;
        }
        // The server notices the closed connection when it next reads or writes it (a
        // keep-alive comment goes out every 15 s).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "the closed page's place was not freed");
}

#[tokio::test]
async fn a_half_sent_request_is_closed_by_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start();
    let address = server.base.trim_start_matches("http://").to_string();
    let mut half = tokio::net::TcpStream::connect(&address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
    // Both are closed once the header timeout (20 s) passes; the wait here is generous.
    for connection in [&mut half, &mut idle] {
        let mut buffer = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(60), connection.read(&mut buffer))
            .await
            .expect("the server left a stalled connection open for a minute");
        let text = String::from_utf8_lossy(&buffer[..read.unwrap_or(0)]).to_string();
        assert!(!text.contains("200 OK"), "{text}");
    }
    assert_eq!(
        reqwest::get(server.url("/healthz")).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn anonymous_check_ins_are_bounded_per_address() {
    let server = Server::start();
    let mut counted = 0;
    let mut refusal = None;
    for _ in 0..40 {
        let (status, body) = call_server_fn(&server, "checkin", "slug=attention").await;
        if status == StatusCode::OK {
            counted += 1;
        } else {
            refusal = Some((status, body));
            break;
        }
    }
    assert_eq!(counted, 20, "twenty free check-ins from one address");
    let (status, body) = refusal.expect("the 21st click in a row waits");
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("Join your class"), "{body}");
    let (_, total) = call_server_fn(&server, "checkins", "slug=attention").await;
    assert_eq!(total, "20");
}

#[tokio::test]
async fn the_instructor_sets_how_long_a_run_may_train() {
    let server = Server::start();
    let teacher = signed_in_instructor(&server, "teacher").await;
    let (class_id, code, teams) = class_with_teams(&teacher, &server).await;
    let id = class_id.to_string();
    let class = ok(&teacher, &server, "class-admin", &[("class_id", &id)]).await;
    assert_eq!(
        class["run_minutes"], 60,
        "an hour unless the instructor says otherwise"
    );
    for bad in ["0", "601", "-5"] {
        let body = refused(
            &teacher,
            &server,
            "set-run-minutes",
            &[("class_id", &id), ("minutes", bad)],
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(body.contains("between 1 and 600 minutes"), "{body}");
    }
    ok(
        &teacher,
        &server,
        "set-run-minutes",
        &[("class_id", &id), ("minutes", "8")],
    )
    .await;
    let class = ok(&teacher, &server, "class-admin", &[("class_id", &id)]).await;
    assert_eq!(class["run_minutes"], 8);
    // Only the class's instructor sets it.
    let student = joined_student(&server, &code, "Ana", teams[0]).await;
    refused(
        &student,
        &server,
        "set-run-minutes",
        &[("class_id", &id), ("minutes", "600")],
        StatusCode::FORBIDDEN,
    )
    .await;
}
