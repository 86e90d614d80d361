//! HTTP-level tests of the jigsaw classroom against the real binary: instructor accounts,
//! classes and teams, topics, phases followed live over server-sent events, the quiz with
//! drafts and grading, and what each role may and may not reach. The `_on_postgres` tests
//! run the same flows on PostgreSQL instead of SQLite.

mod support;

use reqwest::header::CONTENT_TYPE;
use std::time::Duration;
use support::*;

/// The page's HTML without its `<script>` elements (hydration data lives there, as JSON).
fn without_scripts(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        out.push_str(&rest[..start]);
        match rest[start..].find("</script>") {
            Some(end) => rest = &rest[start + end + "</script>".len()..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// Reads the event stream until a `class-changed` event arrives (or fails after 10 s).
async fn next_class_change(response: &mut reqwest::Response) {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("event: class-changed") {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("a class-changed event within 10 s")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn a_class_runs_from_study_to_graded_quiz() {
    class_from_study_to_graded_quiz(None).await;
}

#[tokio::test]
async fn a_class_runs_from_study_to_graded_quiz_on_postgres() {
    let database = PostgresDatabase::create().await;
    class_from_study_to_graded_quiz(Some(&database)).await;
}

/// The classroom from sign-in to graded quiz, on `database` (else SQLite).
async fn class_from_study_to_graded_quiz(database: Option<&PostgresDatabase>) {
    let server = Server::start_on(database);
    let teacher = signed_in_instructor(&server, "ms.rivera").await;
    let (class_id, code, teams) = class_with_teams(&teacher, &server).await;
    let id = class_id.to_string();
    let zoe = joined_student(&server, &code, "  Zoë 🦊 ", teams[0]).await;
    let sam = joined_student(&server, &code, "Sam", teams[1]).await;

    // A student's "I've got it" counts once per lesson.
    let first = ok(&zoe, &server, "checkin", &[("slug", "attention")]).await;
    let again = ok(&zoe, &server, "checkin", &[("slug", "attention")]).await;
    assert_eq!((first.as_i64(), again.as_i64()), (Some(1), Some(1)));
    assert_eq!(
        ok(&sam, &server, "checkin", &[("slug", "attention")]).await,
        2
    );

    // Study: the student sees the team's own topic first.
    let class = ok(&zoe, &server, "my-class", &[]).await;
    assert_eq!(class["name"], "Zoë 🦊", "names are trimmed, Unicode kept");
    assert_eq!(class["phase"], "study");
    assert_eq!(class["topic"]["slug"], "fine-tuning");
    assert_eq!(class["lessons"][0]["topic"]["slug"], "fine-tuning");
    assert_eq!(class["lessons"][0]["mine"], true);
    assert_eq!(
        ok(&sam, &server, "my-class", &[]).await["topic"]["slug"],
        "tokenization"
    );

    // A phase change reaches the open page live.
    let mut stream = zoe
        .get(server.url("/api/class-events"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    ok(
        &teacher,
        &server,
        "set-phase",
        &[("class_id", &id), ("phase", "teach")],
    )
    .await;
    next_class_change(&mut stream).await;
    assert_eq!(ok(&zoe, &server, "my-class", &[]).await["phase"], "teach");

    // The quiz is closed until the quiz phase.
    let early = refused(
        &zoe,
        &server,
        "save-answer",
        &[("key", "fine-tuning-1"), ("text", "x"), ("submit", "false")],
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(early.contains("not opened"), "{early}");
    ok(
        &teacher,
        &server,
        "set-phase",
        &[("class_id", &id), ("phase", "quiz")],
    )
    .await;
    next_class_change(&mut stream).await;

    // A draft survives a reload; submitting hands it in.
    let draft = "Pretraining learns language in general; fine-tuning adapts it to our task.";
    ok(
        &zoe,
        &server,
        "save-answer",
        &[
            ("key", "fine-tuning-1"),
            ("text", draft),
            ("submit", "false"),
        ],
    )
    .await;
    let quiz = ok(&zoe, &server, "my-quiz", &[]).await;
    assert_eq!(quiz["state"], "Open");
    assert_eq!(quiz["items"].as_array().unwrap().len(), 16);
    assert_eq!(quiz["items"][0]["mine"]["draft"], draft);
    assert!(quiz["items"][0]["mine"]["answer"].is_null());
    let submitted = ok(
        &zoe,
        &server,
        "save-answer",
        &[
            ("key", "fine-tuning-1"),
            ("text", draft),
            ("submit", "true"),
        ],
    )
    .await;
    assert_eq!(submitted["mine"]["answer"], draft);
    assert!(submitted["mine"]["draft"].is_null());
    assert!(submitted["mine"]["submitted_at"].is_string());

    // Numbers and choices are graded at once.
    let steps = ok(
        &zoe,
        &server,
        "save-answer",
        &[
            ("key", "hyperparameters-1"),
            ("text", "100"),
            ("submit", "true"),
        ],
    )
    .await;
    assert_eq!(steps["mine"]["points"], 1.0);
    let wrong = ok(
        &sam,
        &server,
        "save-answer",
        &[
            ("key", "model-choice-2"),
            ("text", "BERT-base"),
            ("submit", "true"),
        ],
    )
    .await;
    assert_eq!(wrong["mine"]["points"], 0.0);
    let not_a_number = refused(
        &sam,
        &server,
        "save-answer",
        &[
            ("key", "hyperparameters-1"),
            ("text", "a hundred"),
            ("submit", "true"),
        ],
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(not_a_number.contains("number"), "{not_a_number}");

    // The instructor grades one question across the class, with feedback.
    let overview = ok(&teacher, &server, "grading-overview", &[("class_id", &id)]).await;
    assert_eq!(overview["class_name"], "Période 3 · NLP");
    let first = overview["questions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["item"]["key"] == "fine-tuning-1")
        .unwrap();
    assert_eq!(
        (first["submitted"].as_i64(), first["graded"].as_i64()),
        (Some(1), Some(0))
    );
    let queue = ok(
        &teacher,
        &server,
        "grading-queue",
        &[("class_id", &id), ("key", "fine-tuning-1")],
    )
    .await;
    let answer = &queue["answers"][0];
    assert_eq!(answer["student"], "Zoë 🦊");
    assert_eq!(answer["team"], "Red");
    let answer_id = answer["id"].as_i64().unwrap().to_string();
    ok(
        &teacher,
        &server,
        "grade-answer",
        &[
            ("answer_id", &answer_id),
            ("points", "1.5"),
            ("feedback", "Good; name the card-game analogy."),
        ],
    )
    .await;
    let graded = ok(&zoe, &server, "my-quiz", &[]).await;
    assert_eq!(graded["items"][0]["mine"]["points"], 1.5);
    assert_eq!(
        graded["items"][0]["mine"]["feedback"],
        "Good; name the card-game analogy."
    );

    // Standings: Red has 1.5 + 1 points for one member, Blue 0.
    let admin = ok(&teacher, &server, "class-admin", &[("class_id", &id)]).await;
    assert_eq!(admin["leaderboard"][0]["team"], "Red");
    assert_eq!(admin["leaderboard"][0]["points"], 2.5);

    // The CSV export holds the answers, quoted, with the grade.
    let csv = teacher
        .get(server.url(&format!("/instructor/classes/{class_id}/answers.csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(
        csv.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("team,student,question,"), "{csv}");
    assert!(csv.contains("\"Zoë 🦊\",\"fine-tuning-1\""), "{csv}");
    assert!(
        csv.contains(",1.5,2,\"Good; name the card-game analogy.\",\"instructor\""),
        "{csv}"
    );

    // Closing the quiz freezes the answers, live.
    ok(
        &teacher,
        &server,
        "set-quiz-closed",
        &[("class_id", &id), ("closed", "true")],
    )
    .await;
    next_class_change(&mut stream).await;
    let closed = refused(
        &zoe,
        &server,
        "save-answer",
        &[
            ("key", "fine-tuning-1"),
            ("text", "new"),
            ("submit", "true"),
        ],
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(closed.contains("closed"), "{closed}");
    assert_eq!(
        ok(&zoe, &server, "my-quiz", &[]).await["items"][0]["mine"]["answer"],
        draft
    );
}

#[tokio::test]
async fn each_role_reaches_only_its_own_pages_and_data() {
    roles_reach_only_their_own(None).await;
}

#[tokio::test]
async fn each_role_reaches_only_its_own_pages_and_data_on_postgres() {
    let database = PostgresDatabase::create().await;
    roles_reach_only_their_own(Some(&database)).await;
}

/// What each role may reach, on `database` (else SQLite).
async fn roles_reach_only_their_own(database: Option<&PostgresDatabase>) {
    let server = Server::start_on(database);
    let teacher = signed_in_instructor(&server, "teacher").await;
    let (class_id, code, teams) = class_with_teams(&teacher, &server).await;
    let id = class_id.to_string();
    let student = joined_student(&server, &code, "Ana", teams[0]).await;
    let other_team = joined_student(&server, &code, "Ben", teams[1]).await;
    let other_teacher = signed_in_instructor(&server, "someone-else").await;
    let anonymous = browser();

    ok(
        &teacher,
        &server,
        "set-phase",
        &[("class_id", &id), ("phase", "quiz")],
    )
    .await;
    let secret = "Ben's private answer about subwords";
    ok(
        &other_team,
        &server,
        "save-answer",
        &[
            ("key", "tokenization-1"),
            ("text", secret),
            ("submit", "true"),
        ],
    )
    .await;

    let instructor_calls: [(&str, Vec<(&str, &str)>); 7] = [
        ("class-admin", vec![("class_id", &id)]),
        ("set-phase", vec![("class_id", &id), ("phase", "study")]),
        ("add-team", vec![("class_id", &id), ("name", "Green")]),
        ("assign-topics", vec![("class_id", &id)]),
        (
            "set-quiz-closed",
            vec![("class_id", &id), ("closed", "true")],
        ),
        ("grading-overview", vec![("class_id", &id)]),
        (
            "grading-queue",
            vec![("class_id", &id), ("key", "tokenization-1")],
        ),
    ];
    for (endpoint, form) in &instructor_calls {
        refused(
            &anonymous,
            &server,
            endpoint,
            form,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        refused(&student, &server, endpoint, form, StatusCode::FORBIDDEN).await;
        // Another instructor's class answers exactly as a class that does not exist.
        let foreign = refused(
            &other_teacher,
            &server,
            endpoint,
            form,
            StatusCode::NOT_FOUND,
        )
        .await;
        let missing_form: Vec<(&str, &str)> = form
            .iter()
            .map(|&(k, v)| {
                if k == "class_id" {
                    (k, "987654")
                } else {
                    (k, v)
                }
            })
            .collect();
        let missing = refused(
            &other_teacher,
            &server,
            endpoint,
            &missing_form,
            StatusCode::NOT_FOUND,
        )
        .await;
        assert_eq!(foreign, missing, "{endpoint}");
    }
    refused(&student, &server, "my-classes", &[], StatusCode::FORBIDDEN).await;
    refused(
        &anonymous,
        &server,
        "my-classes",
        &[],
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        ok(&other_teacher, &server, "my-classes", &[]).await,
        serde_json::json!([])
    );

    // Grading someone else's class's answer is refused, and the grade does not change.
    let queue = ok(
        &teacher,
        &server,
        "grading-queue",
        &[("class_id", &id), ("key", "tokenization-1")],
    )
    .await;
    let answer_id = queue["answers"][0]["id"].as_i64().unwrap().to_string();
    let grade = [
        ("answer_id", answer_id.as_str()),
        ("points", "2"),
        ("feedback", ""),
    ];
    refused(
        &other_teacher,
        &server,
        "grade-answer",
        &grade,
        StatusCode::NOT_FOUND,
    )
    .await;
    refused(
        &student,
        &server,
        "grade-answer",
        &grade,
        StatusCode::FORBIDDEN,
    )
    .await;
    refused(
        &anonymous,
        &server,
        "grade-answer",
        &grade,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let unchanged = ok(
        &teacher,
        &server,
        "grading-queue",
        &[("class_id", &id), ("key", "tokenization-1")],
    )
    .await;
    assert!(unchanged["answers"][0]["points"].is_null());

    // Students: only their own answers, never another team's.
    for endpoint in ["my-class", "my-quiz"] {
        refused(&anonymous, &server, endpoint, &[], StatusCode::UNAUTHORIZED).await;
        refused(&teacher, &server, endpoint, &[], StatusCode::FORBIDDEN).await;
    }
    let quiz = ok(&student, &server, "my-quiz", &[]).await.to_string();
    assert!(
        !quiz.contains(secret),
        "a student saw another team's answer"
    );
    assert!(
        !quiz.contains("model_answer"),
        "students never get the model answers"
    );

    // The server's own routes check the same way.
    let csv = format!("/instructor/classes/{class_id}/answers.csv");
    for (client, expected) in [
        (&anonymous, StatusCode::UNAUTHORIZED),
        (&student, StatusCode::FORBIDDEN),
        (&other_teacher, StatusCode::NOT_FOUND),
    ] {
        let response = client.get(server.url(&csv)).send().await.unwrap();
        assert_eq!(response.status(), expected);
        assert!(!response.text().await.unwrap().contains(secret));
    }
    let events = format!("/api/class-events?class={class_id}");
    let status = |r: reqwest::Response| r.status();
    assert_eq!(
        status(anonymous.get(server.url(&events)).send().await.unwrap()),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(other_teacher.get(server.url(&events)).send().await.unwrap()),
        StatusCode::NOT_FOUND
    );

    // Instructor pages render their error for students and strangers, not the data.
    let page = student
        .get(server.url(&format!("/instructor/classes/{class_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(!page.text().await.unwrap().contains(&code));
    let page = anonymous
        .get(server.url("/instructor"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::UNAUTHORIZED);

    // Signing out ends the session.
    ok(&student, &server, "sign-out", &[]).await;
    refused(&student, &server, "my-class", &[], StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn bad_classroom_input_gets_a_clear_message() {
    let server = Server::start();
    let teacher = signed_in_instructor(&server, "teacher").await;
    let (class_id, code, teams) = class_with_teams(&teacher, &server).await;
    let id = class_id.to_string();

    // Sign-in.
    let wrong = refused(
        &browser(),
        &server,
        "sign-in",
        &[("username", "teacher"), ("password", "nope")],
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert!(wrong.contains("Wrong username or password"), "{wrong}");
    refused(
        &browser(),
        &server,
        "sign-in",
        &[("username", "nobody"), ("password", PASSWORD)],
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Joining.
    let team = teams[0].to_string();
    let long_name = "n".repeat(65);
    let cases: [(&str, &str, &str, StatusCode, &str); 6] = [
        ("", "Ana", &team, StatusCode::BAD_REQUEST, "join code"),
        (
            "ZZZZZZ",
            "Ana",
            &team,
            StatusCode::NOT_FOUND,
            "No class has the join code",
        ),
        (
            &code,
            "   ",
            &team,
            StatusCode::BAD_REQUEST,
            "cannot be empty",
        ),
        (
            &code,
            &long_name,
            &team,
            StatusCode::BAD_REQUEST,
            "at most 64",
        ),
        (
            &code,
            "Ana",
            "999999",
            StatusCode::BAD_REQUEST,
            "Pick one of this class's teams",
        ),
        (
            &code,
            "Ana",
            "two",
            StatusCode::BAD_REQUEST,
            "could not be read",
        ),
    ];
    for (code, name, team, status, message) in cases {
        let body = refused(
            &browser(),
            &server,
            "join-class",
            &[("code", code), ("display_name", name), ("team_id", team)],
            status,
        )
        .await;
        assert!(body.contains(message), "{code}/{name}/{team}: {body}");
    }
    joined_student(&server, &code, "Ana", teams[0]).await;
    let taken = refused(
        &browser(),
        &server,
        "join-class",
        &[("code", &code), ("display_name", "Ana"), ("team_id", &team)],
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(taken.contains("already called"), "{taken}");

    // Classes and teams.
    refused(
        &teacher,
        &server,
        "create-class",
        &[("name", "")],
        StatusCode::BAD_REQUEST,
    )
    .await;
    refused(
        &teacher,
        &server,
        "add-team",
        &[("class_id", &id), ("name", "Red")],
        StatusCode::BAD_REQUEST,
    )
    .await;
    refused(
        &teacher,
        &server,
        "set-phase",
        &[("class_id", &id), ("phase", "party")],
        StatusCode::BAD_REQUEST,
    )
    .await;
    refused(
        &teacher,
        &server,
        "class-admin",
        &[("class_id", "12345")],
        StatusCode::NOT_FOUND,
    )
    .await;
    let team_id = teams[0].to_string();
    refused(
        &teacher,
        &server,
        "assign-topic",
        &[("team_id", &team_id), ("slug", "knitting")],
        StatusCode::BAD_REQUEST,
    )
    .await;

    // Answers and grades; HTML in an answer stays text on the grading page.
    ok(
        &teacher,
        &server,
        "set-phase",
        &[("class_id", &id), ("phase", "quiz")],
    )
    .await;
    let student = joined_student(&server, &code, "Cleo", teams[1]).await;
    let huge = "a".repeat(5_001);
    let body = refused(
        &student,
        &server,
        "save-answer",
        &[("key", "lora-1"), ("text", &huge), ("submit", "true")],
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(body.contains("at most 5000"), "{body}");
    refused(
        &student,
        &server,
        "save-answer",
        &[("key", "nope-9"), ("text", "x"), ("submit", "true")],
        StatusCode::NOT_FOUND,
    )
    .await;
    refused(
        &student,
        &server,
        "save-answer",
        &[("key", "lora-1"), ("text", "   "), ("submit", "true")],
        StatusCode::BAD_REQUEST,
    )
    .await;
    let html = "<script>alert('hi')</script> LoRA trains small adapters";
    ok(
        &student,
        &server,
        "save-answer",
        &[("key", "lora-1"), ("text", html), ("submit", "true")],
    )
    .await;
    let page = page_html(
        &teacher,
        &server,
        &format!("/instructor/classes/{class_id}/grading/lora-1"),
    )
    .await;
    let markup = without_scripts(&page);
    assert!(
        markup.contains(
            "&lt;script&gt;alert(&#x27;hi&#x27;)&lt;/script&gt; LoRA trains small adapters"
        ) || markup.contains("&lt;script&gt;alert('hi')&lt;/script&gt; LoRA trains small adapters"),
        "the answer is on the page as escaped text"
    );
    assert!(
        !markup.contains("<script>alert"),
        "student HTML must not reach the page as HTML"
    );
    assert!(
        markup.contains("<leptos-island data-component=\"AnswerQueue_"),
        "the answers and their grading forms are an island"
    );
    let classes = page_html(&teacher, &server, "/instructor").await;
    assert!(
        classes.contains("<leptos-island data-component=\"ClassList_"),
        "the class list is an island"
    );
    let class_page = page_html(
        &teacher,
        &server,
        &format!("/instructor/classes/{class_id}"),
    )
    .await;
    for island in ["ClassDashboard_", "ClassClaimsPanel_", "ClassRuns_"] {
        assert!(
            class_page.contains(&format!("<leptos-island data-component=\"{island}")),
            "the class page's {island} is an island"
        );
    }
    // The student's own quiz page carries the answer in the props of the island that brings
    // the quiz to life, escaped there too.
    let markup = without_scripts(&page_html(&student, &server, "/quiz").await);
    assert!(
        markup.contains("<leptos-island data-component=\"LiveQuiz_"),
        "the quiz is an island"
    );
    assert!(
        markup.contains("&lt;script&gt;alert("),
        "the answer is in the island's props as escaped text"
    );
    assert!(
        !markup.contains("<script>alert"),
        "student HTML must not reach the quiz page as HTML"
    );
    let queue = ok(
        &teacher,
        &server,
        "grading-queue",
        &[("class_id", &id), ("key", "lora-1")],
    )
    .await;
    let answer_id = queue["answers"][0]["id"].as_i64().unwrap().to_string();
    for points in ["NaN", "-1", "3", "lots"] {
        refused(
            &teacher,
            &server,
            "grade-answer",
            &[
                ("answer_id", &answer_id),
                ("points", points),
                ("feedback", ""),
            ],
            StatusCode::BAD_REQUEST,
        )
        .await;
    }

    // Wrong join codes are rate-limited per address.
    let mut last = String::new();
    for _ in 0..12 {
        last = call(&browser(), &server, "find-class", &[("code", "WRONG1")])
            .await
            .1;
    }
    assert!(last.contains("Too many wrong join codes"), "{last}");
}
