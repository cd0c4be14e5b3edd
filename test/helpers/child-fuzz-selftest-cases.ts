/** Cases for test/child-fuzz.test.ts: one of each outcome the harness must tell apart. */
export async function runCase(index: number): Promise<string> {
  if (index === 3) process.kill(process.pid, "SIGSEGV");
  if (index === 5) await new Promise(() => setInterval(() => {}, 1000)); // hangs
  if (index === 7) throw Object.assign(new Error("bad input\nsecond line"), { code: "E_TEST" });
  if (index === 9) process.abort();
  return `case ${index}`;
}
