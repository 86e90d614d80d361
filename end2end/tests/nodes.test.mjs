// Three processes on one PostgreSQL database and one runs folder: web-only nodes A and B
// and a worker node W (CPU, the tiny random BERT). A team queues a run through A while no
// worker runs; its page on B waits, then follows the curve live once W starts and trains
// it; reloading on B shows the whole history; the instructor's phase change on A reaches
// the student's class page on B without a reload. Screenshots: end2end/output/nodes-*.png.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import {
  classWithStudent,
  outputDir,
  startServer,
  trainingAssets,
  waitForHydration,
} from "../harness.mjs";

const postgres = (process.env.JIGSAW_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test").replace(/\/[^/]*$/, "");
const database = `jigsaw_e2e_nodes_${process.pid}`;
let assets;
let nodeA;
let nodeB;
let worker;
let teacher;
let student;
let classId;
const pageErrors = [];

function psql(sql) {
  execFileSync("psql", [`${postgres}/postgres`, "-q", "-c", sql], { stdio: ["ignore", "ignore", "inherit"] });
}

function points(polyline) {
  return polyline ? polyline.trim().split(/\s+/).length : 0;
}

before(async () => {
  assets = await trainingAssets({
    subjectCount: 12,
    phrasings: ["was", "was really", "was truly", "was quite", "was just", "was so"],
  });
  psql(`CREATE DATABASE ${database}`);
  const shared = {
    DATABASE_URL: `${postgres}/${database}`,
    JIGSAW_RUNS_DIR: join(assets.root, "runs"),
    JIGSAW_MODELS_DIR: assets.models,
    JIGSAW_SST2_DIR: assets.sst2,
    JIGSAW_VALIDATION_SIZE: "16",
  };
  nodeA = await startServer({ ...shared, JIGSAW_TRAINING_SLOTS: "0" });
  nodeB = await startServer({ ...shared, JIGSAW_TRAINING_SLOTS: "0" });
  // The worker starts later, once the run waits in the queue.
  worker = { shared, process: null };
  ({ teacher, student, classId } = await classWithStudent(nodeA, {
    className: "Two nodes class",
    phase: "competition",
    pageErrors,
  }));
});

after(async () => {
  await student?.stop();
  await teacher?.stop();
  await worker?.process?.stop();
  await nodeB?.stop();
  await nodeA?.stop();
  try {
    psql(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  } catch (error) {
    console.error(`could not drop ${database}: ${error.message}`);
  }
  if (assets) await rm(assets.root, { recursive: true, force: true });
});

test("a run queued on node A is followed live on node B while worker W trains it", async () => {
  const form = student.context.pages()[0] ?? (await student.context.newPage());
  form.setDefaultTimeout(30_000);
  await form.goto(nodeA.baseUrl + "/team");
  await waitForHydration(form);
  await form.locator('select[name="model"]').selectOption("tiny-bert");
  const fill = async (name, value) => form.locator(`input[name="${name}"]`).fill(value);
  await fill("learning_rate", "2e-3");
  await fill("batch_size", "2");
  await fill("epochs", "20");
  await fill("max_len", "16");
  await form.getByRole("button", { name: "Queue the run" }).click();
  const queued = form.getByRole("status").filter({ hasText: "Queued as run" });
  const anyway = form.getByTestId("hints").getByRole("button", { name: "Submit anyway" });
  await Promise.race([queued.waitFor(), anyway.waitFor()]);
  if (await anyway.isVisible()) await anyway.click();
  await queued.waitFor();
  const runId = (await queued.innerText()).match(/run #?(\d+)/)[1];

  // The same student's run page, on node B: the run waits, as no node trains.
  const page = await student.context.newPage();
  page.setDefaultTimeout(30_000);
  await page.goto(`${nodeB.baseUrl}/runs/${runId}`);
  await waitForHydration(page);
  await page.getByTestId("run-state").filter({ hasText: "queued" }).waitFor();
  await page.screenshot({ path: join(outputDir, "nodes-1-queued-on-b.png"), fullPage: true });

  // W starts and trains it; B's page draws the curve while the run is still training.
  worker.process = await startServer({ ...worker.shared, JIGSAW_TRAINING_SLOTS: "1" }, { worker: true });
  const curve = page.locator('[data-testid="loss-chart"] polyline').first();
  await page.getByTestId("run-state").filter({ hasText: "running" }).waitFor({ timeout: 60_000 });
  await curve.waitFor();
  const early = points(await curve.getAttribute("points"));
  assert.ok(early >= 1, "the curve appears while the run trains");
  await page.screenshot({ path: join(outputDir, "nodes-2-live-on-b.png"), fullPage: true });
  await page.getByTestId("run-state").filter({ hasText: "succeeded" }).waitFor({ timeout: 180_000 });
  // The status can arrive a moment before the last steps' events: wait until the curve has
  // stopped growing (the same number of points for a second).
  let live = points(await curve.getAttribute("points"));
  for (let unchanged = 0; unchanged < 4; ) {
    await page.waitForTimeout(250);
    const now = points(await curve.getAttribute("points"));
    unchanged = now === live ? unchanged + 1 : 0;
    live = now;
  }
  assert.ok(live > early, `the curve grew live on node B (${early} → ${live} points)`);

  // A reload on B reads the whole history from the database: the same curve.
  await page.reload();
  await waitForHydration(page);
  await page.getByTestId("run-state").filter({ hasText: "succeeded" }).waitFor();
  const reloaded = page.locator('[data-testid="loss-chart"] polyline').first();
  await reloaded.waitFor();
  // The stored events arrive in pages and are drawn in batches, after the status the page
  // was served with: wait until the curve is whole (a duplicate would make it longer).
  await page.waitForFunction(
    (count) => {
      const line = document.querySelector('[data-testid="loss-chart"] polyline');
      return line && line.getAttribute("points").trim().split(/\s+/).length >= count;
    },
    live,
  );
  assert.equal(points(await reloaded.getAttribute("points")), live, "the whole history after a reload");
  await page.screenshot({ path: join(outputDir, "nodes-3-reloaded-on-b.png"), fullPage: true });
  await page.close();
});

test("the instructor's phase change on node A reaches the student's page on node B", async () => {
  const studentPage = await student.context.newPage();
  studentPage.setDefaultTimeout(30_000);
  await studentPage.goto(nodeB.baseUrl + "/class");
  await waitForHydration(studentPage);
  await studentPage.locator('[data-testid="phase"][data-phase="competition"]').waitFor();
  let navigations = 0;
  studentPage.on("framenavigated", (frame) => {
    if (frame === studentPage.mainFrame()) navigations += 1;
  });

  const teacherPage = await teacher.context.newPage();
  teacherPage.setDefaultTimeout(30_000);
  await teacherPage.goto(`${nodeA.baseUrl}/instructor/classes/${classId}`);
  await waitForHydration(teacherPage);
  await teacherPage.getByTestId("phase-quiz").click();
  await teacherPage.locator('[data-testid="phase-quiz"][aria-pressed="true"].current').waitFor();
  await studentPage.locator('[data-testid="phase"][data-phase="quiz"]').waitFor({ timeout: 10_000 });
  assert.equal(navigations, 0, "the page on B changed without a reload");
  await teacherPage.screenshot({ path: join(outputDir, "nodes-4-teacher-on-a.png"), fullPage: true });
  await studentPage.screenshot({ path: join(outputDir, "nodes-5-student-on-b.png"), fullPage: true });
  assert.deepEqual(pageErrors, []);
});
