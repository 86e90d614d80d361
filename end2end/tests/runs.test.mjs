// A team fine-tunes a model from the browser: the run form (with its out-of-range hints),
// the live loss curve growing without a reload, the whole curve again after a reload,
// cancelling a second run, and the public leaderboard. It trains the tiny random BERT of
// the engine's tests on a small synthetic sentiment set, on the CPU.
// Screenshots: end2end/output/runs-*.png.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { addInstructor, outputDir, startBrowser, startServer, waitForHydration } from "../harness.mjs";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
let server;
let teacher;
let student;
let assets;
const pageErrors = [];

/** The default model plus the tiny BERT, and a small SST-2-style set whose sentiment follows from its words. */
async function trainingAssets() {
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
  // Enough sentences that the run is still training when its page first draws the curve
  // (the test watches the curve grow), even on a fast machine.
  const subjects = [
    "the movie", "this film", "the story", "the cast", "the script", "the music",
    "the plot", "the acting", "the ending", "the dialogue", "the soundtrack", "the director",
  ];
  let train = "sentence\tlabel\n";
  let dev = "sentence\tlabel\n";
  // Six phrasings of each sentence: a run of 20 epochs then lasts several seconds on a
  // fast machine. With half as many (2026-11), and again with three (2026-12-04, 2 of 5
  // full-suite runs on the 2-core machine), the run sometimes finished before its page drew
  // the curve, and the curve could not be seen to grow.
  const phrasings = ["was", "was really", "was truly", "was quite", "was just", "was so"];
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

async function post(browser, path, form) {
  const response = await browser.context.request.post(server.baseUrl + path, { form, maxRedirects: 0 });
  assert.ok(response.status() < 400, `${path}: ${response.status()} ${await response.text()}`);
  return response.headers()["content-type"]?.includes("json") ? response.json() : null;
}

function points(svgPolyline) {
  return svgPolyline ? svgPolyline.trim().split(/\s+/).length : 0;
}

before(async () => {
  assets = await trainingAssets();
  server = await startServer({
    JIGSAW_MODELS_DIR: assets.models,
    JIGSAW_SST2_DIR: assets.sst2,
    JIGSAW_VALIDATION_SIZE: "16",
  });
  teacher = await startBrowser();
  student = await startBrowser();
  for (const browser of [teacher, student]) {
    browser.context.on("page", (page) => page.on("pageerror", (e) => pageErrors.push(e.message)));
  }
  await addInstructor(server, "teacher", "correct horse battery");
  await post(teacher, "/api/sign-in", { username: "teacher", password: "correct horse battery" });
  const created = await post(teacher, "/api/create-class", { name: "Runs class" });
  for (const name of ["Red", "Blue"]) await post(teacher, "/api/add-team", { class_id: String(created.id), name });
  await post(teacher, "/api/set-phase", { class_id: String(created.id), phase: "competition" });
  const preview = await post(student, "/api/find-class", { code: created.join_code });
  await post(student, "/api/join-class", { code: created.join_code, display_name: "Ana", team_id: String(preview.teams[0].id) });
});

after(async () => {
  await student?.stop();
  await teacher?.stop();
  await server?.stop();
  if (assets) await rm(assets.root, { recursive: true, force: true });
});

test("a team submits a run, watches the curve grow live, reloads, cancels a second run and sees the board", async () => {
  const page = student.context.pages()[0] ?? (await student.context.newPage());
  page.setDefaultTimeout(30_000);
  await page.goto(server.baseUrl + "/team");
  await waitForHydration(page);
  await page.locator('select[name="model"]').selectOption("tiny-bert");
  const fill = async (name, value) => page.locator(`input[name="${name}"]`).fill(value);
  await fill("learning_rate", "2e-3");
  await fill("batch_size", "2");
  await fill("epochs", "20");
  await fill("max_len", "16");
  await fill("probe_sentence", "the cast was witty .");
  await page.getByTestId("estimate").filter({ hasText: "steps" }).waitFor();
  await page.getByRole("button", { name: "Queue the run" }).click();
  const hints = page.getByTestId("hints");
  await hints.filter({ hasText: "far above" }).waitFor();
  await page.screenshot({ path: join(outputDir, "runs-1-hints.png"), fullPage: true });
  await hints.getByRole("button", { name: "Submit anyway" }).click();
  const queued = page.getByRole("status").filter({ hasText: "Queued as run" });
  await queued.waitFor();
  await queued.getByRole("link").click();
  await page.waitForURL(/\/runs\/\d+$/);
  await waitForHydration(page);

  // The curve grows while the page stays put.
  const navigations = [];
  page.on("framenavigated", (frame) => frame === page.mainFrame() && navigations.push(frame.url()));
  const raw = page.locator('[data-testid="loss-chart"] polyline.series-0');
  await raw.waitFor();
  const early = points(await raw.getAttribute("points"));
  await page.waitForFunction(
    (before) => {
      const line = document.querySelector('[data-testid="loss-chart"] polyline.series-0');
      return line && line.getAttribute("points").trim().split(/\s+/).length > before;
    },
    early,
    { timeout: 60_000 },
  );
  assert.deepEqual(navigations, [], "the curve grew without a page load");
  await page.screenshot({ path: join(outputDir, "runs-2-live-curve.png"), fullPage: true });
  await page.getByTestId("run-state").filter({ hasText: "succeeded" }).waitFor({ timeout: 120_000 });
  const planned = Number((await page.getByTestId("progress").textContent()).match(/of (\d+)/)[1]);
  assert.equal(points(await raw.getAttribute("points")), planned);

  // After a reload the whole curve is back, with no gap or duplicate.
  await page.reload();
  await waitForHydration(page);
  await page.waitForFunction(
    (count) => {
      const line = document.querySelector('[data-testid="loss-chart"] polyline.series-0');
      return line && line.getAttribute("points").trim().split(/\s+/).length === count;
    },
    planned,
  );
  await page.locator('[data-testid="attention-pair"]').first().waitFor();

  // Try the fine-tuned model; the download link is offered.
  const tryModel = page.getByTestId("try-model");
  await tryModel.locator("textarea").fill("the story was charming .");
  await tryModel.getByRole("button", { name: "Classify" }).click();
  await tryModel.getByTestId("model-reading").filter({ hasText: "positive" }).waitFor();
  assert.match(await tryModel.getByRole("link", { name: /Download the model/ }).getAttribute("href"), /\/runs\/\d+\/model\.zip$/);
  await page.screenshot({ path: join(outputDir, "runs-3-after-reload.png"), fullPage: true });

  // A second run is cancelled from the team page; the board shows the first.
  await page.goto(server.baseUrl + "/team");
  await waitForHydration(page);
  await page.locator('select[name="model"]').selectOption("tiny-bert");
  await fill("learning_rate", "2e-3");
  await fill("batch_size", "2");
  await fill("epochs", "20");
  await fill("max_len", "16");
  await page.getByRole("button", { name: "Queue the run" }).click();
  await page.getByTestId("hints").getByRole("button", { name: "Submit anyway" }).click();
  await page.getByRole("status").filter({ hasText: "Queued as run" }).waitFor();
  const runs = page.getByTestId("runs");
  await runs.getByRole("button", { name: "Cancel" }).first().click();
  await runs.getByTestId("run-status").filter({ hasText: "cancelled" }).waitFor();
  await page.getByTestId("public-board").filter({ hasText: "Red" }).waitFor();
  await page.getByTestId("compare-loss").waitFor();
  await page.screenshot({ path: join(outputDir, "runs-4-cancelled-and-board.png"), fullPage: true });
  assert.deepEqual(pageErrors, []);
});
