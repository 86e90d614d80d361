//! The training data from the instructor's pages and `jigsaw-lab data`: a server without
//! SST-2 says so to the instructor and refuses runs with a clear message; an upload of
//! GLUE's zip or the three files is checked and installed atomically, bad uploads are
//! refused with a message naming the file and nothing changes; then runs train.

mod support;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use support::training::*;
use support::*;

/// One part of a multipart form: field name, file name and bytes.
type Part<'a> = (&'a str, &'a str, Vec<u8>);

/// Posts the Training data page's upload form; returns the status and where it redirects.
async fn upload(
    client: &reqwest::Client,
    server: &Server,
    parts: &[Part<'_>],
) -> (StatusCode, String) {
    let boundary = "jigsaw-data-boundary-51c2";
    let mut body = Vec::new();
    for (field, file, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let response = client
        .post(server.url("/instructor/data"))
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

/// What the Training data page tells after an upload (kept in the session, told once).
async fn told(client: &reqwest::Client, server: &Server) -> Value {
    ok(client, server, "training-data", &[]).await["outcome"].clone()
}

/// Posts `parts` and returns the problem the page then tells.
async fn upload_problem(client: &reqwest::Client, server: &Server, parts: &[Part<'_>]) -> String {
    let (status, location) = upload(client, server, parts).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/instructor/data")
    );
    let told = told(client, server).await;
    told["Problem"]
        .as_str()
        .unwrap_or_else(|| panic!("not a problem: {told}"))
        .to_string()
}

/// The three files of the SST-2 folder `dir`, under `prefix`, as GLUE's zip holds them.
fn sst2_files(dir: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    ["train.tsv", "dev.tsv", "test.tsv"]
        .iter()
        .map(|name| {
            (
                format!("{prefix}{name}"),
                std::fs::read(dir.join(name)).unwrap(),
            )
        })
        .collect()
}

/// Entries beside the data folder that an upload or install left behind.
fn leftovers(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".sst2-"))
        .collect()
}

#[tokio::test]
async fn a_server_without_sst2_says_so_refuses_runs_and_installs_an_upload() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    let env = training_env(root, None);
    // The synthetic SST-2 is moved away: the server starts without data, as on a new
    // machine, and the teacher uploads it later. A stale staging folder is swept at start.
    let source = root.join("download");
    std::fs::rename(root.join("sst2"), &source).unwrap();
    std::fs::create_dir(root.join(".sst2-adding--1-1")).unwrap();
    let class = classroom(&root.join("data"), &env).await;
    let (server, teacher, student) = (&class.server, &class.teacher, &class.red);
    assert_eq!(leftovers(root), Vec::<String>::new(), "swept at start");

    // The instructor sees plainly that data is missing; the students' form says why it
    // cannot queue, and the server refuses a run with the same words and no path.
    let missing = ok(teacher, server, "training-data-missing", &[]).await;
    assert!(
        missing
            .as_str()
            .unwrap()
            .contains("train.tsv, dev.tsv and test.tsv are missing"),
        "{missing}"
    );
    let page = ok(teacher, server, "training-data", &[]).await;
    assert!(page["status"]["Err"].is_string(), "{page}");
    let form = ok(student, server, "run-form", &[]).await;
    let notice = form["data_missing"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        notice.contains("not installed on the class server"),
        "{form}"
    );
    let refusal = refused(
        student,
        server,
        "submit-run",
        &run_form(&[]),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(refusal.contains("Ask your instructor"), "{refusal}");
    assert!(!refusal.contains(&root.display().to_string()), "{refusal}");
    let health: Value = client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        health["training_data"]
            .as_str()
            .is_some_and(|problem| problem.contains("not installed")),
        "{health}"
    );

    // Bad uploads: each refused in words that name the file; nothing installed.
    let good = sst2_files(&source, "SST-2/");
    let cases: Vec<(Vec<Part>, &str)> = vec![
        (
            vec![("archive", "SST-2.zip", b"not a zip at all".to_vec())],
            "is it a .zip file?",
        ),
        (
            vec![("archive", "SST-2.zip", zip_of(&good[..2]))],
            "has no test.tsv",
        ),
        (
            vec![(
                "archive",
                "SST-2.zip",
                zip_of(&[
                    ("SST-2/train.tsv", b"text\tlabel\nfine\t1\n".to_vec()),
                    ("SST-2/dev.tsv", good[1].1.clone()),
                    ("SST-2/test.tsv", good[2].1.clone()),
                ]),
            )],
            "train.tsv, line 1: expected the header",
        ),
        (
            vec![(
                "archive",
                "SST-2.zip",
                zip_of(&[
                    ("SST-2/train.tsv", good[0].1.clone()),
                    (
                        "SST-2/dev.tsv",
                        b"sentence\tlabel\na fine film\tpositive\n".to_vec(),
                    ),
                    ("SST-2/test.tsv", good[2].1.clone()),
                ]),
            )],
            "dev.tsv, line 2: the label must be 0 or 1",
        ),
        (
            vec![(
                "archive",
                "both.zip",
                zip_of(&[
                    ("a/train.tsv", good[0].1.clone()),
                    ("b/train.tsv", good[0].1.clone()),
                    ("a/dev.tsv", good[1].1.clone()),
                    ("a/test.tsv", good[2].1.clone()),
                ]),
            )],
            "holds two copies of train.tsv",
        ),
        (
            vec![
                ("files", "train.tsv", good[0].1.clone()),
                ("files", "dev.tsv", good[1].1.clone()),
            ],
            "The upload has no test.tsv",
        ),
        (
            vec![("files", "reviews.csv", b"a,b".to_vec())],
            "\u{201c}reviews.csv\u{201d} is not one of SST-2's files",
        ),
        (vec![], "Choose GLUE's SST-2.zip"),
    ];
    for (parts, expected) in cases {
        let problem = upload_problem(teacher, server, &parts).await;
        assert!(
            problem.contains(expected),
            "expected {expected:?} in {problem:?}"
        );
        assert!(
            !root.join("sst2").exists(),
            "nothing installed after {expected:?}"
        );
    }
    // A zip bomb: 300 MB of one byte, a few hundred KB zipped, stopped while unpacking.
    let mut bomb = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    bomb.start_file(
        "SST-2/train.tsv",
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true),
    )
    .unwrap();
    let block = vec![b'a'; 1 << 20];
    for _ in 0..300 {
        bomb.write_all(&block).unwrap();
    }
    for (name, bytes) in &good[1..] {
        bomb.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        bomb.write_all(bytes).unwrap();
    }
    let bomb = bomb.finish().unwrap().into_inner();
    assert!(bomb.len() < 2 << 20, "{}", bomb.len());
    let problem = upload_problem(teacher, server, &[("archive", "SST-2.zip", bomb)]).await;
    assert!(problem.contains("unpacks to more than 256 MB"), "{problem}");
    assert!(!root.join("sst2").exists());
    assert_eq!(leftovers(root), Vec::<String>::new());

    // Students cannot upload data.
    let (status, _) = upload(student, server, &[("archive", "SST-2.zip", zip_of(&good))]).await;
    assert!(
        matches!(status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED),
        "{status}"
    );

    // GLUE's zip, with its `original/` folder beside the files: installed and checked.
    let mut glue_like = good.clone();
    glue_like.push((
        "SST-2/original/README.txt".to_string(),
        b"the treebank's own files".to_vec(),
    ));
    let (status, location) = upload(
        teacher,
        server,
        &[("archive", "SST-2.zip", zip_of(&glue_like))],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/instructor/data")
    );
    let page = ok(teacher, server, "training-data", &[]).await;
    assert_eq!(page["outcome"]["Done"], "76", "{page}");
    let facts = &page["status"]["Ok"];
    assert_eq!(
        (
            facts["train_rows"].as_u64(),
            facts["dev_rows"].as_u64(),
            facts["test_rows"].as_u64()
        ),
        (Some(76), Some(20), Some(1)),
        "{page}"
    );
    assert_eq!(facts["glue_release"], false);
    assert!(
        ok(teacher, server, "training-data-missing", &[])
            .await
            .is_null()
    );
    assert_eq!(
        std::fs::read(root.join("sst2/train.tsv")).unwrap(),
        std::fs::read(source.join("train.tsv")).unwrap()
    );
    assert!(
        !root.join("sst2/original").exists(),
        "only the three files are kept"
    );

    // Runs queue and train now; while one is active the data cannot be replaced.
    assert!(ok(student, server, "run-form", &[]).await["data_missing"].is_null());
    let run_id = submit(student, server, &[("epochs", "2")]).await;
    let named = sst2_files(&source, "");
    let files: Vec<Part> = named
        .iter()
        .map(|(name, bytes)| ("files", name.as_str(), bytes.clone()))
        .collect();
    let problem = upload_problem(teacher, server, &files).await;
    assert!(
        problem.contains("waiting or training on the data installed now"),
        "{problem}"
    );
    let run = wait_for_end(student, server, run_id, Duration::from_secs(180)).await;
    assert_eq!(run["status"], "succeeded", "{run}");

    // With the queue empty, the three files replace it.
    upload(teacher, server, &files).await;
    assert_eq!(told(teacher, server).await["Done"], "76");
    assert_eq!(leftovers(root), Vec::<String>::new());
    let health: Value = client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["training_data"], "ok", "{health}");
}

