// Fetches the ONNX Runtime C/C++ headers (C API 29) that the native build compiles against.
//
// No small package on the npm registry ships the API-29 headers with onnxruntime_ep_c_api.h; the one that
// does, com.github.asus4.onnxruntime@0.4.9, is a 150 MB tarball of binaries for Unity. So the tarball is
// streamed from the registry through gunzip and a minimal tar reader that keeps only the 15 header files
// (1.1 MB) and stops the download once they have passed; nothing else touches the disk. Every header is
// checked against the SHA-256 pinned below (the stream is cut early, so the tarball's own integrity hash
// cannot be checked). If the direct download fails (a proxy that only npm knows about, say), `npm pack`
// fetches the whole tarball into a temporary folder, the headers are taken from it and it is deleted.
// The headers are cached in $GDN_FUSE_CACHE (default ~/.cache/gdn-fuse) for the next build.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { createGunzip } from "node:zlib";

const PKG_NAME = "com.github.asus4.onnxruntime";
const PKG_VERSION = "0.4.9";
const TARBALL = `${PKG_NAME}-${PKG_VERSION}.tgz`;

/** The headers and their SHA-256 (identical in the tarball's three framework folders). */
export const HEADER_SHA256 = {
  "coreml_provider_factory.h": "d6430c47d2b076d4a40ba6523e78d75cc4c4b0e5604fb280168891331b057ade",
  "cpu_provider_factory.h": "0de52d129c718c07ee71a16b4953d8d483df019746a11caad77a0650a2f4ed47",
  "onnxruntime_c_api.h": "acc0cf4b3f28d39339c76770d76164bb7a0637dc89f5fde764b4017b632f6743",
  "onnxruntime_cxx_api.h": "9c63ed5bf0427ddf1c10a99aca0beeec77318ce77d2ea6f7ae76d7d933660f67",
  "onnxruntime_cxx_inline.h": "c508dbb7d8203003a2584b8712118cb88e5b4ef1e1c7876a9974156fb7489301",
  "onnxruntime_env_config_keys.h": "2d531fef7dd4ffd22f35d219e1a795dbaa1c94a4a7fd29397c0982232e4ca332",
  "onnxruntime_ep_c_api.h": "e6c986c9e98583f8113b2c6bc3864814883b806d501cf24da4d239c45753e235",
  "onnxruntime_ep_device_ep_metadata_keys.h": "422f5ec1866e0ee522dcb3b2a7d2388f068bc0d8775a9941979b79ca7e5876a0",
  "onnxruntime_error_code.h": "5ce3b054e798eced8d14f5b86e98692fd33470463f96194ce0700a2d53dd8721",
  "onnxruntime_experimental_c_api.h": "8eba5f79972508e19ed9c2c0f5b78491ac4a34bf00c023f6b2adf5505bab3bfa",
  "onnxruntime_experimental_cxx_api.h": "f7a36d1547d85def0761c94fccb0f7d1afce7ad719c81df4c89a954f890ef3d4",
  "onnxruntime_float16.h": "88b242845d25981633a0bbd1c148e273cf8bfb016ea3f57c4af41a06530f72b0",
  "onnxruntime_lite_custom_op.h": "5ac84897a95ee5fa5b5bbbeb84dd51f0768e83b293716b147f114e63b28fdf85",
  "onnxruntime_run_options_config_keys.h": "973037c14b0f1af0854ae25cd676776f79dbcfd2a6791f6ee17a5374c2a62550",
  "onnxruntime_session_options_config_keys.h": "febf1052ee15e56ce136c41d028938d04b3e217bd4820dcafcb9bcd0f4f2c5ea",
};
const WANTED = Object.keys(HEADER_SHA256);

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

/** The file name of a header entry we want (any framework's Headers/ folder), else null. */
function wantedName(path) {
  const m = /\/Headers\/([^/]+\.h)$/.exec(path);
  return m && WANTED.includes(m[1]) ? m[1] : null;
}

/** A tar entry's path: ustar name with prefix, overridden by a preceding pax or GNU long-name record. */
function entryPath(header, longName) {
  if (longName) return longName;
  const text = (from, to) => header.subarray(from, to).toString("utf8").replace(/\0.*$/s, "");
  const prefix = text(345, 500);
  return prefix ? `${prefix}/${text(0, 100)}` : text(0, 100);
}

function paxPath(body) {
  const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(body.toString("utf8"));
  return m ? m[1] : null;
}

/** Reads a tar stream up to the point where every wanted header has been seen; returns name -> bytes. */
async function headersFromTar(stream) {
  const found = new Map();
  let buf = Buffer.alloc(0);
  let skip = 0; // bytes of an unwanted entry (plus padding) still to drop
  let pending = null; // { size, padded, kind, name } of an entry whose body we collect
  let longName = null;
  for await (const chunk of stream) {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    for (;;) {
      if (skip > 0) {
        const n = Math.min(skip, buf.length);
        buf = buf.subarray(n);
        skip -= n;
        if (skip > 0) break;
      }
      if (pending) {
        if (buf.length < pending.padded) break;
        const body = Buffer.from(buf.subarray(0, pending.size));
        buf = buf.subarray(pending.padded);
        if (pending.kind === "x") longName = paxPath(body);
        else if (pending.kind === "L") longName = body.toString("utf8").replace(/\0.*$/s, "");
        else found.set(pending.name, body);
        pending = null;
        if (found.size === WANTED.length) return found;
        continue;
      }
      if (buf.length < 512) break;
      const header = buf.subarray(0, 512);
      buf = buf.subarray(512);
      if (header.every((b) => b === 0)) continue; // end-of-archive blocks
      const size = parseInt(header.subarray(124, 136).toString("utf8").replace(/\0.*$/s, "").trim() || "0", 8);
      const padded = Math.ceil(size / 512) * 512;
      const kind = String.fromCharCode(header[156] || 48);
      const path = kind === "x" || kind === "L" ? null : entryPath(header, longName);
      if (path !== null) longName = null;
      const name = path === null ? null : wantedName(path);
      if (kind === "x" || kind === "L" || (name && !found.has(name))) pending = { size, padded, kind, name };
      else skip = padded;
    }
  }
  return found;
}

