/**
 * Plain-JS copy of src/ (+ test/helpers/tensor-io.ts) for worker threads and child
 * processes, which cannot load TypeScript. typescript.transpileModule (no type check) into
 * build/test-runtime-js/, same layout, so the copy finds the same addon and op library.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import ts from "typescript";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const RUNTIME_JS_DIR = join(ROOT, "build", "test-runtime-js");

export function transpileRuntime(): { dir: string; runtimeUrl: string; helpersUrl: string } {
  // All of src/ (what src/runtime imports follows its imports: no list to keep in step), plus tensor-io.
  const files = [
    ...readdirSync(join(ROOT, "src"), { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
      .map((f) => `src/${f}`),
    "test/helpers/tensor-io.ts",
  ];
  for (const f of files) {
    const js = ts.transpileModule(readFileSync(join(ROOT, f), "utf8"), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
      fileName: f,
    }).outputText;
    const dest = join(RUNTIME_JS_DIR, f.replace(/\.ts$/, ".js"));
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, js);
  }
  writeFileSync(join(RUNTIME_JS_DIR, "package.json"), JSON.stringify({ type: "module" }));
  return {
    dir: RUNTIME_JS_DIR,
    runtimeUrl: pathToFileURL(join(RUNTIME_JS_DIR, "src/runtime/index.js")).href,
    helpersUrl: pathToFileURL(join(RUNTIME_JS_DIR, "test/helpers/tensor-io.js")).href,
  };
}