#[test]
fn the_terminal_checks_and_installs_sst2() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let target = temp.path().join("sst2");
    let run = |args: &[&str]| {
        let output = command(&data_dir)
            .env("JIGSAW_SST2_DIR", &target)
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (status, out, _) = run(&["data", "status"]);
    assert_eq!(status, Some(1));
    assert!(
        out.contains("runs cannot use it") && out.contains("jigsaw-lab data add"),
        "{out}"
    );
    let (status, _, err) = run(&["data", "add", "/nonexistent/SST-2.zip"]);
    assert_eq!(status, Some(2));
    assert!(
        err.contains("jigsaw-lab data: /nonexistent/SST-2.zip does not exist"),
        "{err}"
    );

    // The real GLUE files, zipped as GLUE distributes them, are recognised by their sha256.
    let real = std::env::var_os("JIGSAW_SST2_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data/sst2"));
    let zip_path = temp.path().join("SST-2.zip");
    std::fs::write(&zip_path, zip_of(&sst2_files(&real, "SST-2/"))).unwrap();
    let (status, out, err) = run(&["data", "add", zip_path.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{err}");
    assert!(out.contains("train 67349 sentences"), "{out}");
    assert!(
        out.contains("the GLUE release, verified by sha256"),
        "{out}"
    );
    let (status, out, _) = run(&["data", "status"]);
    assert_eq!(status, Some(0));
    assert!(out.contains("dev 872, test 1821"), "{out}");

    // A folder of 76 sentences does not fit the default validation split (2,000): it is
    // refused and the GLUE files stay.
    let synthetic = temp.path().join("synthetic");
    write_synthetic_sst2(&synthetic);
    let (status, out, err) = run(&["data", "add", synthetic.to_str().unwrap()]);
    assert_eq!(status, Some(2), "{out}");
    assert!(
        err.contains("train.tsv holds 76 sentences; runs need at least 2032"),
        "{err}"
    );
    let (status, out, _) = run(&["data", "status"]);
    assert_eq!(status, Some(0));
    assert!(
        out.contains("the GLUE release, verified by sha256"),
        "{out}"
    );

    // With a validation split of 16 it fits, and replaces them, reported as not GLUE's.
    let output = command(&data_dir)
        .env("JIGSAW_SST2_DIR", &target)
        .env("JIGSAW_VALIDATION_SIZE", "16")
        .args(["data", "add", synthetic.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains("train 76 sentences") && out.contains("not the GLUE release"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(target.join("dev.tsv")).unwrap(),
        std::fs::read(synthetic.join("dev.tsv")).unwrap()
    );
}

/// A server stopped between an install's two renames left the data folder missing and the
/// copy it was replacing aside: the next start puts that copy back.
#[tokio::test]
async fn a_start_puts_back_data_an_interrupted_install_moved_aside() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    let env = training_env(root, None);
    std::fs::rename(root.join("sst2"), root.join(".sst2-replaced--1-1")).unwrap();
    std::fs::create_dir(root.join(".sst2-adding--1-2")).unwrap();
    let data_dir = root.join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let server = Server::start_in_with(&data_dir, &env);
    let teacher = signed_in_instructor(&server, "teacher").await;
    let page = ok(&teacher, &server, "training-data", &[]).await;
    assert_eq!(page["status"]["Ok"]["train_rows"], 76, "{page}");
    assert_eq!(leftovers(root), Vec::<String>::new());
}
