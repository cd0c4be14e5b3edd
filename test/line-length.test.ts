// Long lines stop growing: no line of src/ or passes/ may exceed 160 characters. Files already formatted
// (npm run format, printWidth 120) are held to it now; the others are listed as a warning until the whole
// tree is formatted, then ENFORCED becomes everything.
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers/index.js";

const LIMIT = 160;
/** Files (paths from the root) held to LIMIT already: those formatted, or already within it. */
const ENFORCED = [
  /^src\/(numeric|ops-model)\.ts$/,
  /^src\/(verify|cli|reference)\//,
  /^passes\/layer-[a-z0-9-]+\.test\.ts$/,
  /^passes\/targets\/lowering\.test\.ts$/,
];

/** Each line of a .ts file under `dirs` longer than LIMIT: its file and "file:line (N chars)". */
function longLines(dirs: string[]): { file: string; where: string }[] {
  const found: { file: string; where: string }[] = [];
  for (const dir of dirs)
    for (const rel of fs.readdirSync(path.join(ROOT, dir), { recursive: true, encoding: "utf8" })) {
      if (!rel.endsWith(".ts")) continue;
      const file = path.posix.join(dir, rel.split(path.sep).join("/"));
      fs.readFileSync(path.join(ROOT, file), "utf8")
        .split("\n")
        .forEach((line, i) => {
          if (line.length > LIMIT) found.push({ file, where: `${file}:${i + 1} (${line.length} chars)` });
        });
    }
  return found.sort((a, b) => a.where.localeCompare(b.where));
}

describe("line length", () => {
  const offenders = longLines(["src", "passes"]);
  const enforced = offenders.filter((o) => ENFORCED.some((re) => re.test(o.file))).map((o) => o.where);

  it(`no line of the formatted files in src/ and passes/ exceeds ${LIMIT} characters`, () => {
    expect(enforced).toEqual([]);
  });

  it("lists the long lines of the files not formatted yet (a warning, not a failure)", () => {
    const list = offenders.map((o) => o.where).join("\n");
    if (offenders.length > 0) console.warn(`${offenders.length} lines over ${LIMIT} characters:\n${list}`);
    expect(offenders.length).toBeGreaterThanOrEqual(enforced.length);
  });
});
