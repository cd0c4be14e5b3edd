/** onnxruntime-common session/run options -> the flat objects native/addon/options.cc reads. */
import type { InferenceSession } from "onnxruntime-node";
import { GdnFuseError } from "../errors.js";

const OPT_LEVELS: Record<string, number> = { disabled: 0, basic: 1, extended: 2, layout: 3, all: 99 };
const EXEC_MODES: Record<string, number> = { sequential: 0, parallel: 1 };

/** Flattens { session: { intra_op: { allow_spinning: "0" } } } into [["session.intra_op.allow_spinning", "0"]]. */
function flatten(obj: unknown, prefix = "", out: [string, string][] = []): [string, string][] {
  if (obj === undefined || obj === null) return out;
  if (typeof obj !== "object") {
    out.push([prefix, String(obj)]);
    return out;
  }
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  return out;
}

function integer(name: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new GdnFuseError("E_USAGE", `${name} must be an integer in [${min}, ${max}], got ${String(v)}`);
  }
  return v;
}

function pick<T>(name: string, v: unknown, table: Record<string, T>): T | undefined {
  if (v === undefined) return undefined;
  const r = typeof v === "string" ? table[v] : undefined;
  if (r === undefined) {
    throw new GdnFuseError("E_USAGE", `${name} must be one of ${Object.keys(table).join(", ")}, got ${String(v)}`);
  }
  return r;
}

export function sessionConfig(o: InferenceSession.SessionOptions, opsLibrary: string | null): Record<string, unknown> {
  const cfg: Record<string, unknown> = {
    intraOpNumThreads: integer("intraOpNumThreads", o.intraOpNumThreads, 0, 1 << 16),
    interOpNumThreads: integer("interOpNumThreads", o.interOpNumThreads, 0, 1 << 16),
    graphOptimizationLevel: pick("graphOptimizationLevel", o.graphOptimizationLevel, OPT_LEVELS),
    executionMode: pick("executionMode", o.executionMode, EXEC_MODES),
    enableCpuMemArena: o.enableCpuMemArena,
    enableMemPattern: o.enableMemPattern,
    logId: o.logId,
    logSeverityLevel: integer("logSeverityLevel", o.logSeverityLevel, 0, 4),
    logVerbosityLevel: integer("logVerbosityLevel", o.logVerbosityLevel, 0, 1 << 16),
    optimizedModelFilePath: o.optimizedModelFilePath,
    enableProfiling: o.enableProfiling,
    profileFilePrefix: o.profileFilePrefix,
    freeDimensionOverrides: o.freeDimensionOverrides ? Object.entries(o.freeDimensionOverrides) : undefined,
    configEntries: flatten(o.extra),
    opsLibrary: opsLibrary ?? undefined,
  };
  for (const k of Object.keys(cfg)) if (cfg[k] === undefined) delete cfg[k];
  return cfg;
}

export function runConfig(o: InferenceSession.RunOptions): Record<string, unknown> {
  const cfg: Record<string, unknown> = {
    logSeverityLevel: integer("logSeverityLevel", o.logSeverityLevel, 0, 4),
    logVerbosityLevel: integer("logVerbosityLevel", o.logVerbosityLevel, 0, 1 << 16),
    tag: o.tag,
    configEntries: flatten(o.extra),
  };
  for (const k of Object.keys(cfg)) if (cfg[k] === undefined) delete cfg[k];
  return cfg;
}
