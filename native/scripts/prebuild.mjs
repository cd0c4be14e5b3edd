#!/usr/bin/env node
// Release step: puts this host's native binaries (native/binaries.json) into prebuilds/<tag>/, which
// `npm pack` ships in the package (prebuilds/ is in package.json "files" and ignored by git).
//
//   npm run prebuilds                               clean source build, then copy
//   node native/scripts/prebuild.mjs --from-build   copy the current build/Release (tests, CI)
//
// One x64 build serves AVX2 and AVX-512 machines: the kernels pick their ISA at run time, and this script
// refuses a build made with -march/-mtune=native (it would only run on CPUs like the build host's).
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { buildDir, hostTag, nativeBinaries, prebuildDir, root } from "./binaries.mjs";

function fail(message) {
  console.error(`gdn-fuse prebuild: ${message}`);
  process.exit(1);
}

/** The flags node-gyp compiled with (build/*.mk) and the environment's, checked for host-only tuning. */
function checkPortableFlags() {
  const makefiles = existsSync(join(root, "build"))
    ? readdirSync(join(root, "build")).filter((f) => f.endsWith(".mk")).map((f) => join(root, "build", f))
    : [];
  const sources = [
    ...makefiles.map((f) => [f, readFileSync(f, "utf8")]),
    ...["CFLAGS", "CXXFLAGS", "CPPFLAGS"].map((v) => [`$${v}`, process.env[v] ?? ""]),
  ];
  for (const [where, text] of sources) {
    if (/-m(arch|tune|cpu)=native\b/.test(text)) fail(`${where} builds for the build host's CPU only (-m...=native); rebuild without it`);
  }
}

if (!process.argv.includes("--from-build")) {
  const r = spawnSync(process.execPath, [join(root, "native", "scripts", "build.mjs"), "--source"], { stdio: "inherit" });
  if (r.status !== 0) fail("the source build failed");
}
checkPortableFlags();
rmSync(prebuildDir, { recursive: true, force: true });
mkdirSync(prebuildDir, { recursive: true });
for (const binary of nativeBinaries()) {
  const from = join(buildDir, binary.file);
  if (!existsSync(from)) {
    if (binary.optional) continue;
    fail(`${from} is missing; build first (npm run build:native)`);
  }
  copyFileSync(from, join(prebuildDir, binary.file));
}
console.log(`gdn-fuse prebuild: ${hostTag()}: ${readdirSync(prebuildDir).join(", ")} in ${prebuildDir}`);
