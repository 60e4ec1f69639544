// Copies uPlot's browser build from node_modules into the gateway's static folder, so
// /dashboard serves it itself (no CDN at run time). Run: npm ci && npm run build.
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, "node_modules", "uplot");
const target = join(here, "..", "gateway", "observability", "static", "vendor");
const files = [
  ["dist/uPlot.iife.min.js", "uPlot.iife.min.js"],
  ["dist/uPlot.min.css", "uPlot.min.css"],
  ["LICENSE", "uPlot.LICENSE"],
];

mkdirSync(target, { recursive: true });
for (const [from, to] of files) {
  copyFileSync(join(source, from), join(target, to));
}
const version = JSON.parse(readFileSync(join(source, "package.json"), "utf8")).version;
console.log(`dashboard: vendored uPlot ${version} into ${target}`);
