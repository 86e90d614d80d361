//! The instructor's Models page and `jigsaw-lab models`: adding a model from an uploaded zip
//! (checked by the engine before teams see it), refusing bad zips with a clear message and
//! nothing left behind, listing what each model is, and removing one.

mod support;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::Value;

use std::path::{Path, PathBuf};
use support::*;

/// A tiny random checkpoint the engine's parity tests use.
fn fixture(name: &str) -> PathBuf {
    repo_root().join("trainer/tests/fixtures").join(name)
}

/// A models folder holding only the default model (linked, not copied) and the leftovers
/// of an interrupted upload, and a server on it that accepts zips of at most 1 MB.
fn server_with_own_models() -> (Server, tempfile::TempDir) {
    let temp = tempfile::tempdir().unwrap();
    let models = temp.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::os::unix::fs::symlink(
        models_dir().join("all-MiniLM-L6-v2"),
        models.join("all-MiniLM-L6-v2"),
    )
    .unwrap();
    // What a server stopped in the middle of an upload leaves, swept at start.
    std::fs::create_dir(models.join(".adding-stale-1-1")).unwrap();
    std::fs::write(models.join(".upload-1-1.zip"), b"partial").unwrap();
    let data = temp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let server = Server::start_in_with(
        &data,
        &[
            ("JIGSAW_MODELS_DIR", models.display().to_string()),
            ("JIGSAW_MAX_MODEL_UPLOAD_MB", "1".into()),
        ],
    );
    (server, temp)
}

/// The files of the folder `dir`, under `prefix` in the zip.
fn folder_files(dir: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .map(|file| {
            (
                format!("{prefix}{file}"),
                std::fs::read(dir.join(file)).unwrap(),
            )
        })
        .collect()
}

/// Posts the Models page's upload form; returns the status and where it redirects.
async fn upload(
    client: &reqwest::Client,
    server: &Server,
    name: &str,
    zip: &[u8],
) -> (StatusCode, String) {
    let boundary = "jigsaw-test-boundary-7d1e";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"archive\"; filename=\"model.zip\"\r\nContent-Type: application/zip\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(zip);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = client
        .post(server.url("/instructor/models"))
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (response.status(), location)
}

/// What the Models page tells after an upload (kept in the session, told once).
async fn told(client: &reqwest::Client, server: &Server) -> Value {
    ok(client, server, "models", &[]).await["outcome"].clone()
}

/// Uploads `zip` as `name` and returns the problem the page then tells.
async fn upload_problem(
    client: &reqwest::Client,
    server: &Server,
    name: &str,
    zip: &[u8],
) -> String {
    let (status, location) = upload(client, server, name, zip).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/instructor/models")
    );
    let told = told(client, server).await;
    told["Problem"]
        .as_str()
        .unwrap_or_else(|| panic!("not a problem: {told}"))
        .to_string()
}

/// The Models page's entries by name.
async fn models(client: &reqwest::Client, server: &Server) -> Vec<Value> {
    ok(client, server, "models", &[]).await["models"]
        .as_array()
        .unwrap()
        .clone()
}

/// Hidden folders and files (uploads, models being added) left in the models folder.
fn leftovers(models: &Path) -> Vec<String> {
    std::fs::read_dir(models)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect()
}

