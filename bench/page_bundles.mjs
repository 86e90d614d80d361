// What each page's WebAssembly costs as served: opens pages of a fresh server in Chromium
// (Playwright, as the browser tests do), records every .wasm and .js file of /pkg/ the page
// fetched until it hydrated, and adds up their brotli sizes (the .br files the server sends
// to browsers that accept br). Prints one line per page, and the app's main module and the
// islands bundle (which the home page and the lessons load instead) on their own.
//
//   JIGSAW_BIN=$CARGO_TARGET_DIR/release/jigsaw-lab node bench/page_bundles.mjs
//
// Run from the repository root after `scripts/build-site.sh` (it reads target/site/pkg).
import { statSync } from "node:fs";
import { join } from "node:path";
import { startBrowser, startServer, waitForHydration } from "../end2end/harness.mjs";

const pkg = join(process.env.JIGSAW_TEST_SITE_ROOT ?? "target/site", "pkg");
const pages = ["/", "/lessons/tokenization", "/lessons/attention", "/lessons/cls-token", "/lessons/hyperparameters", "/lessons/lora", "/lessons/overfitting", "/lessons/fine-tuning", "/lessons/model-choice", "/join", "/instructor/sign-in", "/class"];
const server = await startServer({});
const browser = await startBrowser();
const brotli = (file) => statSync(join(pkg, file + ".br")).size;
try {
  for (const path of pages) {
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
      `${path}: ${wasm} wasm files, ${sum(".wasm")} bytes as served (brotli), and ${files.length - wasm} scripts, ${sum(".js")} bytes`,
    );
    await page.close();
  }
  console.log(`main module alone: ${brotli("jigsaw-lab.wasm")} bytes as served (brotli)`);
  console.log(
    `islands bundle: ${brotli("jigsaw-lab-islands.wasm")} bytes of wasm and ${brotli("jigsaw-lab-islands.js")} of script as served (brotli)`,
  );
} finally {
  await browser.stop();
  await server.stop();
}
