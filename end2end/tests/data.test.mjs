// A new class server without SST-2: the teacher's pages say that training data is missing
// and link to the Training data page; the team's run form says why it cannot queue and
// its button is off. The teacher uploads the three GLUE-format files there, the page says
// what was installed, and the team queues a run. Screenshots: end2end/output/data-*.png.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
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

before(async () => {
  assets = await trainingAssets({ subjectCount: 6, phrasings: ["was", "was really"] });
  server = await startServer({
    JIGSAW_MODELS_DIR: assets.models,
    // A folder that does not exist yet: the upload creates it.
    JIGSAW_SST2_DIR: join(assets.root, "class-sst2"),
    JIGSAW_VALIDATION_SIZE: "16",
  });
  ({ teacher, student } = await classWithStudent(server, { className: "Data class", phase: "competition", pageErrors }));
});

after(async () => {
  await student?.stop();
  await teacher?.stop();
  await server?.stop();
  if (assets) await rm(assets.root, { recursive: true, force: true });
});

test("without SST-2 the teacher is told and the form refuses; after the upload a team queues a run", async () => {
  const page = await teacher.context.newPage();
  page.setDefaultTimeout(30_000);
  await page.goto(server.baseUrl + "/instructor");
  await waitForHydration(page);
  const notice = page.getByTestId("data-missing-notice");
  await notice.filter({ hasText: "teams cannot queue runs until SST-2 is installed" }).waitFor();
  await page.screenshot({ path: join(outputDir, "data-1-teacher-sees-missing.png"), fullPage: true });

  const team = student.context.pages()[0] ?? (await student.context.newPage());
  team.setDefaultTimeout(30_000);
  await team.goto(server.baseUrl + "/team");
  await waitForHydration(team);
  await team.getByTestId("data-missing").filter({ hasText: "Ask your instructor" }).waitFor();
  assert.equal(await team.getByRole("button", { name: "Queue the run" }).isDisabled(), true);
  await team.screenshot({ path: join(outputDir, "data-2-form-refuses.png"), fullPage: true });

  // The notice's link leads to the page that installs it.
  await notice.getByRole("link", { name: "Add it on the Training data page" }).click();
  await page.waitForURL(/\/instructor\/data$/);
  await waitForHydration(page);
  await page.getByTestId("data-missing").waitFor();
  await page
    .getByLabel("or the three .tsv files")
    .setInputFiles(["train.tsv", "dev.tsv", "test.tsv"].map((name) => join(assets.sst2, name)));
  await page.getByRole("button", { name: "Upload and check" }).click();
  await page.getByTestId("data-added").waitFor();
  await page.getByTestId("data-ready").waitFor();
  assert.match(await page.getByTestId("data-release").textContent(), /Not the GLUE release/);
  await page.screenshot({ path: join(outputDir, "data-3-installed.png"), fullPage: true });

  await page.goto(server.baseUrl + "/instructor");
  await waitForHydration(page);
  await page.getByTestId("classes").waitFor();
  assert.equal(await page.getByTestId("data-missing-notice").count(), 0);

  await team.reload();
  await waitForHydration(team);
  assert.equal(await team.getByTestId("data-missing").count(), 0);
  await team.locator('select[name="model"]').selectOption("tiny-bert");
  await team.locator('input[name="epochs"]').fill("1");
  await team.locator('input[name="max_len"]').fill("16");
  await team.getByRole("button", { name: "Queue the run" }).click();
  const queued = team.getByRole("status").filter({ hasText: "Queued as run" });
  const anyway = team.getByTestId("hints").getByRole("button", { name: "Submit anyway" });
  await Promise.race([queued.waitFor(), anyway.waitFor()]);
  if (await anyway.isVisible()) await anyway.click();
  await queued.waitFor();
  await team.screenshot({ path: join(outputDir, "data-4-run-queued.png"), fullPage: true });
  assert.deepEqual(pageErrors, []);
});