#[tokio::test]
async fn instructors_add_check_list_and_remove_models() {
    let (server, temp) = server_with_own_models();
    let models_folder = temp.path().join("models");
    let teacher = signed_in_instructor(&server, "ms.okafor").await;
    assert_eq!(
        leftovers(&models_folder),
        Vec::<String>::new(),
        "swept at start"
    );

    // A zip of an HF folder inside a folder, as a teacher zips a download.
    let zip = zip_of(&folder_files(&fixture("tiny-electra"), "tiny-electra/"));
    let (status, location) = upload(&teacher, &server, "electra-tiny", &zip).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    assert_eq!(location, "/instructor/models");
    assert_eq!(told(&teacher, &server).await["Done"], "electra-tiny");
    assert!(
        told(&teacher, &server).await.is_null(),
        "told once, not on the next read"
    );
    let listed = models(&teacher, &server).await;
    let electra = listed.iter().find(|m| m["name"] == "electra-tiny").unwrap();
    let facts = &electra["summary"]["Ok"];
    assert_eq!(facts["family"], "Electra", "{electra}");
    assert_eq!(
        (facts["vocab_size"].as_u64(), facts["max_len"].as_u64()),
        (Some(291), Some(64))
    );
    assert!(facts["params"].as_u64().unwrap() > 20_000, "{facts}");
    assert_eq!(electra["active_runs"], 0);
    let default = listed
        .iter()
        .find(|m| m["name"] == "all-MiniLM-L6-v2")
        .unwrap();
    assert_eq!(default["is_default"], true);
    assert_eq!(default["summary"]["Ok"]["family"], "Bert");

    // A DeBERTa-v3 checkpoint with only pytorch_model.bin loads too.
    let deberta = fixture("tiny-deberta-v3");
    let zip = zip_of(&[
        (
            "config.json",
            std::fs::read(deberta.join("config.json")).unwrap(),
        ),
        (
            "tokenizer.json",
            std::fs::read(deberta.join("tokenizer.json")).unwrap(),
        ),
        (
            "pytorch_model.bin",
            std::fs::read(deberta.join("pytorch_model.bin")).unwrap(),
        ),
    ]);
    upload(&teacher, &server, "deberta-tiny", &zip).await;
    assert_eq!(told(&teacher, &server).await["Done"], "deberta-tiny");

    // Students see the new models on the run form, with their family.
    let (_, code, teams) = class_with_teams(&teacher, &server).await;
    let student = joined_student(&server, &code, "Ana", teams[0]).await;
    let form = ok(&student, &server, "run-form", &[]).await;
    let families: Vec<(String, String)> = form["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().into(),
                m["family"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        families.contains(&("electra-tiny".into(), "Electra".into())),
        "{families:?}"
    );
    assert!(
        families.contains(&("deberta-tiny".into(), "DebertaV2".into())),
        "{families:?}"
    );

    // Bad uploads: each refused with a message that says what is wrong, nothing kept.
    let slip = zip_of(&[
        (
            "config.json",
            std::fs::read(fixture("tiny-bert/config.json")).unwrap(),
        ),
        ("../escaped.txt", b"outside".to_vec()),
    ]);
    let problem = upload_problem(&teacher, &server, "slip", &slip).await;
    assert!(problem.contains("outside its folder"), "{problem}");
    assert!(!temp.path().join("escaped.txt").exists());
    let no_weights = zip_of(&folder_files(&fixture("tiny-bert"), "")[..1]);
    let problem = upload_problem(&teacher, &server, "no-weights", &no_weights).await;
    assert!(
        problem.contains("has no model.safetensors or pytorch_model.bin and no tokenizer.json: use the whole folder"),
        "{problem}"
    );
    let mut truncated = folder_files(&fixture("tiny-bert"), "");
    let weights = &mut truncated[1].1;
    weights.truncate(weights.len() / 2);
    let problem = upload_problem(&teacher, &server, "truncated", &zip_of(&truncated)).await;
    assert!(
        problem.starts_with("This model cannot be used:") && problem.contains("truncated"),
        "{problem}"
    );
    let mut two = folder_files(&fixture("tiny-bert"), "a/");
    two.extend(folder_files(&fixture("tiny-roberta"), "b/"));
    let problem = upload_problem(&teacher, &server, "two", &zip_of(&two)).await;
    assert!(
        problem.contains("holds several models (\u{201c}a\u{201d} and \u{201c}b\u{201d})"),
        "{problem}"
    );
    let problem = upload_problem(&teacher, &server, "not-a-zip", b"hello").await;
    assert!(problem.contains("is it a .zip file?"), "{problem}");
    let problem = upload_problem(&teacher, &server, "../up", &zip).await;
    assert!(problem.contains("cannot be a model's name"), "{problem}");
    let problem = upload_problem(&teacher, &server, "electra-tiny", &zip).await;
    assert!(problem.contains("already a model called"), "{problem}");
    let big: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let problem = upload_problem(&teacher, &server, "big", &big).await;
    assert!(
        problem.contains("larger than the 1 MB allowed"),
        "{problem}"
    );
    assert_eq!(leftovers(&models_folder), Vec::<String>::new());
    assert_eq!(models(&teacher, &server).await.len(), 3);

    // Students cannot upload or remove models.
    let (status, _) = upload(&student, &server, "sneaky", &slip).await;
    assert!(
        matches!(status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED),
        "{status}"
    );
    refused(
        &student,
        &server,
        "remove-model",
        &[("name", "electra-tiny")],
        StatusCode::FORBIDDEN,
    )
    .await;

    // Removing: not the default model, not a missing one; the others go.
    let message = refused(
        &teacher,
        &server,
        "remove-model",
        &[("name", "all-MiniLM-L6-v2")],
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("default model"), "{message}");
    refused(
        &teacher,
        &server,
        "remove-model",
        &[("name", "nothing")],
        StatusCode::NOT_FOUND,
    )
    .await;
    ok(
        &teacher,
        &server,
        "remove-model",
        &[("name", "electra-tiny")],
    )
    .await;
    let names: Vec<String> = models(&teacher, &server)
        .await
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["all-MiniLM-L6-v2", "deberta-tiny"]);
    assert!(!models_folder.join("electra-tiny").exists());
    assert_eq!(leftovers(&models_folder), Vec::<String>::new());
}

#[test]
fn the_terminal_adds_lists_and_removes_models() {
    let (server, temp) = server_with_own_models();
    let run = |args: &[&str]| {
        let output = server.command().args(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let folder = fixture("tiny-roberta");
    let (status, out, err) = run(&["models", "add", folder.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{err}");
    assert!(out.starts_with("Added tiny-roberta: RoBERTa"), "{out}");
    let (_, out, _) = run(&["models", "list"]);
    assert!(
        out.lines().any(|l| l.starts_with("tiny-roberta  RoBERTa")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("all-MiniLM-L6-v2  BERT") && l.ends_with("(default)")),
        "{out}"
    );
    let (status, _, err) = run(&["models", "add", folder.to_str().unwrap()]);
    assert_eq!(status, Some(2));
    assert!(err.contains("already a model called"), "{err}");
    let (status, _, err) = run(&["models", "add", "/nonexistent/model.zip", "--name", "x"]);
    assert_eq!(status, Some(2));
    assert!(err.contains("jigsaw-lab models:"), "{err}");
    let (status, out, err) = run(&["models", "remove", "tiny-roberta"]);
    assert_eq!(status, Some(0), "{err}");
    assert_eq!(out.trim(), "Removed tiny-roberta.");
    assert!(!temp.path().join("models/tiny-roberta").exists());
}
