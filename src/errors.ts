/**
 * One error class for everything gdn-fuse reports to a user. `code` is stable and machine-readable;
 * `message` is one line naming what is wrong (the CLI prints it without a stack trace).
 */
export type ErrorCode =
  | "E_IO" // a file cannot be read or written
  | "E_PARSE" // bytes that are not a valid ONNX model
  | "E_MODEL" // a structurally invalid model (dangling value, cycle, bad attribute)
  | "E_EXTERNAL_DATA" // external data missing, out of range, or escaping the model folder
  | "E_USAGE" // bad arguments to the CLI or API
  | "E_PASS" // a pass failed unexpectedly
  | "E_VERIFY" // fused model outputs differ from the original beyond tolerance
  | "E_RUNTIME" // the native runtime failed (ORT error, bad tensor)
  | "E_TARGET"; // a fusion target cannot express a matched pattern

export class GdnFuseError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "GdnFuseError";
    this.code = code;
  }
}
