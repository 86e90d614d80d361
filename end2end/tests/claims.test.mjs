// The class tests one of the lessons' claims: the teacher presses "Test this claim" on the
// class page, the runs train on the server's worker (on the tiny test BERT, picked in the
// panel), and the
// student's lesson shows the class's result next to the claim, with a verdict in words and
// a link to the run, which opens. Screenshots: end2end/output/claims-*.png.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { classWithStudent, outputDir, startServer, trainingAssets, waitForHydration } from "../harness.mjs";

let server;
let teacher;
let student;
let assets;
let classId;
const pageErrors = [];

before(async () => {
  assets = await trainingAssets({ subjectCount: 6, phrasings: ["was"] });
  server = await startServer({
    JIGSAW_MODELS_DIR: assets.models,
    JIGSAW_SST2_DIR: assets.sst2,
    JIGSAW_VALIDATION_SIZE: "16",
  });
  // The class stays in the study phase: claims are tested in any phase.
  ({ teacher, student, classId } = await classWithStudent(server, { className: "Claims class", pageErrors }));
});

after(async () => {
  await student?.stop();
  await teacher?.stop();
  await server?.stop();
  if (assets) await rm(assets.root, { recursive: true, force: true });
});

test("the teacher tests a claim with one button and the lesson shows the class's result", async () => {
  const page = await teacher.context.newPage();
  page.setDefaultTimeout(60_000);
  await page.goto(`${server.baseUrl}/instructor/classes/${classId}`);
  await waitForHydration(page);
  // The tests train the tiny model, in seconds; the panel opens on the default model.
  await page.getByLabel("Model the tests train").selectOption("tiny-bert");
  const claim = page.getByTestId("claim-high-learning-rate-fails");
  await claim.getByText("tiny-bert").first().waitFor();
  await claim.getByText("1000 sentences").waitFor();
  await claim.getByRole("button", { name: "Test this claim" }).click();
  // The panel follows the run until the verdict comes, in words.
  const verdict = claim.getByTestId("claim-finding");
  await verdict.filter({ hasText: /Agrees with the claim|Disagrees with the claim/ }).waitFor();
  assert.equal(await claim.getByRole("button", { name: "Test it again" }).isEnabled(), true);
  await page.screenshot({ path: join(outputDir, "claims-1-teacher-panel.png"), fullPage: true });

  // The student's lesson shows the claim with the class's result and the run's link.
  const lesson = student.context.pages()[0] ?? (await student.context.newPage());
  lesson.setDefaultTimeout(30_000);
  await lesson.goto(server.baseUrl + "/lessons/hyperparameters");
  await waitForHydration(lesson);
  const box = lesson.getByTestId("lesson-claim-high-learning-rate-fails");
  await box.getByTestId("claim-finding").filter({ hasText: /best validation accuracy was|diverged/ }).waitFor();
  // The other claim of the lesson is not tested yet, and says who can test it.
  await lesson
    .getByTestId("lesson-claim-two-epochs-enough")
    .getByText("Your class has not tested this claim yet")
    .waitFor();
  await lesson.screenshot({ path: join(outputDir, "claims-2-lesson-result.png"), fullPage: true });
  const link = box.getByRole("link", { name: /Full fine-tuning at lr 1e-2 \(#\d+\)/ });
  await link.click();
  await lesson.waitForURL(/\/runs\/\d+$/);
  await waitForHydration(lesson);
  await lesson.getByTestId("claim-run").waitFor();
  await lesson.getByTestId("run-state").filter({ hasText: /succeeded|diverged/ }).waitFor();
  assert.deepEqual(pageErrors, []);
});
