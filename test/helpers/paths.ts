/** Where the tests find the project and its fixtures. */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The project's own fixture cases (models/README.md). */
export const MODELS = join(ROOT, "models");
/** The shared corpus beside the checkout (CI lays ../shared next to the clone). */
export const SHARED_CORPUS = resolve(ROOT, "..", "shared", "corpus");
