// The whole path in a real browser: server-rendered lessons, hydration, and a server
// function round trip to SQLite.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { classWithStudent, outputDir, startBrowser, startServer, waitForHydration } from "../harness.mjs";

const SLUGS = ["fine-tuning", "tokenization", "attention", "cls-token", "model-choice", "hyperparameters", "lora", "overfitting"];

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await startBrowser();
});

after(async () => {
  await browser?.stop();
  await server?.stop();
});

/** Records the WebAssembly modules a page fetches. */
function wasmFetches(page) {
  const modules = [];
  page.on("request", (request) => {
    const path = new URL(request.url()).pathname;
    if (path.endsWith(".wasm")) modules.push(path);
  });
  return modules;
}

test("the home page lists the eight lessons and, having no island, fetches no WebAssembly", async () => {
  const page = await browser.context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  const modules = wasmFetches(page);
  await page.goto(server.baseUrl + "/");
  await waitForHydration(page);
  assert.deepEqual(modules, []);
  const hrefs = await page.locator(".lesson-card a").evaluateAll((links) => links.map((a) => a.getAttribute("href")));
  assert.deepEqual(hrefs, SLUGS.map((slug) => `/lessons/${slug}`));
  assert.equal(await page.title(), "Jigsaw Lab");
  await page.screenshot({ path: join(outputDir, "home.png"), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test("clicking \"I've got it\" updates the page from the database without a reload", async () => {
  const page = await browser.context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  const modules = wasmFetches(page);
  await page.goto(server.baseUrl + "/lessons/attention");
  await waitForHydration(page);
  // The lesson's islands come from the lessons' own small bundle, not the whole app.
  assert.deepEqual(modules, ["/pkg/jigsaw-lab-lessons.wasm"]);
  const count = page.getByTestId("checkin-count");
  const button = page.getByRole("button", { name: "I've got it" });
  await count.filter({ hasText: "0 classmates have got it" }).waitFor();
  let navigated = false;
  page.on("framenavigated", () => (navigated = true));

  await button.click();
  await count.filter({ hasText: "1 classmate has got it" }).waitFor();
  assert.equal(await page.getByRole("button", { name: "Thanks, counted" }).isDisabled(), true);
  assert.equal(navigated, false, "the update came from the hydrated app, not a page load");
  await page.screenshot({ path: join(outputDir, "lesson-checked-in.png"), fullPage: true });

  await page.reload();
  await waitForHydration(page);
  await count.filter({ hasText: "1 classmate has got it" }).waitFor();
  assert.deepEqual(errors, []);
  await page.close();
});

test("a lesson card on the home page opens the lesson", async () => {
  const page = await browser.context.newPage();
  await page.goto(server.baseUrl + "/");
  await waitForHydration(page);
  await page.getByRole("link", { name: /Tokenization/ }).click();
  await page.waitForURL("**/lessons/tokenization");
  await page.getByRole("heading", { level: 1, name: "Tokenization" }).waitFor();
  assert.match(await page.locator(".lesson-body").innerText(), /unhappiness/);
  await page.close();
});

test("an unknown lesson shows a helpful message", async () => {
  const page = await browser.context.newPage();
  const response = await page.goto(server.baseUrl + "/lessons/quantum-knitting");
  assert.equal(response.status(), 404);
  await page.getByText("There is no lesson called").waitFor();
  await page.close();
});

test("the tokenizer playground shows the pieces of a word", async () => {
  const page = await browser.context.newPage();
  await page.goto(server.baseUrl + "/lessons/tokenization");
  await waitForHydration(page);
  await page.locator(".tokenizer-playground textarea").fill("unhappiness");
  await page.getByRole("button", { name: "Split into tokens" }).click();
  const pieces = page.getByTestId("pieces").locator(".piece-text");
  await pieces.first().waitFor();
  assert.deepEqual(await pieces.allInnerTexts(), ["[CLS]", "un", "##ha", "##pp", "##iness", "[SEP]"]);
  await page.getByText("6 pieces for 1 word (").waitFor();
  await page.locator(".tokenizer-playground").screenshot({ path: join(outputDir, "tokenizer-playground.png") });
  await page.close();
});

test("the steps calculator answers the lesson's question as you type", async () => {
  const page = await browser.context.newPage();
  await page.goto(server.baseUrl + "/lessons/hyperparameters");
  await waitForHydration(page);
  assert.equal(await page.getByTestId("steps-per-epoch").innerText(), "100");
  await page.locator('input[name="batch_size"]').fill("32");
  await page.getByTestId("steps-per-epoch").filter({ hasText: "32" }).waitFor();
  assert.equal(await page.getByTestId("total-steps").innerText(), "96");
  assert.equal(await page.getByTestId("warmup-steps").innerText(), "10");
  await page.locator('input[name="batch_size"]').fill("0");
  await page.getByRole("alert").waitFor();
  await page.close();
});

test("the attention viewer draws a heatmap for a chosen head, asking for another layer when chosen", async () => {
  const page = await browser.context.newPage();
  await page.goto(server.baseUrl + "/lessons/attention");
  await waitForHydration(page);
  await page.getByRole("button", { name: "Show attention" }).click();
  const heatmap = page.getByTestId("heatmap");
  await heatmap.waitFor();
  assert.equal(await heatmap.locator("rect").count(), 64, "8 tokens x 8 tokens");
  const before = await heatmap.locator("rect").first().getAttribute("fill-opacity");
  await page.locator('select[name="head"]').selectOption("3");
  await page.locator('select[name="layer"]').selectOption("0");
  await page.waitForFunction(
    (old) => document.querySelector('[data-testid="heatmap"] rect')?.getAttribute("fill-opacity") !== old,
    before,
  );
  // The answer carried only the last layer; layer 1 came with a second request, and the
  // chosen head stayed chosen.
  assert.equal(await page.locator('select[name="layer"]').inputValue(), "0");
  assert.equal(await page.locator('select[name="head"]').inputValue(), "3");
  await page.locator(".attention-viewer").screenshot({ path: join(outputDir, "attention-viewer.png") });
  await page.close();
});

test("the LoRA counter shows the lesson's 0.65% and updates with the rank", async () => {
  const page = await browser.context.newPage();
  await page.goto(server.baseUrl + "/lessons/lora");
  await waitForHydration(page);
  await page.getByTestId("adapter-params").filter({ hasText: "147,456" }).waitFor();
  assert.equal(await page.getByTestId("adapter-percent").innerText(), "0.65%");
  await page.locator('input[name="rank"]').fill("8");
  await page.getByTestId("adapter-params").filter({ hasText: "73,728" }).waitFor();
  await page.close();
});

test("the [CLS] demo draws the vector and the head's probabilities", async () => {
  const page = await browser.context.newPage();
  await page.goto(server.baseUrl + "/lessons/cls-token");
  await waitForHydration(page);
  await page.getByRole("button", { name: "Read the [CLS] vector" }).click();
  await page.getByTestId("cls-strip").waitFor();
  assert.equal(await page.getByTestId("cls-strip").locator("rect").count(), 384);
  assert.equal(await page.getByTestId("probabilities").locator("li").count(), 2);
  await page.getByText("random weights until a team fine-tunes it").waitFor();
  await page.locator(".cls-demo").screenshot({ path: join(outputDir, "cls-demo.png") });
  await page.close();
});

test("signing out and leaving the class work from a lesson page, which does not hydrate the header", async () => {
  // The lessons load the islands bundle: the header's forms post to the server without the
  // app, which answers with a redirect to the home page.
  const pageErrors = [];
  const { teacher, student } = await classWithStudent(server, { className: "Lesson readers", pageErrors });
  try {
    for (const [person, button] of [[teacher, "Sign out"], [student, "Leave"]]) {
      const page = await person.context.newPage();
      await page.goto(server.baseUrl + "/lessons/tokenization");
      await waitForHydration(page);
      await page.getByRole("button", { name: button }).click();
      await page.waitForURL(server.baseUrl + "/");
      await page.getByRole("link", { name: "Join a class" }).waitFor();
      await page.close();
    }
    assert.deepEqual(pageErrors, []);
  } finally {
    await student.stop();
    await teacher.stop();
  }
});
