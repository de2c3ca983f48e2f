/** The render pipeline's input and output (the original app's `see-it-now` types). */

export interface ImageMeta {
  width: number;
  height: number;
  format: string;
  bytes: number;
}

export interface PreparedImage {
  /** sha256 of the image bytes, lowercase hex. */
  hash: string;
  meta: ImageMeta;
  bytes: Uint8Array;
}

export interface PromptVariant {
  id: string;
  prompt: string;
}

export interface RenderInput {
  shopId: string;
  requestId: string;
  productAssetId: string;
  roomSessionId: string;
  promptPackVersion: string;
  productImage: PreparedImage;
  roomImage: PreparedImage;
  resolvedFacts: Record<string, unknown>;
  promptPack: { version: string; variants: PromptVariant[] };
}

export type VariantStatus = "success" | "failed" | "timeout";

export interface VariantRenderResult {
  variantId: string;
  status: VariantStatus;
  latencyMs: number;
  imageBytes?: Uint8Array;
  imageHash?: string;
  errorMessage?: string;
}

export interface RenderOutput {
  runId: string;
  status: "complete" | "partial" | "failed";
  variants: Array<{ variantId: string; status: VariantStatus; imageKey?: string }>;
}
