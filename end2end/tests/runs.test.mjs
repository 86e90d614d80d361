// A team fine-tunes a model from the browser: the run form (with its out-of-range hints),
// the live loss curve growing without a reload, the whole curve again after a reload,
// cancelling a second run, and the public leaderboard. It trains the tiny random BERT of
// the engine's tests on a small synthetic sentiment set, on the CPU. Then the teacher adds
// the engine's tiny random DeBERTa-v3 from a zip on the Models page and the team trains it.
// Screenshots: end2end/output/runs-*.png.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  classWithStudent,
  outputDir,
  startServer,
  trainingAssets,
  waitForHydration,
} from "../harness.mjs";

let server;
let teacher;
let student;
let assets;
const pageErrors = [];

function points(svgPolyline) {
  return svgPolyline ? svgPolyline.trim().split(/\s+/).length : 0;
}

before(async () => {
  // Twelve subjects in six phrasings: a run of 20 epochs then lasts several seconds on a fast
  // machine, so it is still training when its page first draws the curve (the test watches
  // the curve grow). With half as many (2026-11), and again with three phrasings
  // (2026-12-04, 2 of 5 full-suite runs on the 2-core machine), the run sometimes finished
  // before its page drew the curve.
  assets = await trainingAssets({
    subjectCount: 12,
    phrasings: ["was", "was really", "was truly", "was quite", "was just", "was so"],
  });
  server = await startServer({
    JIGSAW_MODELS_DIR: assets.models,
    JIGSAW_SST2_DIR: assets.sst2,
    JIGSAW_VALIDATION_SIZE: "16",
  });
  ({ teacher, student } = await classWithStudent(server, {
    className: "Runs class",
    teams: ["Red", "Blue"],
    phase: "competition",
    pageErrors,
  }));
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

test("the teacher adds DeBERTa and ELECTRA models from zips on the Models page and a team fine-tunes each", async () => {
  // A zip of each model's folder, as a teacher zips a download (the folder inside the zip).
  const zipOf = (fixture) => {
    const source = new URL(`../../trainer/tests/fixtures/${fixture}/`, import.meta.url).pathname;
    const zip = join(assets.root, `${fixture}.zip`);
    execFileSync("python3", [
      "-c",
      "import os, sys, zipfile\n" +
        "source, folder, out = sys.argv[1], sys.argv[2], sys.argv[3]\n" +
        "with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:\n" +
        "    for name in ['config.json', 'model.safetensors', 'tokenizer.json']:\n" +
        "        z.write(os.path.join(source, name), folder + '/' + name)\n",
      source,
      fixture,
      zip,
    ]);
    return zip;
  };
  const notZip = join(assets.root, "notes.zip");
  await writeFile(notZip, "these are my notes, not a model");

  const page = await teacher.context.newPage();
  page.setDefaultTimeout(30_000);
  await page.goto(server.baseUrl + "/instructor/models");
  await waitForHydration(page);
  const upload = async (name, file) => {
    await page.getByRole("textbox", { name: "Name" }).fill(name);
    await page.getByLabel("Zip file").setInputFiles(file);
    await page.getByRole("button", { name: "Upload and check" }).click();
  };
  // Not a zip: the page says so, and nothing is added.
  await upload("my-notes", notZip);
  await page.getByTestId("model-problem").filter({ hasText: "is it a .zip file?" }).waitFor();
  assert.equal(await page.getByTestId("model-my-notes").count(), 0);
  const models = [
    { name: "tiny-deberta", fixture: "tiny-deberta-v3", family: "DeBERTa-v2/v3" },
    { name: "tiny-electra", fixture: "tiny-electra", family: "ELECTRA" },
  ];
  for (const model of models) {
    await waitForHydration(page);
    await upload(model.name, zipOf(model.fixture));
    await page.getByTestId("model-added").filter({ hasText: model.name }).waitFor();
    await page.getByTestId(`model-${model.name}`).filter({ hasText: model.family }).waitFor();
  }
  await page.screenshot({ path: join(outputDir, "models-1-added.png"), fullPage: true });

  // The team sees each on the run form with its family, trains it to the end, tries the
  // fine-tuned model and is offered its download.
  const team = student.context.pages()[0] ?? (await student.context.newPage());
  team.setDefaultTimeout(30_000);
  for (const model of models) {
    await team.goto(server.baseUrl + "/team");
    await waitForHydration(team);
    const option = team.locator(`select[name="model"] option[value="${model.name}"]`);
    const label = await option.textContent();
    assert.ok(label.startsWith(`${model.name} (${model.family}, `) && /[\d.]+k parameters/.test(label), label);
    await team.locator('select[name="model"]').selectOption(model.name);
    const fill = async (name, value) => team.locator(`input[name="${name}"]`).fill(value);
    await fill("learning_rate", "2e-3");
    await fill("batch_size", "4");
    await fill("epochs", "2");
    await fill("max_len", "16");
    await team.getByRole("button", { name: "Queue the run" }).click();
    const queued = team.getByRole("status").filter({ hasText: "Queued as run" });
    const anyway = team.getByTestId("hints").getByRole("button", { name: "Submit anyway" });
    await Promise.race([queued.waitFor(), anyway.waitFor()]);
    if (await anyway.isVisible()) await anyway.click();
    await queued.waitFor();
    await queued.getByRole("link").click();
    await team.waitForURL(/\/runs\/\d+$/);
    await waitForHydration(team);
    await team.getByTestId("run-state").filter({ hasText: "succeeded" }).waitFor({ timeout: 120_000 });
    await team.locator('[data-testid="loss-chart"] polyline').first().waitFor();
    const tryModel = team.getByTestId("try-model");
    await tryModel.locator("textarea").fill("the story was charming .");
    await tryModel.getByRole("button", { name: "Classify" }).click();
    await tryModel.getByTestId("model-reading").filter({ hasText: /positive|negative/ }).waitFor();
    assert.match(await tryModel.getByRole("link", { name: /Download the model/ }).getAttribute("href"), /\/runs\/\d+\/model\.zip$/);
    await team.screenshot({ path: join(outputDir, `models-2-${model.name}-run.png`), fullPage: true });
  }
  assert.deepEqual(pageErrors, []);
});
