// What each page's WebAssembly costs as served: opens pages of a fresh server in Chromium
// (Playwright, as the browser tests do), as a visitor, as a student of a class in the
// competition phase and as their instructor; records every .wasm and .js file of /pkg/ the
// page fetched until it hydrated, and adds up their brotli sizes (the .br files the server
// sends to browsers that accept br). Prints one line per page, and the app's main module
// and the islands bundles (which the islands pages load instead, app/src/islands.rs) on
// their own.
//
//   JIGSAW_BIN=$CARGO_TARGET_DIR/release/jigsaw-lab node bench/page_bundles.mjs
//
// Run from the repository root after `scripts/build-site.sh` (it reads target/site/pkg).
import { statSync } from "node:fs";
import { join } from "node:path";
import { classWithStudent, startBrowser, startServer, waitForHydration } from "../end2end/harness.mjs";

const pkg = join(process.env.JIGSAW_TEST_SITE_ROOT ?? "target/site", "pkg");
const lessons = ["tokenization", "attention", "cls-token", "hyperparameters", "lora", "overfitting", "fine-tuning", "model-choice"];
const server = await startServer({});
const visitor = await startBrowser();
const pageErrors = [];
const { teacher, student, classId } = await classWithStudent(server, { className: "Bench", phase: "competition", pageErrors });
const brotli = (file) => statSync(join(pkg, file + ".br")).size;
const visits = [
  ...["/", ...lessons.map((slug) => `/lessons/${slug}`), "/join", "/instructor/sign-in", "/no-such-page"].map((path) => ["visitor", visitor, path]),
  ...["/class", "/quiz", "/team"].map((path) => ["student", student, path]),
  ...["/instructor", `/instructor/classes/${classId}`, `/instructor/classes/${classId}/grading`, `/instructor/classes/${classId}/grading/lora-1`, "/instructor/models", "/instructor/data"].map((path) => [
    "instructor",
    teacher,
    path,
  ]),
];
try {
  for (const [who, browser, path] of visits) {
    const page = await browser.context.newPage();
    const fetched = new Set();
    page.on("response", (response) => {
      const name = new URL(response.url()).pathname;
      if (name.startsWith("/pkg/") && /\.(wasm|js)$/.test(name)) fetched.add(name.slice(5));
    });
    await page.goto(server.baseUrl + path);
    await waitForHydration(page);
    const files = [...fetched];
    const sum = (ext) => files.filter((f) => f.endsWith(ext)).reduce((total, file) => total + brotli(file), 0);
    const wasm = files.filter((f) => f.endsWith(".wasm")).length;
    console.log(
      `${path} (${who}): ${wasm} wasm files, ${sum(".wasm")} bytes as served (brotli), and ${files.length - wasm} scripts, ${sum(".js")} bytes; ${sum(".wasm") + sum(".js")} in all`,
    );
    await page.close();
  }
  console.log(`main module alone: ${brotli("jigsaw-lab.wasm")} bytes as served (brotli)`);
  for (const group of ["lessons", "class", "runs", "instructor"]) {
    console.log(
      `islands bundle ${group}: ${brotli(`jigsaw-lab-${group}.wasm`)} bytes of wasm and ${brotli(`jigsaw-lab-${group}.js`)} of script as served (brotli)`,
    );
  }
  if (pageErrors.length > 0) console.log(`page errors: ${pageErrors.join("; ")}`);
} finally {
  for (const browser of [visitor, teacher, student]) await browser.stop();
  await server.stop();
}
