// Accessibility and phones, in a real browser:
//   * every page, as the user who sees it, passes axe-core (WCAG 2.0/2.1 A and AA plus
//     axe's best practices) with no "serious" or "critical" violation, at desktop and at
//     phone size;
//   * at 390 x 844 (a phone) no page scrolls sideways, and every control (button, input,
//     select, textarea, disclosure, header link) is at least 44 x 44 px; a screenshot of
//     each page at that size goes to end2end/output/phone-<page>.png;
//   * a run whose validation was evaluated once draws that point, and every chart has its
//     numbers as a table;
//   * with the keyboard alone (Tab, Shift+Tab, Enter, Space, arrow keys; no mouse), a student
//     joins, opens a lesson, uses a widget and answers the quiz, and an instructor grades an
//     answer, with the focus visible at every step.
// The class, its teams, a student with quiz answers and two finished runs (the tiny random
// BERT of the engine's tests, on a small synthetic sentiment set) are set up first, through
// the same server functions the pages call.
// A report of every violation found, of any impact: end2end/output/accessibility-report.json.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  addInstructor,
  outputDir,
  post,
  startBrowser,
  startServer,
  trainingAssets,
  waitForHydration,
} from "../harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const AXE = join(here, "..", "node_modules", "axe-core", "axe.min.js");
const AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"];
const FAILING_IMPACTS = ["serious", "critical"];
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1200, height: 900 };
const MIN_TARGET = 44;
const SLUGS = ["fine-tuning", "tokenization", "attention", "cls-token", "model-choice", "hyperparameters", "lora", "overfitting"];
const USERNAME = "mr.okafor";
const PASSWORD = "correct horse battery";
const ANSWER = "Pretraining learns language from unlabeled text; fine-tuning adapts the model to our task.";

let server;
let assets;
let anon; // a visitor who has not joined: the public pages, then the keyboard-only student
let teacher;
let student;
let classId;
let joinCode;
const runIds = [];
const pageErrors = [];
const report = {};

function firstPage(browser) {
  return browser.context.pages()[0] ?? browser.context.newPage();
}

/** Queues a run of the tiny BERT from the team page, the way a student does; resolves with its id. */
async function queueRun(page, epochs) {
  await page.goto(server.baseUrl + "/team");
  await waitForHydration(page);
  await page.locator('select[name="model"]').selectOption("tiny-bert");
  const fill = async (name, value) => page.locator(`input[name="${name}"]`).fill(value);
  await fill("learning_rate", "2e-3");
  await fill("batch_size", "4");
  await fill("epochs", String(epochs));
  await fill("max_len", "16");
  await page.getByTestId("estimate").filter({ hasText: "steps" }).waitFor();
  await page.getByRole("button", { name: "Queue the run" }).click();
  const queued = page.getByRole("status").filter({ hasText: "Queued as run" });
  const hints = page.getByTestId("hints");
  await Promise.race([queued.waitFor(), hints.waitFor()]);
  if (await hints.isVisible()) await hints.getByRole("button", { name: "Submit anyway" }).click();
  await queued.waitFor();
  const href = await queued.getByRole("link").getAttribute("href");
  return Number(href.match(/\/runs\/(\d+)$/)[1]);
}

