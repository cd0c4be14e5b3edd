/**
 * The import arrows of the TypeScript tree run one way: cli -> (package entry) -> pipeline -> passes ->
 * pattern/ir, and no pass indexes a gdn op's inputs or outputs by a bare number (src/ops.ts names them).
 * The rules are pure functions over { path: source } so the test also shows that each one catches a breach.
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import * as pkg from "../src/index.js";

const ROOT = path.resolve(import.meta.dirname, "..");
type Sources = Map<string, string>; // repo-relative path ("src/ir/graph.ts") -> source text

function readTree(dirs: string[]): Sources {
  const out: Sources = new Map();
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(ROOT, rel), { withFileTypes: true })) {
      const p = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts"))
        out.set(p, fs.readFileSync(path.join(ROOT, p), "utf8"));
    }
  };
  dirs.forEach(walk);
  return out;
}

/** `import ... from "x"`, `export ... from "x"`, `import("x")` and `import "x"`: the specifier x. */
const IMPORT = new RegExp(
  [
    String.raw`(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"`,
    String.raw`\bimport\(\s*"([^"]+)"\s*\)`,
    String.raw`(?:^|\n)\s*import\s+"([^"]+)"`,
  ].join("|"),
  "g",
);

/** Repo-relative .ts paths a module imports or re-exports (relative specifiers only; ".js" maps to ".ts"). */
function importsOf(file: string, source: string): string[] {
  const specs = [...source.matchAll(IMPORT)].map((m) => m[1] ?? m[2] ?? m[3]!).filter((s) => s.startsWith("."));
  return specs.map((s) => path.posix.normalize(path.posix.join(path.posix.dirname(file), s)).replace(/\.js$/, ".ts"));
}

const under = (p: string, dir: string) => p.startsWith(`${dir}/`);
const stem = (p: string) => path.posix.basename(p, ".ts");

/** What passes/ may import from src/: the pass kit, the op contract and the float64 references. */
const PASS_MAY_IMPORT = (t: string) =>
  t === "src/ir/index.ts" || t === "src/pattern/index.ts" || t === "src/ops.ts" || under(t, "src/reference");

const KIT_ONLY = "a pass imports only the kit (src/ir, src/pattern), src/ops and src/reference";

/** Whether a module of passes/ may import another module of passes/ (its own helpers, never another pass). */
function sameFamily(from: string, to: string): boolean {
  const fromDir = path.posix.dirname(from);
  if (fromDir !== "passes") return path.posix.dirname(to) === fromDir; // inside passes/D/: only passes/D/*
  const toDir = path.posix.dirname(to);
  if (toDir === "passes") return stem(to).startsWith(`${stem(from)}-`); // layer-layout -> layer-layout-eval
  const family = toDir.slice("passes/".length).split("/")[0]!;
  return stem(from).startsWith(family); // gated-delta-chunk -> gated-delta/*
}

/** Every import that runs against the arrows, as "from -> to: rule". */
function arrowViolations(tree: Sources): string[] {
  const passFiles = new Set(importsOf("passes/index.ts", tree.get("passes/index.ts") ?? ""));
  const out: string[] = [];
  for (const [file, source] of tree) {
    for (const to of importsOf(file, source)) {
      const bad = (rule: string) => out.push(`${file} -> ${to}: ${rule}`);
      const toPasses = under(to, "passes");
      if (under(file, "src") && toPasses && file !== "src/index.ts") bad("only the package entry imports passes/");
      if ((under(file, "src/ir") || under(file, "src/pattern")) && (under(to, "src/pipeline") || under(to, "src/cli")))
        bad("the pass kit never imports the pipeline or the CLI");
      if (under(file, "src/ir") && under(to, "src/pattern")) bad("src/ir never imports src/pattern");
      if (under(file, "src/pipeline") && (under(to, "src/cli") || to === "src/index.ts"))
        bad("the pipeline never imports the CLI or the package entry");
      if (!under(file, "passes")) continue;
      if (under(to, "src") && !PASS_MAY_IMPORT(to)) bad(KIT_ONLY);
      if (toPasses && file !== "passes/index.ts" && passFiles.has(to)) bad("a pass never imports another pass");
      if (toPasses && file !== "passes/index.ts" && !passFiles.has(to) && !sameFamily(file, to))
        bad("a pass imports only its own helpers (passes/<its name>-*.ts, passes/<prefix of its name>/)");
    }
  }
  return out;
}

