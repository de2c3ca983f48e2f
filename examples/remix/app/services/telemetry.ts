/**
 * `~/services/telemetry`: the module the original app's renderer and routes import. It
 * was the app's own code (database writes on the render path); it is now the SDK, which
 * only enqueues and publishes to NATS JetStream in the background.
 *
 * Settings come from the environment (NATS_URL, TELEMETRY_SUBJECT_PREFIX,
 * TELEMETRY_STREAM, TELEMETRY=off, ... — the names the Rust services use). `init` here
 * makes a bad setting fail at server start rather than at the first render, and the
 * SIGTERM hook flushes what is queued before the process exits.
 */

import { init, shutdown } from "@render-telemetry/sdk";

export {
  completeRun,
  emit,
  EventSource,
  EventType,
  hashPrompt,
  recordVariantResult,
  recordVariantStart,
  startRun,
} from "@render-telemetry/sdk";

init({ service: "see-it-now" });

const FLUSH_DEADLINE_MS = 5_000;

process.once("SIGTERM", () => {
  void shutdown(FLUSH_DEADLINE_MS).then((report) => {
    // emitted = published + dropped; `left` were still queued at the deadline.
    console.info("telemetry flushed", report);
    process.exit(0);
  });
});
