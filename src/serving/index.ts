/** Serving: the serving form of a fused gated-delta layer (docs/serving.md). */
export { toServingForm, SERVING_NAMES, type ServingFormOptions } from "./serving-form.js";