before(async () => {
  assets = await trainingAssets({ subjectCount: 6, phrasings: ["was"] });
  server = await startServer({
    JIGSAW_MODELS_DIR: assets.models,
    JIGSAW_SST2_DIR: assets.sst2,
    JIGSAW_VALIDATION_SIZE: "16",
  });
  [anon, teacher, student] = await Promise.all([startBrowser(), startBrowser(), startBrowser()]);
  for (const [who, browser] of [["visitor", anon], ["instructor", teacher], ["student", student]]) {
    const attach = (page) => {
      page.setDefaultTimeout(20_000);
      page.on("pageerror", (error) => pageErrors.push(`${who} on ${page.url()}: ${error.message}`));
    };
    browser.context.pages().forEach(attach);
    browser.context.on("page", attach);
  }

  await addInstructor(server, USERNAME, PASSWORD);
  await post(server, teacher, "/api/sign-in", { username: USERNAME, password: PASSWORD });
  const created = await post(server, teacher, "/api/create-class", { name: "Period 5 · NLP" });
  classId = String(created.id);
  joinCode = created.join_code;
  for (const name of ["Red", "Blue"]) await post(server, teacher, "/api/add-team", { class_id: classId, name });
  await post(server, teacher, "/api/assign-topics", { class_id: classId });
  // The competition phase: the quiz is open and runs can be queued.
  await post(server, teacher, "/api/set-phase", { class_id: classId, phase: "competition" });
  const preview = await post(server, student, "/api/find-class", { code: joinCode });
  await post(server, student, "/api/join-class", { code: joinCode, display_name: "Ana", team_id: String(preview.teams[0].id) });
  await post(server, student, "/api/save-answer", { key: "fine-tuning-1", text: ANSWER, submit: "true" });
  await post(server, student, "/api/save-answer", { key: "model-choice-2", text: "DeBERTa", submit: "true" });

  // One epoch (one validation point: the chart must still draw it), then two (the
  // overfitting lesson's widget and the team page's comparison need two evaluations).
  const page = await firstPage(student);
  runIds.push(await queueRun(page, 1));
  runIds.push(await queueRun(page, 2));
  for (const id of runIds) {
    await page.goto(`${server.baseUrl}/runs/${id}`);
    await waitForHydration(page);
    await page.getByTestId("run-state").filter({ hasText: "succeeded" }).waitFor({ timeout: 180_000 });
  }
});

after(async () => {
  await writeFile(join(outputDir, "accessibility-report.json"), JSON.stringify(report, null, 2)).catch(() => {});
  await anon?.stop();
  await teacher?.stop();
  await student?.stop();
  await server?.stop();
  if (assets) await rm(assets.root, { recursive: true, force: true });
});

/** Runs axe-core on the page as it is now; resolves with its violations. */
async function axe(page) {
  if (!(await page.evaluate(() => typeof window.axe !== "undefined"))) await page.addScriptTag({ path: AXE });
  const results = await page.evaluate(
    (tags) => window.axe.run(document, { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] }),
    AXE_TAGS,
  );
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    targets: v.nodes.map((node) => node.target.join(" ")),
  }));
}

/**
 * At the page's current (phone) size: whether it scrolls sideways, and which controls are
 * smaller than 44 x 44 px. Inline links in running text are exempt (WCAG 2.5.8); a
 * checkbox or radio button counts with its label, which takes the tap too.
 */
async function phoneProblems(page) {
  return page.evaluate((min) => {
    const problems = [];
    const name = (el) => {
      let text = el.tagName.toLowerCase();
      if (el.id) text += `#${el.id}`;
      if (el.getAttribute("name")) text += `[name="${el.getAttribute("name")}"]`;
      if (el.dataset.testid) text += `[data-testid="${el.dataset.testid}"]`;
      if (typeof el.className === "string" && el.className.trim()) text += "." + el.className.trim().split(/\s+/).join(".");
      const label = (el.innerText || el.value || el.getAttribute("aria-label") || "").trim().slice(0, 40);
      return label ? `${text} "${label}"` : text;
    };
    const width = window.innerWidth;
    const scrollWidth = document.documentElement.scrollWidth;
    if (scrollWidth > width) {
      // What sticks out, elements outside any scroller first (inside one, only what is
      // positioned out of its flow escapes it).
      const inScroller = (el) => {
        for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
          if (getComputedStyle(p).overflowX !== "visible") return true;
        }
        return false;
      };
      const wide = [...document.body.querySelectorAll("*")]
        .filter((el) => el.getBoundingClientRect().right > width + 0.5)
        .map((el) => ({ el, scroller: inScroller(el) }))
        .sort((a, b) => a.scroller - b.scroller)
        .slice(0, 8)
        .map(({ el, scroller }) => `${name(el)} (${getComputedStyle(el).position}${scroller ? ", in a scroller" : ""}, right edge at ${Math.round(el.getBoundingClientRect().right)} px)`);
      problems.push(`the page is ${scrollWidth} px wide in a ${width} px window: ${wide.join("; ")}`);
    }
    const controls = document.querySelectorAll(
      'button, input:not([type="hidden"]), select, textarea, summary, header a, nav a',
    );
    for (const control of controls) {
      if (control.getClientRects().length === 0) continue; // not rendered (a closed <details>)
      const style = getComputedStyle(control);
      if (style.visibility === "hidden") continue;
      const target = ["checkbox", "radio"].includes(control.type) ? (control.closest("label") ?? control) : control;
      const box = target.getBoundingClientRect();
      if (box.bottom <= 0 || box.right <= 0) continue; // parked off-screen until focused (the skip link)
      if (box.width < min - 0.5 || box.height < min - 0.5) {
        problems.push(`${name(control)} is ${Math.round(box.width)} x ${Math.round(box.height)} px`);
      }
    }
    return problems;
  }, MIN_TARGET);
}