/**
 * Receivers that hold a gdn node in passes/ (a fused core, gating, norm or conv; `m.` fields too) and, in
 * passes/targets/, the lowered node `n` with its detached inputs `ins` and outputs `outs`.
 */
const GDN_RECEIVER = String.raw`\b(?:m\.)?(?:core|gating|norm|causalConv)`;
const NUMBERED_GDN_ACCESS = [
  new RegExp(String.raw`${GDN_RECEIVER}\.(?:inputs|outputs)\[\d+\]`),
  new RegExp(String.raw`setInput\(${GDN_RECEIVER}, \d+`),
];
const NUMBERED_LOWERING_ACCESS = [/\bn\.(?:inputs|outputs)\[\d+\]/, /\b(?:ins|outs)\[\d+\]/, /\]\s*=\s*(?:ins|outs)\b/];

/** Lines of passes/ that index a gdn node's inputs/outputs by a bare number, as "file:line: text". */
function numberedGdnAccess(tree: Sources): string[] {
  const out: string[] = [];
  for (const [file, source] of tree) {
    if (!under(file, "passes")) continue;
    const lowering = under(file, "passes/targets");
    const rules = lowering ? [...NUMBERED_GDN_ACCESS, ...NUMBERED_LOWERING_ACCESS] : NUMBERED_GDN_ACCESS;
    source.split("\n").forEach((line, i) => {
      if (rules.some((r) => r.test(line))) out.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  return out;
}

/** Value names (not types) the modules of passes/ import from the kit and the op contract, sorted. */
function kitNamesUsed(tree: Sources): string[] {
  const names = new Set<string>();
  for (const [file, source] of tree) {
    if (!under(file, "passes")) continue;
    for (const m of source.matchAll(/import\s+(type\s+)?\{([^}]*)\}\s+from\s+"([^"]+)"/g)) {
      const to = path.posix.normalize(path.posix.join(path.posix.dirname(file), m[3]!)).replace(/\.js$/, ".ts");
      if (m[1] || !["src/ir/index.ts", "src/pattern/index.ts", "src/ops.ts"].includes(to)) continue;
      for (const item of m[2]!.split(",").map((x) => x.trim())) if (item && !item.startsWith("type ")) names.add(item);
    }
  }
  return [...names].sort();
}

describe("architecture", () => {
  const tree = readTree(["src", "passes"]);

  it("reads the tree it checks (the entry, the pass list and the kit are there)", () => {
    const entries = ["src/index.ts", "passes/index.ts", "src/pipeline/index.ts", "src/ir/index.ts"];
    entries.push("src/pattern/index.ts");
    for (const f of entries) expect(tree.has(f), f).toBe(true);
    expect(importsOf("passes/index.ts", tree.get("passes/index.ts")!)).toContain("passes/layer-layout.ts");
  });

  it("import arrows run one way: cli -> entry -> pipeline -> passes -> pattern/ir", () => {
    expect(arrowViolations(tree)).toEqual([]);
  });

  it("the package exports the whole kit: a pass written outside gdn-fuse can use what the built-in ones use", () => {
    const used = kitNamesUsed(tree);
    expect(used).toContain("candidatePass");
    expect(used).toContain("DeltaRuleIn");
    expect(used.filter((name) => !(name in pkg))).toEqual([]);
  });

  it("the package entry registers passes/index.ts as the default list, in its order", () => {
    expect(pkg.DEFAULT_PASSES).toEqual(pkg.BUILTIN_PASSES.map((p) => p.name));
    expect(pkg.DEFAULT_PASSES.slice(0, 3)).toEqual(["gated-delta-chunk", "gated-delta-recurrent", "layer-qk-l2norm"]);
    expect(pkg.DEFAULT_PASSES.at(-1)).toBe("lower-to-onnx");
  });

  it("the pipeline alone knows no passes: fuseModel without a pass list names the package entry", async () => {
    vi.resetModules(); // a fresh registry, as in a program that imports src/pipeline but not the package
    const pipeline = await import("../src/pipeline/index.js");
    const model = { graph: { node: [{ opType: "Identity", input: ["x"], output: ["y"] }] } };
    expect(pipeline.DEFAULT_PASSES).toEqual([]);
    await expect(pipeline.fuseModel(model)).rejects.toMatchObject({
      code: "E_USAGE",
      message: "no default passes are registered (import the package entry, gdn-fuse)",
    });
    expect((await pipeline.fuseModel(model, { passes: "none" })).nodesAfter).toBe(1);
  });

  it("each built-in pass has its test beside it (the target lowerings share passes/targets/lowering.test.ts)", () => {
    const missing = pkg.BUILTIN_PASSES.map((p) => p.name).filter((name) => {
      const dir = tree.has(`passes/${name}.ts`) ? "passes" : "passes/targets";
      expect(tree.has(`${dir}/${name}.ts`), `the module of pass ${name}`).toBe(true);
      const test = dir === "passes/targets" ? `${dir}/lowering.test.ts` : `${dir}/${name}.test.ts`;
      return !fs.existsSync(path.join(ROOT, test));
    });
    expect(missing).toEqual([]);
  });

  it("no pass indexes a gdn op's inputs or outputs by a bare number", () => {
    expect(numberedGdnAccess(tree)).toEqual([]);
  });

  it("each rule catches a breach", () => {
    const bad: Sources = new Map([
      ["passes/index.ts", 'import { a } from "./layer-a.js";\nimport { b } from "./targets/lower-b.js";\n'],
      [
        "src/pipeline/builtin.ts",
        'import { a } from "../../passes/layer-a.js";\nimport { main } from "../cli/fuse-model.js";\n',
      ],
      ["src/pattern/motifs.ts", 'import type { Pass } from "../pipeline/registry.js";\n'],
      ["src/ir/edit.ts", 'export { check } from "../pattern/match.js";\n'],
      ["passes/layer-a.ts", 'import { x } from "./targets/lower-b.js";\nimport { y } from "../src/ir/graph.js";\n'],
      ["passes/layer-c.ts", 'import { z } from "./gated-delta/core-region.js";\nconst q = core.inputs[0];\n'],
      [
        "passes/targets/lower-b.ts",
        "const [a, b] = ins;\nsetInput(m.gating, 1, v);\nconst w = n.inputs[ConvIn.weight];\n",
      ],
    ]);
    expect(arrowViolations(bad)).toEqual([
      "src/pipeline/builtin.ts -> passes/layer-a.ts: only the package entry imports passes/",
      "src/pipeline/builtin.ts -> src/cli/fuse-model.ts: the pipeline never imports the CLI or the package entry",
      "src/pattern/motifs.ts -> src/pipeline/registry.ts: the pass kit never imports the pipeline or the CLI",
      "src/ir/edit.ts -> src/pattern/match.ts: src/ir never imports src/pattern",
      "passes/layer-a.ts -> passes/targets/lower-b.ts: a pass never imports another pass",
      `passes/layer-a.ts -> src/ir/graph.ts: ${KIT_ONLY}`,
      "passes/layer-c.ts -> passes/gated-delta/core-region.ts: a pass imports only its own helpers " +
        "(passes/<its name>-*.ts, passes/<prefix of its name>/)",
    ]);
    expect(numberedGdnAccess(bad)).toEqual([
      "passes/layer-c.ts:2: const q = core.inputs[0];",
      "passes/targets/lower-b.ts:1: const [a, b] = ins;",
      "passes/targets/lower-b.ts:2: setInput(m.gating, 1, v);",
    ]);
  });
});
