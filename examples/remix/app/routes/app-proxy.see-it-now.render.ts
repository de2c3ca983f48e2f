/**
 * `app/routes/app-proxy.see-it-now.render.ts`: the storefront's render request through
 * the Shopify app proxy. The original app's `logSeeItNowEvent` calls are gone; after
 * authentication the route emits `SF_RENDER_REQUESTED` (and `SF_RENDER_REJECTED` or
 * `SF_RENDER_RESPONDED`), and the renderer reports the run.
 */

import { createHash, randomUUID } from "node:crypto";

import { json, type ActionFunctionArgs } from "@remix-run/node";

import { renderSeeItNow } from "~/services/see-it-now/renderer.server";
import type { PreparedImage, RenderInput } from "~/services/see-it-now/types";
import { emit, EventSource, EventType } from "~/services/telemetry";
import { authenticate } from "~/shopify.server";

interface RenderRequestBody {
  product_id?: string;
  room_session_id?: string;
  product_image?: string;
  room_image?: string;
  prompt_pack_version?: string;
}

function prepared(base64: string, format: string): PreparedImage {
  const bytes = Buffer.from(base64, "base64");
  const hash = createHash("sha256").update(bytes).digest("hex");
  return { hash, meta: { width: 0, height: 0, format, bytes: bytes.byteLength }, bytes };
}

export async function action({ request }: ActionFunctionArgs) {
  const { session } = await authenticate.public.appProxy(request);
  if (!session) return json({ error: "unauthorized" }, { status: 401 });
  const shop = { id: session.shop };
  const requestId = request.headers.get("x-request-id") ?? randomUUID();
  const body = (await request.json().catch(() => ({}))) as RenderRequestBody;
  const { product_id, room_session_id } = body;

  // At the start of the render flow (after auth):
  emit({
    shopId: shop.id,
    requestId,
    source: EventSource.APP_PROXY,
    type: EventType.SF_RENDER_REQUESTED,
    payload: {
      productId: product_id,
      roomSessionId: room_session_id,
    },
  });

  if (!product_id || !room_session_id || !body.product_image || !body.room_image) {
    emit({
      shopId: shop.id,
      requestId,
      source: EventSource.APP_PROXY,
      type: EventType.SF_RENDER_REJECTED,
      payload: { reason: "missing_input" },
    });
    return json({ error: "product_id, room_session_id, product_image and room_image are required" }, { status: 400 });
  }

  const input: RenderInput = {
    shopId: shop.id,
    requestId,
    productAssetId: product_id,
    roomSessionId: room_session_id,
    promptPackVersion: body.prompt_pack_version ?? "v3",
    productImage: prepared(body.product_image, "png"),
    roomImage: prepared(body.room_image, "jpeg"),
    resolvedFacts: { productId: product_id },
    promptPack: {
      version: body.prompt_pack_version ?? "v3",
      variants: [
        { id: "v1", prompt: "Place the product by the window" },
        { id: "v2", prompt: "Place the product against the wall" },
      ],
    },
  };
  const output = await renderSeeItNow(input);

  emit({
    shopId: shop.id,
    requestId,
    runId: output.runId,
    source: EventSource.APP_PROXY,
    type: EventType.SF_RENDER_RESPONDED,
    payload: { status: output.status },
  });
  return json(output);
}