/** Formats violations for an assertion message. */
function describe(violations) {
  return violations
    .map((v) => `  [${v.impact}] ${v.id}: ${v.help}\n${v.targets.slice(0, 6).map((t) => `      ${t}`).join("\n")}`)
    .join("\n");
}

/**
 * Checks one page: axe at desktop size, then at phone size axe again, no sideways
 * scrolling, touch targets, and the screenshot. `prepare` opens the page and brings it into
 * the state to check (a widget used, a form shown).
 */
async function checkPage(name, browser, prepare) {
  const page = await browser.context.newPage();
  try {
    await page.setViewportSize(DESKTOP);
    await prepare(page);
    const desktop = await axe(page);
    await page.setViewportSize(PHONE);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.waitForTimeout(100);
    const phone = await axe(page);
    const layout = await phoneProblems(page);
    await page.screenshot({ path: join(outputDir, `phone-${name}.png`), fullPage: true });
    const seen = new Set();
    const all = [...desktop, ...phone].filter((v) => {
      const key = `${v.id} ${v.targets.join(",")}`;
      return seen.has(key) ? false : (seen.add(key), true);
    });
    report[name] = { url: page.url(), violations: all, phone: layout };
    const failing = all.filter((v) => FAILING_IMPACTS.includes(v.impact));
    const messages = [];
    if (failing.length) messages.push(`axe found serious or critical violations on ${name}:\n${describe(failing)}`);
    if (layout.length) messages.push(`at ${PHONE.width} x ${PHONE.height} on ${name}:\n${layout.map((p) => `  ${p}`).join("\n")}`);
    assert.ok(messages.length === 0, messages.join("\n"));
  } finally {
    await page.close();
  }
}

/** Opens `path` and waits for the app to hydrate and the page's heading to show. */
async function open(page, path) {
  await page.goto(server.baseUrl + path);
  await waitForHydration(page);
  await page.locator("h1").first().waitFor();
}

// The public pages, as a visitor who has not joined.
test("home page", async () => checkPage("home", anon, (page) => open(page, "/")));
test("join page", async () => checkPage("join", anon, (page) => open(page, "/join")));
test("join page with the class found", async () =>
  checkPage("join-found", anon, async (page) => {
    await open(page, "/join");
    await page.locator('input[name="code"]').fill(joinCode);
    await page.getByRole("button", { name: "Find my class" }).click();
    await page.locator('select[name="team_id"]').waitFor();
  }));
test("instructor sign-in page", async () => checkPage("sign-in", anon, (page) => open(page, "/instructor/sign-in")));
test("page not found", async () => checkPage("not-found", anon, (page) => open(page, "/no-such-page")));

// The student's pages, with the widgets used so their results are checked too.
const WIDGET_STEPS = {
  tokenization: async (page) => {
    await page.getByRole("button", { name: "Split into tokens" }).click();
    await page.getByTestId("pieces").waitFor();
  },
  attention: async (page) => {
    await page.getByRole("button", { name: "Show attention" }).click();
    await page.getByTestId("heatmap").first().waitFor();
    await page.getByTestId("team-attention").waitFor();
  },
  "cls-token": async (page) => {
    await page.getByRole("button", { name: "Read the [CLS] vector" }).click();
    await page.getByTestId("cls-strip").waitFor();
  },
  lora: async (page) => {
    await page.getByTestId("adapter-params").waitFor();
  },
  hyperparameters: async (page) => {
    await page.getByTestId("steps-per-epoch").waitFor();
  },
  overfitting: async (page) => {
    await page.getByTestId("overfitting-chart").waitFor();
  },
};
for (const slug of SLUGS) {
  test(`lesson ${slug}`, async () =>
    checkPage(`lesson-${slug}`, student, async (page) => {
      await open(page, `/lessons/${slug}`);
      await WIDGET_STEPS[slug]?.(page);
    }));
}
test("the student's class page", async () => checkPage("class", student, (page) => open(page, "/class")));
test("quiz page", async () =>
  checkPage("quiz", student, async (page) => {
    await open(page, "/quiz");
    await page.getByTestId("quiz-question").first().waitFor();
  }));