function checkAndWrite(found, dir) {
  const missing = WANTED.filter((n) => !found.has(n));
  if (missing.length) throw new Error(`${TARBALL} lacks ${missing.join(", ")}`);
  for (const [name, bytes] of found) {
    if (sha256(bytes) !== HEADER_SHA256[name]) throw new Error(`${name} from ${TARBALL} does not match its pinned SHA-256`);
  }
  mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of found) writeFileSync(join(dir, name), bytes);
}

/** Streams the tarball from the registry; returns the compressed bytes read before the headers were all in. */
async function streamFromRegistry(dir) {
  const registry = (process.env.npm_config_registry || "https://registry.npmjs.org/").replace(/\/?$/, "/");
  const url = `${registry}${PKG_NAME}/-/${TARBALL}`;
  const abort = new AbortController();
  const response = await fetch(url, { signal: abort.signal });
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  let downloaded = 0;
  const body = Readable.fromWeb(response.body);
  body.on("data", (c) => (downloaded += c.length));
  const gunzip = createGunzip();
  body.pipe(gunzip);
  try {
    checkAndWrite(await headersFromTar(gunzip), dir);
  } finally {
    abort.abort(); // stop the download: the rest of the tarball is binaries
    body.destroy();
    gunzip.destroy();
  }
  return downloaded;
}

/** Fallback through npm (its proxy and registry settings): the whole tarball, in a temporary folder only. */
async function packWithNpm(dir) {
  const tmp = mkdtempSync(join(tmpdir(), "gdn-fuse-headers-"));
  try {
    const npm = process.platform === "win32" ? "npm.cmd" : "npm";
    const r = spawnSync(npm, ["pack", `${PKG_NAME}@${PKG_VERSION}`, "--pack-destination", tmp, "--silent"], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    if (r.status !== 0 || !existsSync(join(tmp, TARBALL))) throw new Error(`npm pack ${PKG_NAME}@${PKG_VERSION} failed`);
    await extractFromFile(join(tmp, TARBALL), dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function extractFromFile(tarball, dir) {
  checkAndWrite(await headersFromTar(createReadStream(tarball).pipe(createGunzip())), dir);
}

function copyDir(from, to) {
  mkdirSync(to, { recursive: true });
  for (const f of readdirSync(from)) copyFileSync(join(from, f), join(to, f));
}

function isComplete(dir) {
  return WANTED.every((n) => existsSync(join(dir, n)) && sha256(readFileSync(join(dir, n))) === HEADER_SHA256[n]);
}

/**
 * Makes sure `dest` holds the headers: from the cache, from a tarball an older build left in the cache,
 * or from the registry. Returns a line saying where they came from.
 */
export async function ensureOrtHeaders(dest) {
  if (isComplete(dest)) return null;
  const cache = process.env.GDN_FUSE_CACHE || join(homedir(), ".cache", "gdn-fuse");
  const cached = join(cache, `ort-headers-${PKG_VERSION}`);
  let source;
  if (isComplete(cached)) {
    source = `cached in ${cached}`;
  } else {
    const staging = `${cached}.tmp-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    try {
      if (existsSync(join(cache, TARBALL))) {
        await extractFromFile(join(cache, TARBALL), staging);
        source = `from ${join(cache, TARBALL)}`;
      } else {
        try {
          const bytes = await streamFromRegistry(staging);
          source = `streamed from the registry (${(bytes / 1e6).toFixed(1)} MB of the 150 MB ${TARBALL} read)`;
        } catch (e) {
          console.error(`gdn-fuse: direct download of the headers failed (${e.message}); trying npm pack`);
          await packWithNpm(staging);
          source = `from npm pack ${PKG_NAME}@${PKG_VERSION}`;
        }
      }
      rmSync(cached, { recursive: true, force: true });
      mkdirSync(dirname(cached), { recursive: true });
      renameSync(staging, cached);
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
  rmSync(dest, { recursive: true, force: true });
  copyDir(cached, dest);
  return `gdn-fuse: ONNX Runtime headers (C API 29) ${source}`;
}

// `node native/scripts/ort-headers.mjs DIR`: fetch the headers into DIR (used to measure the download).
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dest = process.argv[2];
  if (!dest) {
    console.error("usage: node native/scripts/ort-headers.mjs DIR");
    process.exit(2);
  }
  ensureOrtHeaders(dest).then(
    (line) => console.log(line ?? `gdn-fuse: headers already in ${dest}`),
    (e) => {
      console.error(`gdn-fuse: ${e.message}`);
      process.exit(1);
    },
  );
}
