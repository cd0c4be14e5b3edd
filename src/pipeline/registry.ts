/**
 * The pass registry. The package entry registers the built-in passes (passes/index.ts) as the default
 * list; export pipelines may register their own passes and name them in `FuseOptions.passes`.
 */
import { GdnFuseError } from "../errors.js";
import type { Pass } from "../pattern/pass.js";

const registry = new Map<string, Pass>();
const defaultNames: string[] = [];

export function registerPass(pass: Pass): void {
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(pass.name))
    throw new GdnFuseError("E_USAGE", `pass name "${pass.name}" is not kebab-case`);
  if (registry.has(pass.name) && registry.get(pass.name) !== pass)
    throw new GdnFuseError("E_USAGE", `a pass named "${pass.name}" is already registered`);
  registry.set(pass.name, pass);
}

/** Registers `passes` and appends them, in order, to the default list (a pass already in it stays once). */
export function registerDefaultPasses(passes: readonly Pass[]): void {
  for (const pass of passes) {
    registerPass(pass);
    if (!defaultNames.includes(pass.name)) defaultNames.push(pass.name);
  }
}

export function getPass(name: string): Pass {
  const p = registry.get(name);
  if (!p) throw new GdnFuseError("E_USAGE", `unknown pass "${name}" (known: ${[...registry.keys()].join(", ")})`);
  return p;
}

export function listPasses(): Pass[] {
  return [...registry.values()];
}

/** The names `fuseModel` runs when no passes are given, in order (filled by registerDefaultPasses). */
export const DEFAULT_PASSES: readonly string[] = defaultNames;
