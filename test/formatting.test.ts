// The code stays formatted: every TypeScript / JavaScript file of the code folders is as `npm run format`
// (prettier, .prettierrc) leaves it, and no line of src/ or passes/ exceeds 160 characters (prettier does not
// break long strings; a message that long is split by hand).
import fs from "node:fs";
import path from "node:path";
import * as prettier from "prettier";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers/index.js";

const LIMIT = 160;
const CODE_DIRS = ["src", "passes", "test", "bench", "examples"];

/** Paths (from the root) of the .ts / .mjs files under `dirs`, sorted. */
function codeFiles(dirs: string[]): string[] {
  return dirs
    .flatMap((dir) =>
      fs
        .readdirSync(path.join(ROOT, dir), { recursive: true, encoding: "utf8" })
        .filter((rel) => /\.(ts|mjs)$/.test(rel))
        .map((rel) => path.posix.join(dir, rel.split(path.sep).join("/"))),
    )
    .sort();
}

describe("formatting", () => {
  it(`no line of src/ and passes/ exceeds ${LIMIT} characters`, () => {
    const long = codeFiles(["src", "passes"]).flatMap((file) =>
      fs
        .readFileSync(path.join(ROOT, file), "utf8")
        .split("\n")
        .flatMap((line, i) => (line.length > LIMIT ? [`${file}:${i + 1} (${line.length} chars)`] : [])),
    );
    expect(long).toEqual([]);
  });

  it("every code file is formatted (npm run format)", async () => {
    const files = codeFiles(CODE_DIRS);
    expect(files).toContain("src/index.ts");
    const unformatted: string[] = [];
    for (const file of files) {
      const abs = path.join(ROOT, file);
      const options = { ...(await prettier.resolveConfig(abs)), filepath: abs };
      if (!(await prettier.check(fs.readFileSync(abs, "utf8"), options))) unformatted.push(file);
    }
    expect(unformatted).toEqual([]);
  });
});
