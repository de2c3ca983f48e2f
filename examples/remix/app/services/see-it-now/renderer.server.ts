/**
 * `app/services/see-it-now/renderer.server.ts`: the original app's render pipeline,
 * instrumented as its "Step 12: Instrumentation" asks — `writeRenderRun` became
 * `startRun`, each variant gets `recordVariantStart`, `writeVariantResult` became
 * `recordVariantResult`, and the `prisma.renderRun.update` became `completeRun`. The
 * calls keep their `await`s: each resolves at once (the SDK only enqueues), so the render
 * no longer waits on a database, and none of them throws into the render.
 */

import { randomUUID } from "node:crypto";

import {
  startRun,
  recordVariantStart,
  recordVariantResult,
  completeRun,
  emit,
  EventSource,
  EventType,
  hashPrompt,
} from "~/services/telemetry";

import { GEMINI_IMAGE_MODEL_FAST, renderSingleVariant } from "./gemini.server";
import { buildFinalPrompt } from "./prompt-builder.server";
import { storeRenderImage } from "./storage.server";
import type { RenderInput, RenderOutput, VariantRenderResult } from "./types";

const VARIANT_TIMEOUT_MS = 30_000;

export async function renderSeeItNow(input: RenderInput): Promise<RenderOutput> {
  const runId = randomUUID();
  const started = performance.now();

  await startRun({
    runId,
    shopId: input.shopId,
    requestId: input.requestId,
    productAssetId: input.productAssetId,
    roomSessionId: input.roomSessionId,
    promptPackVersion: input.promptPackVersion,
    model: GEMINI_IMAGE_MODEL_FAST,
    productImageHash: input.productImage.hash,
    productImageMeta: input.productImage.meta,
    roomImageHash: input.roomImage.hash,
    roomImageMeta: input.roomImage.meta,
    resolvedFactsHash: hashPrompt(JSON.stringify(input.resolvedFacts)),
    resolvedFactsJson: input.resolvedFacts as Record<string, unknown>,
    promptPackHash: hashPrompt(JSON.stringify(input.promptPack)),
    promptPackJson: input.promptPack as unknown as Record<string, unknown>,
  });

  const results = await Promise.all(
    input.promptPack.variants.map(async (variant) => {
      const finalPrompt = buildFinalPrompt(variant, input.resolvedFacts);

      recordVariantStart({
        runId,
        variantId: variant.id,
        requestId: input.requestId,
        shopId: input.shopId,
      });

      let result: VariantRenderResult;
      try {
        result = await renderSingleVariant({
          variantId: variant.id,
          prompt: finalPrompt,
          productImage: input.productImage,
          roomImage: input.roomImage,
          timeoutMs: VARIANT_TIMEOUT_MS,
        });
      } catch (error) {
        result = {
          variantId: variant.id,
          status: "failed",
          latencyMs: 0,
          errorMessage: error instanceof Error ? error.message : String(error),
        };
      }

      let imageKey: string | undefined;
      if (result.status === "success" && result.imageBytes) {
        imageKey = await storeRenderImage(runId, variant.id, result.imageBytes);
        emit({
          shopId: input.shopId,
          requestId: input.requestId,
          runId,
          source: EventSource.RENDERER,
          type: EventType.RENDER_IMAGE_STORED,
          payload: { key: imageKey, bytes: result.imageBytes.byteLength },
        });
      }

      await recordVariantResult({
        renderRunId: runId,
        variantId: result.variantId,
        finalPromptHash: hashPrompt(finalPrompt),
        requestId: input.requestId,
        shopId: input.shopId,
        status: result.status,
        latencyMs: result.latencyMs,
        outputImageKey: imageKey,
        outputImageHash: result.imageHash,
        errorCode: result.status === "timeout" ? "TIMEOUT" : result.status === "failed" ? "PROVIDER_ERROR" : undefined,
        errorMessage: result.errorMessage,
      });

      return { ...result, imageKey };
    }),
  );

  const successCount = results.filter((r) => r.status === "success").length;
  const status: RenderOutput["status"] =
    successCount === results.length ? "complete" : successCount > 0 ? "partial" : "failed";
  const totalDurationMs = Math.round(performance.now() - started);

  await completeRun({
    runId,
    requestId: input.requestId,
    shopId: input.shopId,
    status,
    totalDurationMs,
    successCount,
    failCount: results.filter((r) => r.status === "failed").length,
    timeoutCount: results.filter((r) => r.status === "timeout").length,
  });

  return {
    runId,
    status,
    variants: results.map((r) => ({ variantId: r.variantId, status: r.status, imageKey: r.imageKey })),
  };
}