test("team runs page", async () =>
  checkPage("team", student, async (page) => {
    await open(page, "/team");
    await page.getByTestId("compare-loss").waitFor();
    await page.getByTestId("public-board").waitFor();
  }));
test("run page", async () =>
  checkPage("run", student, async (page) => {
    await open(page, `/runs/${runIds[0]}`);
    await page.locator('[data-testid="loss-chart"] polyline').first().waitFor();
    await page.getByTestId("attention-pair").first().waitFor();
  }));

// The instructor's pages.
test("instructor's classes", async () =>
  checkPage("instructor", teacher, async (page) => {
    await open(page, "/instructor");
    await page.getByTestId("classes").waitFor();
  }));
test("instructor's class page", async () =>
  checkPage("instructor-class", teacher, async (page) => {
    await open(page, `/instructor/classes/${classId}`);
    await page.getByTestId("teams").waitFor();
    await page.getByTestId("class-runs").waitFor();
  }));
test("models page", async () =>
  checkPage("models", teacher, async (page) => {
    await open(page, "/instructor/models");
    await page.getByTestId("models").waitFor();
    await page.getByTestId("model-all-MiniLM-L6-v2").waitFor();
  }));
test("training data page", async () =>
  checkPage("data", teacher, async (page) => {
    await open(page, "/instructor/data");
    await page.getByTestId("data-ready").waitFor();
    await page.getByTestId("data-release").waitFor();
  }));
test("grading overview", async () =>
  checkPage("grading", teacher, async (page) => {
    await open(page, `/instructor/classes/${classId}/grading`);
    await page.getByTestId("grading-overview").waitFor();
  }));
test("grading one question", async () =>
  checkPage("grading-question", teacher, async (page) => {
    await open(page, `/instructor/classes/${classId}/grading/fine-tuning-1`);
    await page.getByTestId("answer-card").first().waitFor();
  }));

test("a run evaluated once draws its one validation point, and every chart has its numbers as a table", async () => {
  const page = await student.context.newPage();
  try {
    await open(page, `/runs/${runIds[0]}`);
    // The charts draw once the run's stored events have streamed in.
    const chart = page.locator('svg[data-testid="validation-loss-chart"]');
    await chart.waitFor();
    assert.equal(await chart.locator("circle.marker").count(), 1, "the single evaluation is drawn as a dot");
    const label = await chart.getAttribute("aria-label");
    assert.match(label, /validation loss: one point, \d\.\d{3} at step \d+/, label);
    const table = chart.locator("xpath=..").locator("details table");
    assert.equal(await table.locator("tbody tr").count(), 1, "one row for the one evaluation");
    for (const testid of ["loss-chart", "validation-loss-chart", "validation-accuracy-chart", "lr-chart"]) {
      const svg = page.locator(`svg[data-testid="${testid}"]`);
      assert.equal(await svg.getAttribute("role"), "img", testid);
      assert.ok((await svg.getAttribute("aria-label")).length > 20, `${testid} has a summary`);
      assert.ok((await svg.locator("xpath=..").locator("details table").count()) === 1, `${testid} has a table`);
    }
    const heatmaps = await page.getByTestId("heatmap").count();
    assert.ok(heatmaps >= 2, "before and after maps");
    assert.equal(await page.locator(".heatmap-scroll + .heat-scale + details table").count(), heatmaps, "each heatmap has a key and a table");
  } finally {
    await page.close();
  }
});

// Keyboard only from here: Tab/Shift+Tab to move, Enter/Space/arrows to act.

/**
 * Presses Tab (or Shift+Tab) until the focused element matches `selector` (and contains
 * `text`, when given), then checks that the focus can be seen.
 */
