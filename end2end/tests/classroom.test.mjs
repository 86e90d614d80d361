// The classroom in real browsers: an instructor (one Chromium profile) runs a class while a
// student (a second profile, so a separate cookie jar and session) follows it live.
//
// The steps build on each other, in order:
//   (a) the instructor signs in, creates a class and two teams, hands out topics (in turn,
//       then one by hand) and moves the class study → teach → quiz, while the student's
//       open class page follows every change over server-sent events, without a reload;
//   (b) the student joins with the code typed in lower case, opens the team's lesson, uses
//       the tokenizer playground and the attention viewer, then saves a quiz draft, reloads,
//       and submits a free-text answer, the number question and a multiple-choice question;
//   (c) the instructor grades the free-text answer with points and feedback, and the
//       student sees both; closing the quiz freezes the student's open quiz page live.
// Screenshots: end2end/output/classroom-*.png.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { addInstructor, outputDir, startBrowser, startServer, waitForHydration } from "../harness.mjs";

const USERNAME = "ms.rivera";
const PASSWORD = "correct horse battery";
const CLASS_NAME = "Period 3 · NLP";
const STUDENT = "Zoë";
const DRAFT = "Pretraining learns language in general from unlabeled text; fine-tuning adapts it to our task.";
const FEEDBACK = "Good; also name the card-game analogy.";
const FIRST_PROMPT = "What is the difference between pretraining and fine-tuning?";
const STEPS_PROMPT = "How many steps per epoch do 1,000 examples at batch size 10 give?";

let server;
let teacher; // the instructor's browser
let student; // the student's browser
let teacherPage;
let studentPage; // the student's long-lived page: /join, then /class (followed live), then /quiz
let base;
let classId;
let joinCode;
let failed = false;
const pageErrors = [];
const consoleErrors = [];

