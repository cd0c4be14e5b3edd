/** The pass kit's shape helpers (shape.ts): reshape targets and dims with a symbolic batch. */
import { describe, expect, it } from "vitest";
import { reshapeDims, sameDims } from "./shape.js";

describe("reshapeDims (symbolic batch)", () => {
  it("resolves 0 and -1 against a symbolic batch", () => {
    expect(reshapeDims(["batch", 1, 2, 2, 16], [-1, 1, 4, 16])).toEqual(["batch", 1, 4, 16]);
    expect(reshapeDims(["batch", 1, 2, 2, 16], [0, 1, 4, 16])).toEqual(["batch", 1, 4, 16]);
    expect(reshapeDims(["batch", 1, 2, 2, 16], [0, 1, -1, 16])).toEqual(["batch", 1, 4, 16]);
    expect(reshapeDims([2, 1, 2, 2, 16], [-1, 1, 4, 16])).toEqual([2, 1, 4, 16]);
  });
  it("rejects what cannot be told statically, or does not fit", () => {
    expect(reshapeDims(["batch", 1, 4, 24], [-1, 24])).toBeUndefined(); // 4*batch: a product with a symbol
    expect(reshapeDims(["batch", 1, 2, 2, 16], [2, 1, 4, 16])).toBeUndefined(); // the symbol is dropped
    expect(reshapeDims(["batch", 1, 2, 2, 16], [0, 1, 5, -1])).toBeUndefined(); // 64 / 5
    expect(reshapeDims([undefined, 1, 4], [-1, 4])).toBeUndefined();
    expect(sameDims(["batch", 1], ["batch", 1])).toBe(true);
    expect(sameDims(["batch", 1], ["n", 1])).toBe(false);
    expect(sameDims([undefined, 1], [undefined, 1])).toBe(false);
  });
});
