//! HTTP-level integration tests of the lessons, widgets and server plumbing: each test
//! starts the real `jigsaw-lab` binary on a free port with a fresh data directory and talks
//! to it over HTTP.

mod support;

use reqwest::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE};
use support::*;

#[tokio::test]
async fn healthz_reports_the_database_and_device() {
    let server = Server::start();
    let response = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let health: serde_json::Value = response.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "ok");
    assert!(
        health["device"].as_str().unwrap().contains("CPU"),
        "{health}"
    );
}

#[tokio::test]
async fn the_home_page_lists_every_lesson_with_security_headers() {
    let server = Server::start();
    let response = client().get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(headers.contains_key("content-security-policy"));
    assert!(
        headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    for slug in LESSON_SLUGS {
        assert!(
            html.contains(&format!("href=\"/lessons/{slug}\"")),
            "no link to {slug}"
        );
    }
    assert!(html.contains("Tokenization") && html.contains("The [CLS] token"));
    // The home page has no island, but it loads the islands script (which then fetches
    // nothing), not the whole app.
    assert!(
        html.contains("\"/pkg/jigsaw-lab-lessons\"") && !html.contains("/pkg/jigsaw-lab.js"),
        "the islands script is linked, not the app's"
    );
}

/// A lesson page sends its widget, its claims box and its check-in button as islands for
/// the lessons' islands bundle, each with its props, and not the whole app; so do the join
/// and sign-in pages with their forms, the student's pages and the instructor's, each for
/// its group's bundle. Only a path that is no page (the 404 page) loads the whole app.
#[tokio::test]
async fn islands_pages_load_their_islands_and_other_pages_the_app() {
    let server = Server::start();
    let get = |path: &'static str| {
        let request = client().get(server.url(path)).send();
        async move { request.await.unwrap().text().await.unwrap() }
    };
    let bundles = ["lessons", "class", "runs", "instructor"];
    for (path, bundle, islands) in [
        (
            "/lessons/tokenization",
            "lessons",
            &["LessonWidget_", "LessonClaimsBox_", "CheckInButton_"][..],
        ),
        ("/join", "class", &["JoinForms_"][..]),
        // The router takes a trailing slash for the same page.
        ("/join/", "class", &["JoinForms_"][..]),
        ("/instructor/sign-in", "class", &["SignInForm_"][..]),
        // Without a student's session these show why and link to /join: no island.
        ("/class", "class", &[][..]),
        ("/quiz", "class", &[][..]),
        ("/team", "runs", &[][..]),
        ("/runs/1", "runs", &[][..]),
        // Without an instructor's session, the same.
        ("/instructor", "instructor", &[][..]),
        ("/instructor/models", "instructor", &[][..]),
        ("/instructor/data", "instructor", &[][..]),
        ("/instructor/classes/1/grading", "instructor", &[][..]),
        (
            "/instructor/classes/1/grading/lora-1",
            "instructor",
            &[][..],
        ),
        ("/instructor/classes/1", "instructor", &[][..]),
    ] {
        let page = get(path).await;
        for island in islands {
            assert!(
                page.contains(&format!("<leptos-island data-component=\"{island}")),
                "{path}: {island} is an island"
            );
        }
        for other in bundles {
            let script = format!("\"/pkg/jigsaw-lab-{other}\"");
            assert_eq!(page.contains(&script), other == bundle, "{path}: {other}");
        }
        assert!(!page.contains("/pkg/jigsaw-lab.js"), "{path}");
    }
    let lesson = get("/lessons/tokenization").await;
    assert!(
        lesson.contains(r#"data-props="{&quot;widget&quot;:&quot;tokenizer-playground&quot;}""#)
    );
    for path in ["/no-such-page", "/lessons-and-more"] {
        let page = get(path).await;
        assert!(page.contains("/pkg/jigsaw-lab.js"), "{path} loads the app");
        for bundle in bundles {
            assert!(!page.contains(&format!("jigsaw-lab-{bundle}")), "{path}");
        }
    }
}

#[tokio::test]
async fn every_lesson_renders_its_text_and_questions() {
    let server = Server::start();
    for slug in LESSON_SLUGS {
        let response = client()
            .get(server.url(&format!("/lessons/{slug}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{slug}");
        let html = response.text().await.unwrap();
        assert!(html.contains("Check your understanding"), "{slug}");
        assert!(html.contains("<h2>"), "{slug} has a rendered body");
    }
    let html = client()
        .get(server.url("/lessons/fine-tuning"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("rules"), "the card-game analogy is there");
}

#[tokio::test]
async fn unknown_lessons_and_paths_are_404_pages() {
    let server = Server::start();
    let response = client()
        .get(server.url("/lessons/quantum-knitting"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("There is no lesson called")
    );
    let response = client()
        .get(server.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.text().await.unwrap().contains("Page not found"));
}

#[tokio::test]
async fn a_check_in_round_trips_to_the_database_and_survives_a_restart() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start_in(temp.path());
    assert_eq!(
        call_server_fn(&server, "checkins", "slug=tokenization").await,
        (StatusCode::OK, "0".into())
    );
    assert_eq!(
        call_server_fn(&server, "checkin", "slug=tokenization").await,
        (StatusCode::OK, "1".into())
    );
    assert_eq!(
        call_server_fn(&server, "checkin", "slug=tokenization").await,
        (StatusCode::OK, "2".into())
    );
    assert_eq!(
        call_server_fn(&server, "checkins", "slug=attention").await,
        (StatusCode::OK, "0".into())
    );
    assert!(
        server.terminate().success(),
        "SIGTERM stops the server cleanly"
    );

    let server = Server::start_in(temp.path());
    assert_eq!(
        call_server_fn(&server, "checkins", "slug=tokenization").await,
        (StatusCode::OK, "2".into())
    );
    assert!(server.data_dir.join("jigsaw-lab.db").is_file());
}

#[tokio::test]
async fn bad_server_function_input_is_a_clear_4xx() {
    let server = Server::start();
    let (status, body) = call_server_fn(&server, "checkin", "slug=not-a-lesson").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("There is no such lesson"), "{body}");
    let (status, body) = call_server_fn(&server, "checkin", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("could not be read"), "{body}");
    let (status, body) = call_server_fn(&server, "checkin", "slug=%FF%FE").await;
    assert!(status.is_client_error(), "{status} {body}");
}

#[tokio::test]
async fn static_files_carry_cache_headers_and_are_compressed() {
    let server = Server::start();
    let response = client()
        .get(server.url("/pkg/jigsaw-lab.css"))
        .header(ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
    assert_eq!(response.headers()[CONTENT_ENCODING], "gzip");
    assert!(response.headers().contains_key("last-modified"));
    let response = client()
        .get(server.url("/favicon.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "public, max-age=86400");
    let response = client().get(server.url("/")).send().await.unwrap();
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
}

/// The site build compresses the bundle once at brotli's highest quality; a browser that
/// accepts br gets those bytes as they are, one that does not gets the module itself.
#[tokio::test]
async fn the_bundle_is_served_as_built_with_brotli() {
    let server = Server::start();
    let pkg = site_root().join("pkg");
    for (file, content_type) in [
        ("jigsaw-lab.wasm", "application/wasm"),
        ("jigsaw-lab.js", "text/javascript"),
        ("jigsaw-lab-lessons.wasm", "application/wasm"),
        ("jigsaw-lab-class.js", "text/javascript"),
        ("jigsaw-lab-runs.wasm", "application/wasm"),
        ("jigsaw-lab-instructor.js", "text/javascript"),
    ] {
        let fetch = |encoding: &'static str| {
            client()
                .get(server.url(&format!("/pkg/{file}")))
                .header(ACCEPT_ENCODING, encoding)
                .send()
        };
        let response = fetch("gzip, deflate, br").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        assert_eq!(response.headers()[CONTENT_ENCODING], "br", "{file}");
        assert!(
            response.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{file}: {:?}",
            response.headers()[CONTENT_TYPE]
        );
        let body = response.bytes().await.unwrap();
        assert_eq!(
            body,
            std::fs::read(pkg.join(format!("{file}.br"))).unwrap(),
            "{file}"
        );
        let plain = fetch("identity").await.unwrap();
        assert!(!plain.headers().contains_key(CONTENT_ENCODING), "{file}");
        assert_eq!(
            plain.bytes().await.unwrap(),
            std::fs::read(pkg.join(file)).unwrap(),
            "{file}"
        );
    }
}

#[test]
fn bad_settings_stop_the_start_with_one_line_naming_the_setting() {
    let cases = [
        ("JIGSAW_BIND", "127.0.0.1:http", "JIGSAW_BIND"),
        ("JIGSAW_BIND", "not an address", "JIGSAW_BIND"),
        ("JIGSAW_DATA_DIR", "/proc/jigsaw-lab", "JIGSAW_DATA_DIR"),
        (
            "JIGSAW_MODELS_DIR",
            "/nonexistent/models",
            "JIGSAW_MODELS_DIR",
        ),
        ("JIGSAW_DEVICE", "tpu", "JIGSAW_DEVICE"),
        ("JIGSAW_SITE_ROOT", "/nonexistent/site", "JIGSAW_SITE_ROOT"),
        ("DATABASE_URL", "mysql://root@localhost/db", "DATABASE_URL"),
        ("JIGSAW_CONFIG", "/nonexistent/jigsaw.toml", "JIGSAW_CONFIG"),
    ];
    for (setting, value, named) in cases {
        let (code, stderr) = failed_start(setting, value);
        assert_eq!(code, Some(2), "{setting}={value}: {stderr}");
        let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{setting}={value} printed: {stderr}");
        assert!(
            lines[0].starts_with(&format!("jigsaw-lab: {named}: ")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (code, stderr) = failed_start("JIGSAW_BIND", &address);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("JIGSAW_BIND: cannot listen on"), "{stderr}");
}

#[tokio::test]
async fn the_tokenizer_playground_splits_with_the_default_model() {
    let server = Server::start();
    let (status, body) = call_server_fn(&server, "tokenize", "text=unhappiness").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let result: serde_json::Value = serde_json::from_str(&body).unwrap();
    let pieces: Vec<&str> = result["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    assert_eq!(pieces, ["[CLS]", "un", "##ha", "##pp", "##iness", "[SEP]"]);
    assert_eq!(result["words"], 1);
    assert_eq!(result["unknown"], 0);

    let long = "a".repeat(513);
    let (status, body) = call_server_fn(&server, "tokenize", &format!("text={long}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("513 characters") && body.contains("at most 512"),
        "{body}"
    );
    let (status, body) = call_server_fn(&server, "tokenize", "text=%20%20").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Type a sentence first"), "{body}");
    // 511 CJK characters are 511 pieces plus [CLS] and [SEP]: one more than the model's 512.
    let cjk = "%E4%B8%AD".repeat(511);
    let (status, body) = call_server_fn(&server, "tokenize", &format!("text={cjk}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let result: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(result["truncated"], true);
    assert_eq!(result["pieces"].as_array().unwrap().len(), 512);
}

#[tokio::test]
async fn the_attention_viewer_returns_the_layer_it_draws() {
    let server = Server::start();
    let (status, body) =
        call_server_fn(&server, "attention", "text=the+movie+was+not+good+.").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tokens = view["tokens"].as_array().unwrap().len();
    assert_eq!(tokens, 8);
    // One layer, the last unless another is asked for, with all of its heads.
    assert_eq!(
        (view["layer_count"].as_u64(), view["layer"].as_u64()),
        (Some(6), Some(5))
    );
    let heads = view["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 12);
    assert_eq!(heads[0].as_array().unwrap().len(), tokens * tokens);
    let row: f64 = heads[0].as_array().unwrap()[..tokens]
        .iter()
        .map(|p| p.as_f64().unwrap())
        .sum();
    // The weights come rounded to the three decimals the heatmap can draw.
    assert!(
        (row - 1.0).abs() < 5e-3,
        "a row of probabilities sums to 1: {row}"
    );
    assert!(
        body.split([',', '[', ']'])
            .filter_map(|n| n.split_once('.'))
            .all(
                |(_, decimals)| decimals.trim_end_matches(['}', ']']).len() <= 3
                    || decimals.contains('e')
            ),
        "weights with more than three decimals"
    );
    let (status, first) = call_server_fn(
        &server,
        "attention",
        "text=the+movie+was+not+good+.&layer=0",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["layer"], 0);
    assert_ne!(
        first["heads"], view["heads"],
        "layer 1 differs from layer 6"
    );
    let (status, refused) = call_server_fn(
        &server,
        "attention",
        "text=the+movie+was+not+good+.&layer=6",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.contains("choose a layer from 0 to 5"), "{refused}");
    let (status, body) = call_server_fn(&server, "attention", "text=").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let long = "good+".repeat(100);
    let (status, body) = call_server_fn(&server, "attention", &format!("text={long}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            view["truncated"].as_bool(),
            view["tokens"].as_array().unwrap().len()
        ),
        (Some(true), 64)
    );
}

#[tokio::test]
async fn the_lora_counter_uses_the_real_shapes() {
    let server = Server::start();
    let (status, body) = call_server_fn(
        &server,
        "lora-count",
        "rank=16&targets[query]=true&targets[value]=true",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let count: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        count["adapter_params"], 147_456,
        "6 layers x 2 matrices x 16 x (384 + 384)"
    );
    assert_eq!(count["model_params"], 22_713_986);
    assert_eq!(count["classifier_params"], 770);
    let (status, body) = call_server_fn(&server, "lora-count", "rank=8&targets[ffn_in]=true").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let count: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(count["adapter_params"], 6 * 8 * (384 + 1536));
    let (status, body) = call_server_fn(&server, "lora-count", "rank=0&targets[query]=true").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = call_server_fn(&server, "lora-count", "rank=16").await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, body) =
        call_server_fn(&server, "lora-count", "rank=abc&targets[query]=true").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn the_cls_demo_reads_the_vector_and_says_the_head_is_untrained() {
    let server = Server::start();
    let (status, body) = call_server_fn(&server, "cls", "text=a+gorgeous+%2C+witty+movie+.").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["cls"].as_array().unwrap().len(), 384);
    assert_eq!(view["head_trained"], false);
    let total: f64 = view["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-5, "{total}");
    let (status, _) = call_server_fn(&server, "cls", &format!("text={}", "x".repeat(600))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