/** Records uncaught errors and console errors of every page of a browser. */
function watch(browser, who) {
  const attach = (page) => {
    page.setDefaultTimeout(15_000);
    page.on("pageerror", (error) => pageErrors.push(`${who} on ${page.url()}: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") consoleErrors.push(`${who} on ${page.url()}: ${message.text()}`);
    });
  };
  browser.context.pages().forEach(attach);
  browser.context.on("page", attach);
}

/** The browser's first page (a persistent context opens with one). */
function firstPage(browser) {
  return browser.context.pages()[0] ?? browser.context.newPage();
}

async function shot(page, name, { fullPage = true } = {}) {
  if (!fullPage) await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(outputDir, `classroom-${name}.png`), fullPage });
}

/** Collects the main frame's navigations from now on (client-side routing included). */
function trackNavigations(page) {
  const urls = [];
  page.on("framenavigated", (frame) => {
    if (frame === page.mainFrame()) urls.push(frame.url());
  });
  return urls;
}

/**
 * The instructor's class page refetches twice after each of its actions: once because the
 * action finished, once because the server announced the change over the event stream. Waits
 * for the second re-render, so the next input is not typed into a form about to be redrawn.
 */
async function settle(page) {
  await page.waitForTimeout(500);
}

/** Resolves once the select labelled `label` has the value `value`. */
async function selectHasValue(page, label, value) {
  await page.waitForFunction(
    ([label, value]) => document.querySelector(`select[aria-label="${label}"]`)?.value === value,
    [label, value],
    { timeout: 15_000 },
  );
}

/** A test that only runs when every earlier step passed (each builds on the one before). */
function step(name, fn) {
  test(name, { timeout: 90_000 }, async (t) => {
    if (failed) {
      t.skip("an earlier step failed");
      return;
    }
    try {
      await fn(t);
    } catch (error) {
      failed = true;
      throw error;
    }
  });
}

before(async () => {
  server = await startServer();
  base = server.baseUrl;
  [teacher, student] = await Promise.all([startBrowser(), startBrowser()]);
  watch(teacher, "instructor");
  watch(student, "student");
  teacherPage = await firstPage(teacher);
  studentPage = await firstPage(student);
});

after(async () => {
  // The state of every open page at the end, for when a step failed.
  if (failed) {
    for (const [who, browser] of [["instructor", teacher], ["student", student]]) {
      for (const [index, page] of (browser?.context.pages() ?? []).entries()) {
        await shot(page, `zz-end-${who}-${index}`).catch(() => {});
      }
    }
  }
  await teacher?.stop();
  await student?.stop();
  await server?.stop();
});

step("(a) the instructor signs in, creates a class and adds two teams", async (t) => {
  const created = await addInstructor(server, USERNAME, PASSWORD);
  assert.match(created, /created/);

  const page = teacherPage;
  await page.goto(base + "/instructor/sign-in");
  await waitForHydration(page);
  await page.locator('input[name="username"]').fill(USERNAME);
  await page.locator('input[name="password"]').fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(base + "/instructor");
  await waitForHydration(page);
  await page.getByRole("heading", { level: 1, name: "My classes" }).waitFor();
  await page.getByTestId("viewer").filter({ hasText: `Instructor ${USERNAME}` }).waitFor();
  await page.getByText("No classes yet").waitFor();

  await page.locator('input[name="name"]').fill(CLASS_NAME);
  await page.getByRole("button", { name: "Create class" }).click();
  const link = page.getByTestId("classes").getByRole("link", { name: CLASS_NAME });
  await link.waitFor();
  const href = await link.getAttribute("href");
  const match = href.match(/^\/instructor\/classes\/(\d+)$/);
  assert.ok(match, `the class links to its page: ${href}`);
  classId = match[1];
  await shot(page, "a-1-class-created");

  await link.click();
  await page.waitForURL(base + href);
  await waitForHydration(page);
  await page.getByRole("heading", { level: 1, name: CLASS_NAME }).waitFor();
  joinCode = (await page.getByTestId("join-code").innerText()).trim();
  assert.match(joinCode, /^[A-Z0-9]{6}$/, "a six-character upper-case join code");
  assert.equal(await page.getByTestId("phase-study").getAttribute("aria-pressed"), "true", "a new class starts in study");
  assert.match(await page.getByTestId("phase-study").getAttribute("class"), /\bcurrent\b/);
  assert.equal(await page.getByTestId("phase-quiz").getAttribute("aria-pressed"), "false");

  for (const team of ["Red", "Blue"]) {
    await page.locator('input[name="name"]').fill(team);
    await page.getByRole("button", { name: "Add team" }).click();
    await page.getByTestId("teams").getByRole("cell", { name: team, exact: true }).waitFor();
    await settle(page);
  }
  assert.equal(await page.getByLabel("Topic of Red").inputValue(), "", "no topic yet");
  assert.equal(await page.getByLabel("Topic of Blue").inputValue(), "");
  await shot(page, "a-2-two-teams");
  t.diagnostic(`class ${classId}, join code ${joinCode}`);
});

step("(b) a student joins with the join code typed in lower case", async () => {
  const page = studentPage;
  await page.goto(base + "/join");
  await waitForHydration(page);
  await page.locator('input[name="code"]').fill(joinCode.toLowerCase());
  await page.getByRole("button", { name: "Find my class" }).click();
  await page.getByTestId("class-name").filter({ hasText: CLASS_NAME }).waitFor();
  const teams = await page.locator('select[name="team_id"] option').allInnerTexts();
  assert.deepEqual(teams, ["Red", "Blue"]);
  await page.locator('input[name="display_name"]').fill(STUDENT);
  await page.locator('select[name="team_id"]').selectOption({ label: "Blue" });
  await shot(page, "b-1-join-form");

  // The class page opens its event stream as it mounts; the instructor acts only after that.
  const stream = page.waitForResponse((response) => response.url().includes("/api/class-events"), { timeout: 15_000 });
  await page.getByRole("button", { name: "Join", exact: true }).click();
  await page.waitForURL(base + "/class");
  assert.equal((await stream).status(), 200, "the live event stream is open");
  await page.locator('[data-testid="phase"][data-phase="study"]').waitFor();
  await page.getByTestId("viewer").filter({ hasText: `${STUDENT} · Blue` }).waitFor();
  await page.getByRole("heading", { level: 1, name: `Hello, ${STUDENT}` }).waitFor();
  await page.getByTestId("expert-topic").filter({ hasText: "has not given your team a topic yet" }).waitFor();
  await shot(page, "b-2-class-page-before-topics");
});

step("(a) topics given in turn, then one by hand, appear on the student's open page live", async () => {
  const navigations = trackNavigations(studentPage);

  await teacherPage.getByTestId("round-robin").click();
  await selectHasValue(teacherPage, "Topic of Red", "fine-tuning");
  await selectHasValue(teacherPage, "Topic of Blue", "tokenization");
  // The refetched table also shows who joined.
  await teacherPage.getByTestId("teams").getByRole("row").filter({ hasText: "Blue" }).filter({ hasText: STUDENT }).waitFor();

  const expert = studentPage.getByTestId("expert-topic").getByRole("link", { name: "Tokenization" });
  await expert.waitFor();
  assert.equal(await expert.getAttribute("href"), "/lessons/tokenization");
  const topics = studentPage.getByTestId("topic-list");
  await topics.getByRole("listitem").filter({ hasText: "Fine-tuning vs pretraining" }).filter({ hasText: "(experts: Red)" }).waitFor();
  await shot(studentPage, "a-3-student-sees-topic-live");

  await settle(teacherPage);
  await teacherPage.getByLabel("Topic of Red").selectOption("attention");
  await selectHasValue(teacherPage, "Topic of Red", "attention");
  await topics.getByRole("listitem").filter({ hasText: "Attention" }).filter({ hasText: "(experts: Red)" }).waitFor();
  await studentPage.waitForFunction(() => {
    const items = [...document.querySelectorAll('[data-testid="topic-list"] li')];
    const fineTuning = items.find((li) => li.textContent.includes("Fine-tuning vs pretraining"));
    return fineTuning && !fineTuning.textContent.includes("experts");
  });
  assert.equal(await studentPage.getByTestId("expert-topic").getByRole("link").innerText(), "Tokenization", "Blue's own topic is unchanged");
  await shot(teacherPage, "a-4-topics-assigned");
  await shot(studentPage, "a-5-student-sees-hand-picked-topic-live");
  assert.deepEqual(navigations, [], "the student's page changed without navigating");
});

step("(b) the student opens the team's lesson and uses the tokenizer and the attention viewer", async () => {
  const page = await student.context.newPage();
  await page.goto(base + "/class");
  await waitForHydration(page);
  await page.getByTestId("expert-topic").getByRole("link", { name: "Tokenization" }).click();
  await page.waitForURL(base + "/lessons/tokenization");
  await page.getByRole("heading", { level: 1, name: "Tokenization" }).waitFor();
  // The link is a full page load: typing before the lesson's islands hydrate would be lost.
  await waitForHydration(page);

  await page.locator(".tokenizer-playground textarea").fill("unhappiness");
  await page.getByRole("button", { name: "Split into tokens" }).click();
  const pieces = page.getByTestId("pieces").locator(".piece-text");
  await pieces.first().waitFor();
  assert.deepEqual(await pieces.allInnerTexts(), ["[CLS]", "un", "##ha", "##pp", "##iness", "[SEP]"]);
  await page.getByText("6 pieces for 1 word (").waitFor();
  await shot(page, "b-3-tokenizer-playground");

  await page.goBack();
  await page.waitForURL(base + "/class");
  await page.getByTestId("topic-list").getByRole("link", { name: "Attention" }).click();
  await page.waitForURL(base + "/lessons/attention");
  await page.getByRole("heading", { level: 1, name: "Attention" }).waitFor();
  await waitForHydration(page);
  await page.getByRole("button", { name: "Show attention" }).click();
  const heatmap = page.getByTestId("heatmap");
  await heatmap.waitFor();
  assert.equal(await heatmap.locator("rect").count(), 64, "8 tokens x 8 tokens");
  await shot(page, "b-4-attention-viewer");
  await page.close();
});

step("(a) the instructor moves the class study → teach → quiz and the student's page follows live", async () => {
  const navigations = trackNavigations(studentPage);
  assert.equal(await studentPage.getByTestId("phase").getAttribute("data-phase"), "study");

  await settle(teacherPage);
  await teacherPage.getByTestId("phase-teach").click();
  await teacherPage.locator('[data-testid="phase-teach"][aria-pressed="true"].current').waitFor();
  assert.equal(await teacherPage.getByTestId("phase-study").getAttribute("aria-pressed"), "false");
  await studentPage.locator('[data-testid="phase"][data-phase="teach"]').waitFor();
  await studentPage.getByTestId("phase").filter({ hasText: "Teach phase." }).waitFor();
  await studentPage.getByTestId("topic-list").getByRole("listitem").filter({ hasText: "Tokenization" }).filter({ hasText: "your team" }).waitFor();
  await shot(studentPage, "a-6-student-teach-phase-live");

  // A quiz page opened early waits for the quiz, then shows it by itself.
  const early = await student.context.newPage();
  const earlyStream = early.waitForResponse((response) => response.url().includes("/api/class-events"), { timeout: 15_000 });
  await early.goto(base + "/quiz");
  await waitForHydration(early);
  await earlyStream;
  await early.getByTestId("quiz-state").filter({ hasText: "The quiz opens when your teacher starts the quiz phase" }).waitFor();
  assert.equal(await early.getByTestId("quiz-question").count(), 0);
  const earlyNavigations = trackNavigations(early);

  await settle(teacherPage);
  await teacherPage.getByTestId("phase-quiz").click();
  await teacherPage.locator('[data-testid="phase-quiz"][aria-pressed="true"].current').waitFor();
  await studentPage.locator('[data-testid="phase"][data-phase="quiz"]').waitFor();
  await studentPage.getByTestId("quiz-link").filter({ hasText: "Answer the quiz" }).waitFor();
  await shot(teacherPage, "a-7-instructor-quiz-phase");
  await shot(studentPage, "a-8-student-quiz-phase-live");
  assert.deepEqual(navigations, [], "the student's page changed without navigating");

  await early.getByTestId("quiz-state").filter({ hasText: "Save drafts as you go" }).waitFor();
  assert.equal(await early.getByTestId("quiz-question").count(), 16);
  await shot(early, "a-9-early-quiz-page-opened-live", { fullPage: false });
  assert.deepEqual(earlyNavigations, [], "the early quiz page opened the quiz without navigating");
  await early.close();
});

step("(b) the student saves a draft, finds it after a reload, and submits three answers", async () => {
  const page = studentPage;
  await page.getByTestId("quiz-link").click();
  await page.waitForURL(base + "/quiz");
  await waitForHydration(page);
  await page.getByTestId("quiz-state").filter({ hasText: "Save drafts as you go" }).waitFor();
  assert.equal(await page.getByTestId("quiz-question").count(), 16, "two questions for each of the eight lessons");

  const text = page.locator('[data-testid="quiz-question"][data-key="fine-tuning-1"]');
  await text.locator("textarea").fill(DRAFT);
  await text.getByRole("button", { name: "Save draft" }).click();
  await text.getByTestId("answer-status").filter({ hasText: "Draft saved, not handed in yet" }).waitFor();
  await shot(page, "b-5-draft-saved");

  await page.reload();
  await waitForHydration(page);
  await text.getByTestId("answer-status").filter({ hasText: "Draft saved, not handed in yet" }).waitFor();
  assert.equal(await text.locator("textarea").inputValue(), DRAFT, "the draft survived the reload");

  await text.getByRole("button", { name: "Submit" }).click();
  await text.getByTestId("answer-status").filter({ hasText: /^Submitted \d{4}-\d\d-\d\d \d\d:\d\d UTC$/ }).waitFor();
  assert.equal(await text.getByTestId("grade").count(), 0, "free text waits for the instructor");

  const steps = page.locator('[data-testid="quiz-question"][data-key="hyperparameters-1"]');
  assert.ok((await steps.innerText()).includes(STEPS_PROMPT), "the number question is hyperparameters-1");
  await steps.locator("input").fill("100");
  await steps.getByRole("button", { name: "Submit" }).click();
  await steps.getByTestId("answer-status").filter({ hasText: /^Submitted / }).waitFor();
  await steps.getByTestId("grade").filter({ hasText: "1 / 1 points · Correct." }).waitFor();

  const choice = page.locator('[data-testid="quiz-question"][data-key="model-choice-2"]');
  await choice.getByLabel("DeBERTa").check();
  await choice.getByRole("button", { name: "Submit" }).click();
  await choice.getByTestId("answer-status").filter({ hasText: /^Submitted / }).waitFor();
  await choice.getByTestId("grade").filter({ hasText: "1 / 1 points · Correct." }).waitFor();
  await shot(page, "b-6-answers-submitted");
});

step("(c) the instructor grades the free-text answer and the student sees points and feedback", async () => {
  const page = teacherPage;
  await page.getByRole("link", { name: "Grade the quiz" }).click();
  await page.waitForURL(`${base}/instructor/classes/${classId}/grading`);
  const overview = page.getByTestId("grading-overview");
  const first = overview.getByRole("row").filter({ hasText: FIRST_PROMPT });
  await first.waitFor();
  assert.equal((await first.getByRole("cell").last().innerText()).trim(), "0 of 1");
  const auto = overview.getByRole("row").filter({ hasText: STEPS_PROMPT });
  assert.match(await auto.innerText(), /graded automatically/);
  assert.equal((await auto.getByRole("cell").last().innerText()).trim(), "1 of 1");
  await shot(page, "c-1-grading-overview");

  await first.getByRole("link").click();
  await page.waitForURL(`${base}/instructor/classes/${classId}/grading/fine-tuning-1`);
  await waitForHydration(page);
  await page.getByTestId("grading-progress").filter({ hasText: "0 of 1 answers graded" }).waitFor();
  const card = page.getByTestId("answer-card");
  assert.equal(await card.count(), 1);
  assert.match(await card.innerText(), new RegExp(`${STUDENT} · Blue`));
  assert.equal((await card.locator(".answer-text").innerText()).trim(), DRAFT);
  await card.locator('input[name="points"]').fill("1.5");
  await card.locator('textarea[name="feedback"]').fill(FEEDBACK);
  await card.getByRole("button", { name: "Save grade" }).click();
  await card.getByRole("status").filter({ hasText: "Saved" }).waitFor();
  await page.getByTestId("grading-progress").filter({ hasText: "1 of 1 answers graded" }).waitFor();
  await shot(page, "c-2-answer-graded");

  // The standings: Blue has 1.5 + 1 + 1 points for its one member, Red none.
  await page.goto(`${base}/instructor/classes/${classId}`);
  await waitForHydration(page);
  const rows = page.getByTestId("quiz-leaderboard").locator("tbody tr");
  assert.deepEqual(await rows.first().getByRole("cell").allInnerTexts(), ["1", "Blue", "3.5", "3.5", "1", "3"]);
  assert.equal(await rows.nth(1).getByRole("cell").nth(1).innerText(), "Red");
  await shot(page, "c-3-standings");

  // The CSV download, with the instructor's cookies.
  const csvLink = page.getByRole("link", { name: "Download answers and grades (CSV)" });
  const csv = await page.context().request.get(base + (await csvLink.getAttribute("href")));
  assert.equal(csv.status(), 200);
  assert.match(csv.headers()["content-type"], /^text\/csv/);
  const body = await csv.text();
  assert.ok(body.includes(`"${STUDENT}","fine-tuning-1"`), body);
  assert.ok(body.includes(`,1.5,2,"${FEEDBACK}","instructor"`), body);

  await studentPage.reload();
  await waitForHydration(studentPage);
  const text = studentPage.locator('[data-testid="quiz-question"][data-key="fine-tuning-1"]');
  await text.getByTestId("grade").filter({ hasText: `1.5 / 2 points · ${FEEDBACK}` }).waitFor();
  await shot(studentPage, "c-4-student-sees-grade", { fullPage: false });
});

step("(c) closing the quiz freezes the student's open quiz page live, reopening unfreezes it", async () => {
  const navigations = trackNavigations(studentPage);
  const text = studentPage.locator('[data-testid="quiz-question"][data-key="fine-tuning-1"]');
  assert.equal(await text.locator("textarea").isDisabled(), false);

  await settle(teacherPage);
  await teacherPage.getByTestId("toggle-quiz").filter({ hasText: "Close the quiz" }).click();
  await teacherPage.getByTestId("toggle-quiz").filter({ hasText: "Reopen the quiz" }).waitFor();
  await studentPage.getByTestId("quiz-state").filter({ hasText: "The quiz is closed: your answers are final." }).waitFor();
  await studentPage.waitForFunction(() =>
    document.querySelector('[data-key="fine-tuning-1"] textarea')?.disabled === true,
  );
  assert.equal(await text.getByRole("button", { name: "Submit" }).isDisabled(), true);
  await shot(studentPage, "c-5-student-quiz-closed-live", { fullPage: false });

  await settle(teacherPage);
  await teacherPage.getByTestId("toggle-quiz").filter({ hasText: "Reopen the quiz" }).click();
  await studentPage.getByTestId("quiz-state").filter({ hasText: "Save drafts as you go" }).waitFor();
  await studentPage.waitForFunction(() =>
    document.querySelector('[data-key="fine-tuning-1"] textarea')?.disabled === false,
  );
  assert.deepEqual(navigations, [], "the quiz page changed without navigating");
});

// What students do most: type an answer and press Submit straight away. Typing leaves the
// textarea's change event pending; pressing the button fires it (a draft save) first.
step("(b) typing an answer and pressing Submit straight away hands it in", async () => {
  const page = studentPage;
  const question = page.locator('[data-testid="quiz-question"][data-key="fine-tuning-2"]');
  await question.locator("textarea").click();
  await page.keyboard.type("It keeps what cards are and learns the new rules.");
  await question.getByRole("button", { name: "Submit" }).click();
  const status = question.getByTestId("answer-status");
  try {
    await status.filter({ hasText: /^Submitted / }).waitFor({ timeout: 5_000 });
  } catch {
    await shot(page, "b-7-submit-after-typing-not-handed-in", { fullPage: false });
    assert.fail(`pressing Submit right after typing did not hand the answer in; the status says "${await status.innerText()}"`);
  }
});

test("no page threw an uncaught error", (t) => {
  for (const message of consoleErrors) t.diagnostic(`console error: ${message}`);
  assert.deepEqual(pageErrors, []);
});