async function tabTo(page, selector, { text, backwards = false, max = 200 } = {}) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press(backwards ? "Shift+Tab" : "Tab");
    const found = await page.evaluate(
      ([selector, text]) => {
        const el = document.activeElement;
        return Boolean(el && el.matches(selector) && (!text || el.textContent.includes(text)));
      },
      [selector, text ?? null],
    );
    if (found) {
      const focus = await page.evaluate(() => {
        const style = getComputedStyle(document.activeElement);
        return { style: style.outlineStyle, width: parseFloat(style.outlineWidth) };
      });
      assert.ok(focus.style !== "none" && focus.width >= 2, `the focus on ${selector} is visible (outline ${focus.style} ${focus.width}px)`);
      return;
    }
  }
  const at = await page.evaluate(() => document.activeElement?.outerHTML.slice(0, 200));
  assert.fail(`${max} presses of ${backwards ? "Shift+Tab" : "Tab"} did not reach ${selector}${text ? ` "${text}"` : ""}; the focus is on ${at}`);
}

test("keyboard only: a student joins, opens a lesson, uses the tokenizer and answers the quiz", { timeout: 120_000 }, async () => {
  const page = await firstPage(anon);
  await page.setViewportSize(DESKTOP);
  await page.goto(server.baseUrl + "/join");
  await waitForHydration(page);

  // The first Tab reaches the skip link, which jumps past the header.
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.className), "skip-link");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.activeElement?.id === "main");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute("name")), "code", "the join code box follows");

  await page.keyboard.type(joinCode.toLowerCase());
  await page.keyboard.press("Enter");
  await page.getByTestId("class-name").waitFor();
  await tabTo(page, 'input[name="display_name"]');
  await page.keyboard.type("Kim");
  await tabTo(page, 'select[name="team_id"]');
  await page.keyboard.press("ArrowDown");
  assert.equal(await page.locator('select[name="team_id"] option:checked').innerText(), "Blue");
  await tabTo(page, 'button[type="submit"]', { text: "Join" });
  await page.keyboard.press("Enter");
  await page.waitForURL(server.baseUrl + "/class");
  await page.getByRole("heading", { level: 1, name: "Hello, Kim" }).waitFor();

  await tabTo(page, 'a[href="/lessons/tokenization"]');
  await page.keyboard.press("Enter");
  await page.waitForURL(server.baseUrl + "/lessons/tokenization");
  await page.getByRole("heading", { level: 1, name: "Tokenization" }).waitFor();
  await waitForHydration(page);
  await tabTo(page, ".tokenizer-playground textarea");
  await page.keyboard.press("Control+A");
  await page.keyboard.type("unhappiness");
  await tabTo(page, "button", { text: "Split into tokens" });
  await page.keyboard.press("Space");
  const pieces = page.getByTestId("pieces").locator(".piece");
  await pieces.first().waitFor();
  assert.deepEqual(await page.getByTestId("pieces").locator(".piece-text").allInnerTexts(), ["[CLS]", "un", "##ha", "##pp", "##iness", "[SEP]"]);
  // Not by color alone: each piece says which word it belongs to.
  assert.deepEqual(await page.getByTestId("pieces").locator(".piece-word").allInnerTexts(), ["special", "word 1", "word 1", "word 1", "word 1", "special"]);

  await tabTo(page, 'header a[href="/quiz"]', { backwards: true });
  await page.keyboard.press("Enter");
  await page.waitForURL(server.baseUrl + "/quiz");
  await waitForHydration(page);
  await page.getByTestId("quiz-state").filter({ hasText: "Save drafts as you go" }).waitFor();

  const text = page.locator('[data-testid="quiz-question"][data-key="fine-tuning-2"]');
  await tabTo(page, '[data-key="fine-tuning-2"] textarea');
  await page.keyboard.type("It keeps what cards are and learns the new rules.");
  await tabTo(page, '[data-key="fine-tuning-2"] button', { text: "Submit" });
  await page.keyboard.press("Enter");
  await text.getByTestId("answer-status").filter({ hasText: /^Submitted / }).waitFor();

  const choice = page.locator('[data-testid="quiz-question"][data-key="model-choice-2"]');
  await tabTo(page, '[data-key="model-choice-2"] input[type="radio"]');
  await page.keyboard.press("Space");
  for (let i = 0; i < 8; i++) {
    if ((await page.evaluate(() => document.activeElement?.value)) === "DeBERTa") break;
    await page.keyboard.press("ArrowDown");
  }
  assert.equal(await choice.locator("input:checked").getAttribute("value"), "DeBERTa");
  await tabTo(page, '[data-key="model-choice-2"] button', { text: "Submit" });
  await page.keyboard.press("Space");
  await choice.getByTestId("grade").filter({ hasText: "1 / 1 points · Correct." }).waitFor();
  await page.screenshot({ path: join(outputDir, "keyboard-student-quiz.png") });
});

