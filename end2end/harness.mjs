// Starts a real jigsaw-lab server on a free port with a temporary data directory, and a
// headless Debian Chromium with a fresh profile, for the browser tests.
import { execFile, spawn } from "node:child_process";
import { mkdtemp, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..");

/** Where screenshots go. */
export const outputDir = join(here, "output");

/** The flags the classroom machine needs: no sandbox as root, no GPU, no network chatter. */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Starts the server binary (`jigsaw-lab serve`); resolves with its base URL once it
 * announces it. With `{ worker: true }` it starts `jigsaw-lab worker` instead, which serves
 * no pages, and resolves once its start-up line says it is a worker node.
 */
export async function startServer(extraEnv = {}, { worker = false } = {}) {
  const binary = process.env.JIGSAW_BIN;
  if (!binary) throw new Error("JIGSAW_BIN must name the built jigsaw-lab binary (make test sets it)");
  const dataDir = await mkdtemp(join(tmpdir(), "jigsaw-e2e-"));
  const env = {
    PATH: process.env.PATH,
    JIGSAW_BIND: "127.0.0.1:0",
    JIGSAW_DATA_DIR: dataDir,
    JIGSAW_MODELS_DIR: process.env.JIGSAW_MODELS_DIR ?? join(repo, "data", "models"),
    JIGSAW_SITE_ROOT: process.env.JIGSAW_TEST_SITE_ROOT ?? join(repo, "target", "site"),
    JIGSAW_DEVICE: "cpu",
    RUST_LOG: "warn",
    ...extraEnv,
  };
  const child = spawn(binary, [worker ? "worker" : "serve"], { cwd: dataDir, env, stdio: ["ignore", "pipe", "inherit"] });
  const baseUrl = await new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error("the server did not start within 60 s")), 60_000);
    child.once("exit", (code) => reject(new Error(`the server exited early with code ${code}`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const match = worker
        ? line.match(/^(Jigsaw Lab worker node): /)
        : line.match(/^Jigsaw Lab listening on (http:\/\/\S+)$/);
      if (match) {
        clearTimeout(timer);
        resolvePromise(worker ? null : match[1]);
      }
    });
  });
  return {
    baseUrl,
    /** The server's data directory (its SQLite database lives here). */
    dataDir,
    /** The environment the server runs with, for terminal commands against the same data. */
    env,
    binary,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Creates an instructor account the way a teacher does, on the terminal:
 * `JIGSAW_INSTRUCTOR_PASSWORD=... jigsaw-lab instructor add USERNAME`, with the server's
 * settings and data directory. Resolves with the command's standard output.
 */
export async function addInstructor(server, username, password) {
  return await new Promise((resolvePromise, reject) => {
    execFile(
      server.binary,
      ["instructor", "add", username],
      { cwd: server.dataDir, env: { ...server.env, JIGSAW_INSTRUCTOR_PASSWORD: password }, timeout: 60_000 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`instructor add ${username} failed (${error.message}): ${stderr}`));
        else resolvePromise(stdout);
      },
    );
  });
}

/** Launches headless Chromium with a fresh user-data directory. */
export async function startBrowser() {
  const profile = await mkdtemp(join(tmpdir(), "jigsaw-chromium-"));
  await mkdir(outputDir, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1200, height: 900 },
  });
  return {
    context,
    async stop() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** Resolves once the WebAssembly app has hydrated the page. */
export async function waitForHydration(page) {
  await page.waitForFunction(() => document.body.dataset.hydrated === "true", null, { timeout: 30_000 });
}

/**
 * A models folder (the default model and the tiny random BERT of the engine's tests) and a
 * small SST-2-style set whose sentiment follows from its words, in a temporary folder.
 * Each sentence comes in every phrasing of `phrasings` ("was", "was really", …), for each
 * of the first `subjectCount` subjects; more makes a longer run.
 */
export async function trainingAssets({ subjectCount, phrasings }) {
  const root = await mkdtemp(join(tmpdir(), "jigsaw-e2e-assets-"));
  const models = join(root, "models");
  await mkdir(models);
  const realModels = process.env.JIGSAW_MODELS_DIR ?? join(repo, "data", "models");
  await symlink(join(realModels, "all-MiniLM-L6-v2"), join(models, "all-MiniLM-L6-v2"));
  await symlink(join(repo, "trainer", "tests", "fixtures", "tiny-bert"), join(models, "tiny-bert"));
  const sst2 = join(root, "sst2");
  await mkdir(sst2);
  const positive = ["good", "great", "funny", "charming", "beautiful", "witty", "smart", "sweet"];
  const negative = ["bad", "boring", "dull", "worst", "stale", "slow", "sad", "worse"];
  const subjects = [
    "the movie", "this film", "the story", "the cast", "the script", "the music",
    "the plot", "the acting", "the ending", "the dialogue", "the soundtrack", "the director",
  ].slice(0, subjectCount);
  let train = "sentence\tlabel\n";
  let dev = "sentence\tlabel\n";
  subjects.forEach((subject, i) => {
    positive.forEach((good, j) => {
      const rows = phrasings
        .map((verb) => `${subject} ${verb} ${good} .\t1\n${subject} ${verb} ${negative[j]} .\t0\n`)
        .join("");
      if ((i + j) % 5 === 0) dev += rows;
      else train += rows;
    });
  });
  await writeFile(join(sst2, "train.tsv"), train);
  await writeFile(join(sst2, "dev.tsv"), dev);
  await writeFile(join(sst2, "test.tsv"), "index\tsentence\n0\tthe movie was good .\n");
  return { root, models, sst2 };
}

/** Calls a server function as `browser` with a form; resolves with its JSON answer (or null). */
export async function post(server, browser, path, form) {
  const response = await browser.context.request.post(server.baseUrl + path, { form, maxRedirects: 0 });
  assert.ok(response.status() < 400, `${path}: ${response.status()} ${await response.text()}`);
  return response.headers()["content-type"]?.includes("json") ? response.json() : null;
}

/**
 * A teacher and a student, each in a browser of their own that collects its pages' errors
 * in `pageErrors`: the teacher (instructor "teacher") signed in with a class named
 * `className` that has the teams `teams`, moved to `phase` when given, and the student Ana
 * joined to the first team. Resolves with `{ teacher, student, classId }`.
 */
export async function classWithStudent(server, { className, teams = ["Red"], phase, pageErrors }) {
  const teacher = await startBrowser();
  const student = await startBrowser();
  for (const browser of [teacher, student]) {
    browser.context.on("page", (page) => page.on("pageerror", (e) => pageErrors.push(e.message)));
  }
  await addInstructor(server, "teacher", "correct horse battery");
  await post(server, teacher, "/api/sign-in", { username: "teacher", password: "correct horse battery" });
  const created = await post(server, teacher, "/api/create-class", { name: className });
  for (const name of teams) await post(server, teacher, "/api/add-team", { class_id: String(created.id), name });
  if (phase) await post(server, teacher, "/api/set-phase", { class_id: String(created.id), phase });
  const preview = await post(server, student, "/api/find-class", { code: created.join_code });
  await post(server, student, "/api/join-class", { code: created.join_code, display_name: "Ana", team_id: String(preview.teams[0].id) });
  return { teacher, student, classId: created.id };
}
