// Starts a real jigsaw-lab server on a free port with a temporary data directory, and a
// headless Debian Chromium with a fresh profile, for the browser tests.
import { execFile, spawn } from "node:child_process";
import { mkdtemp, mkdir, rm } from "node:fs/promises";
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

/** Starts the server binary; resolves with its base URL once it announces it. */
export async function startServer(extraEnv = {}) {
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
  const child = spawn(binary, ["serve"], { cwd: dataDir, env, stdio: ["ignore", "pipe", "inherit"] });
  const baseUrl = await new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error("the server did not start within 60 s")), 60_000);
    child.once("exit", (code) => reject(new Error(`the server exited early with code ${code}`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const match = line.match(/^Jigsaw Lab listening on (http:\/\/\S+)$/);
      if (match) {
        clearTimeout(timer);
        resolvePromise(match[1]);
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