test("keyboard only: the steps calculator, the attention viewer's pickers and the LoRA counter's boxes", { timeout: 120_000 }, async () => {
  const page = await student.context.newPage();
  try {
    // Typing a decimal digit by digit: "0." on the way to "0.05" must not be wiped.
    await open(page, "/lessons/hyperparameters");
    await tabTo(page, 'input[name="warmup_ratio"]');
    await page.keyboard.press("Control+A");
    await page.keyboard.type("0.05");
    assert.equal(await page.locator('input[name="warmup_ratio"]').inputValue(), "0.05");
    await page.getByTestId("warmup-steps").filter({ hasText: /^15$/ }).waitFor();

    await open(page, "/lessons/attention");
    await tabTo(page, "button", { text: "Show attention" });
    await page.keyboard.press("Enter");
    await page.getByTestId("heatmap").first().waitFor();
    const first = await page.getByTestId("heatmap").first().locator("rect").first().getAttribute("fill-opacity");
    await tabTo(page, 'select[name="head"]');
    await page.keyboard.press("ArrowDown");
    await page.waitForFunction(
      (old) => document.querySelector('[data-testid="heatmap"] rect')?.getAttribute("fill-opacity") !== old,
      first,
    );
    // The numbers behind the shades open with the keyboard too.
    await tabTo(page, "summary", { text: "The numbers: attention" });
    await page.keyboard.press("Enter");
    const table = page.locator("details[open] table").first();
    await table.waitFor();
    assert.ok((await table.locator("tbody tr").count()) >= 3, "a row per token");

    await open(page, "/lessons/lora");
    await page.getByTestId("adapter-params").filter({ hasText: "147,456" }).waitFor();
    await tabTo(page, 'input[type="checkbox"][name="key"]');
    await page.keyboard.press("Space");
    await page.getByTestId("adapter-params").filter({ hasText: "221,184" }).waitFor();
  } finally {
    await page.close();
  }
});

test("keyboard only: the instructor opens the class, the grading and grades an answer", { timeout: 120_000 }, async () => {
  const page = await firstPage(teacher);
  await page.setViewportSize(DESKTOP);
  await page.goto(server.baseUrl + "/instructor");
  await waitForHydration(page);
  await page.getByTestId("classes").waitFor();

  await tabTo(page, `a[href="/instructor/classes/${classId}"]`);
  await page.keyboard.press("Enter");
  await page.waitForURL(`${server.baseUrl}/instructor/classes/${classId}`);
  await waitForHydration(page);
  await tabTo(page, `a[href="/instructor/classes/${classId}/grading"]`);
  await page.keyboard.press("Enter");
  await page.waitForURL(`${server.baseUrl}/instructor/classes/${classId}/grading`);
  await tabTo(page, `a[href="/instructor/classes/${classId}/grading/fine-tuning-1"]`);
  await page.keyboard.press("Enter");
  await page.waitForURL(`${server.baseUrl}/instructor/classes/${classId}/grading/fine-tuning-1`);
  await waitForHydration(page);
  await page.getByTestId("grading-progress").filter({ hasText: "0 of 1 answers graded" }).waitFor();

  const card = page.getByTestId("answer-card");
  await tabTo(page, 'input[name="points"]');
  await page.keyboard.type("1.5");
  await tabTo(page, 'textarea[name="feedback"]');
  await page.keyboard.type("Good; also name the card-game analogy.");
  await tabTo(page, 'button[type="submit"]', { text: "Save grade" });
  await page.keyboard.press("Enter");
  const saved = card.getByRole("status").filter({ hasText: "Saved" });
  const refused = card.getByRole("alert");
  await Promise.race([saved.waitFor(), refused.waitFor()]);
  assert.ok(await saved.isVisible(), `the grade was not saved: ${await refused.innerText().catch(() => "")}`);
  await page.getByTestId("grading-progress").filter({ hasText: "1 of 1 answers graded" }).waitFor();
  await page.screenshot({ path: join(outputDir, "keyboard-instructor-graded.png") });
});

test("no page threw an uncaught error", () => {
  assert.deepEqual(pageErrors, []);
});
