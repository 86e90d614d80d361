// What each page's WebAssembly costs as served: opens pages of a fresh server in Chromium
// (Playwright, as the browser tests do), records every .wasm file the page fetched until it
// hydrated, and adds up their brotli sizes (the .br files the server sends to browsers that
// accept br). Prints one line per page and the main module on its own.
//
//   JIGSAW_BIN=$CARGO_TARGET_DIR/release/jigsaw-lab node bench/page_bundles.mjs
//
// Run from the repository root after `scripts/build-site.sh` (it reads target/site/pkg).
import { statSync } from "node:fs";
import { join } from "node:path";
import { startBrowser, startServer, waitForHydration } from "../end2end/harness.mjs";

const pkg = join(process.env.JIGSAW_TEST_SITE_ROOT ?? "target/site", "pkg");
const pages = ["/", "/lessons/tokenization", "/lessons/attention", "/lessons/cls-token", "/lessons/hyperparameters", "/lessons/lora", "/lessons/overfitting", "/lessons/fine-tuning", "/lessons/model-choice", "/join", "/instructor/sign-in"];
const server = await startServer({});
const browser = await startBrowser();
const brotli = (file) => statSync(join(pkg, file + ".br")).size;
try {
  for (const path of pages) {
    const page = await browser.context.newPage();
    const fetched = new Set();
    page.on("response", (response) => {
      const name = new URL(response.url()).pathname;
      if (name.startsWith("/pkg/") && name.endsWith(".wasm")) fetched.add(name.slice(5));
    });
    await page.goto(server.baseUrl + path);
    await waitForHydration(page);
    const files = [...fetched];
    const total = files.reduce((sum, file) => sum + brotli(file), 0);
    console.log(`${path}: ${files.length} wasm files, ${total} bytes as served (brotli)`);
    await page.close();
  }
  console.log(`main module alone: ${brotli("jigsaw-lab.wasm")} bytes as served (brotli)`);
} finally {
  await browser.stop();
  await server.stop();
}
