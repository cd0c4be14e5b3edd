/**
 * The child side of child-fuzz.ts: imports the case module named by GDN_FUZZ_CASE_MODULE, says it is
 * ready, then runs each case index the parent sends and answers with its outcome.
 */
const modulePath = process.env.GDN_FUZZ_CASE_MODULE;
if (!modulePath || !process.send) throw new Error("child-fuzz-worker: run me through test/helpers/child-fuzz.ts");

interface CaseModule {
  runCase(index: number): Promise<string | void> | string | void;
}
const mod = (await import(modulePath)) as CaseModule;

/** "Name [code]: message", first line only. */
function describe(e: unknown): string {
  if (!(e instanceof Error)) return `non-Error thrown: ${String(e)}`;
  const code = (e as { code?: unknown }).code;
  return `${e.name}${code !== undefined ? ` [${String(code)}]` : ""}: ${e.message.split("\n")[0]}`;
}

process.on("message", async (m: { index: number }) => {
  let reply: { index: number; status: "ok" | "error"; detail: string };
  try {
    reply = { index: m.index, status: "ok", detail: String((await mod.runCase(m.index)) ?? "") };
  } catch (e) {
    reply = { index: m.index, status: "error", detail: describe(e) };
  }
  process.send!(reply);
});
process.send({ ready: true });
