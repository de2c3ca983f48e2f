/**
 * Stand-in for the app's Gemini client: renders one variant, or fails, or times out.
 * The real one calls the image model; this one answers at once so the example stays
 * self-contained.
 */

import { createHash } from "node:crypto";

import type { PreparedImage, VariantRenderResult } from "./types";

export const GEMINI_IMAGE_MODEL_FAST = "gemini-2.5-flash-image";

export async function renderSingleVariant(args: {
  variantId: string;
  prompt: string;
  productImage: PreparedImage;
  roomImage: PreparedImage;
  timeoutMs: number;
}): Promise<VariantRenderResult> {
  const started = performance.now();
  const imageBytes = new TextEncoder().encode(`${args.variantId}:${args.prompt}`);
  return {
    variantId: args.variantId,
    status: "success",
    latencyMs: Math.round(performance.now() - started),
    imageBytes,
    imageHash: createHash("sha256").update(imageBytes).digest("hex"),
  };
}
