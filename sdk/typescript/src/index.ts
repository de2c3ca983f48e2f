/**
 * `@render-telemetry/sdk`: the render telemetry SDK for Node.js, with the original
 * app's `~/services/telemetry` API — `startRun`, `recordVariantStart`,
 * `recordVariantResult`, `completeRun`, `emit`, `EventSource`, `EventType` and
 * `hashPrompt` — and the Rust SDK's semantics: every call returns at once (its promise
 * is already resolved), a bounded queue, drops counted by reason, the same size limits,
 * the `ProducerStats` ledger, reconnects that never block a caller, and
 * `shutdown(deadlineMs)` with an honest report. The wire rules any producer must follow
 * are in docs/contract.md.
 *
 * ```ts
 * import { init, emit, EventSource, EventType, shutdown } from "@render-telemetry/sdk";
 * init({ service: "remix-app" }); // or nothing: the first call starts from the environment
 * emit({ shopId, requestId, source: EventSource.APP_PROXY, type: EventType.SF_RENDER_REQUESTED, payload: { productId } });
 * const report = await shutdown(5_000); // { emitted, published, dropped, left, finalStatsSent }
 * ```
 *
 * The module functions work on one process-wide handle; `Telemetry.start` makes others.
 */

import { optionsFromEnv, consoleLogger, type TelemetryOptions } from "./config.js";
import type {
  CompleteRunInput,
  EmitInput,
  StartRunInput,
  VariantResultInput,
  VariantStartInput,
} from "./record.js";
import { Telemetry, type EmitResult, type ShutdownReport } from "./telemetry.js";

export {
  ConfigError,
  DEFAULT_ACK_TIMEOUT_MS,
  DEFAULT_LIMITS,
  DEFAULT_MAX_BACKOFF_MS,
  DEFAULT_MAX_ERROR_MESSAGE_BYTES,
  DEFAULT_MAX_FIELD_BYTES,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_MAX_JSON_BYTES,
  DEFAULT_MIN_BACKOFF_MS,
  DEFAULT_NATS_URL,
  DEFAULT_PUBLISH_LINGER_MS,
  DEFAULT_QUEUE_CAPACITY,
  DEFAULT_QUEUE_MAX_BYTES,
  DEFAULT_STATS_INTERVAL_MS,
  FINAL_STATS_RESERVE_MS,
  LINGER_BELOW,
  MAX_IN_FLIGHT_LIMIT,
  MAX_PUBLISH_LINGER_MS,
  MAX_REJECTED_ATTEMPTS,
  QUEUE_FULL_WARN_INTERVAL_MS,
  consoleLogger,
  defaultConfig,
  optionsFromEnv,
  resolveConfig,
  validateConfig,
  type Limits,
  type Logger,
  type NatsOptions,
  type TelemetryConfig,
  type TelemetryOptions,
} from "./config.js";
export { DROP_REASONS, type DropReason, type StatsSnapshot } from "./ledger.js";
export {
  EmitError,
  ErrorCode,
  EventSource,
  EventType,
  hashPrompt,
  RunStatus,
  VariantStatus,
  type CompleteRunInput,
  type EmitInput,
  type ErrorCodeInput,
  type ImageMetaInput,
  type JsonInput,
  type RunStatusInput,
  type StartRunInput,
  type VariantResultInput,
  type VariantStartInput,
  type VariantStatusInput,
} from "./record.js";
export { BODY_KINDS, StreamSpec, Subjects, SUBJECT_SUFFIX, type BodyKind } from "./subjects.js";
export { DEFAULT_SHUTDOWN_DEADLINE_MS, Telemetry, type EmitResult, type ShutdownReport } from "./telemetry.js";

// Kept on globalThis so a dev server that reloads modules (Remix, Vite) keeps one
// publisher instead of starting a new one at every reload.
const GLOBAL_KEY = Symbol.for("@render-telemetry/sdk.default");
type Holder = { [GLOBAL_KEY]?: Telemetry };
const holder = globalThis as unknown as Holder;

/**
 * Starts the process-wide handle the module functions use (with the environment's
 * settings under `options`). Throws `ConfigError` for a bad setting, so an app that
 * calls it at start-up fails there. Calling it again returns the running handle.
 */
export function init(options: TelemetryOptions = {}): Telemetry {
  const running = holder[GLOBAL_KEY];
  if (running !== undefined && !running.closed) return running;
  const fromEnv = optionsFromEnv();
  const telemetry = fromEnv.enabled
    ? Telemetry.start({
        ...fromEnv.options,
        ...options,
        nats: { ...fromEnv.options.nats, ...options.nats },
        limits: { ...options.limits },
        service: options.service ?? fromEnv.options.service ?? "app",
      })
    : Telemetry.disabled();
  holder[GLOBAL_KEY] = telemetry;
  return telemetry;
}

/**
 * The process-wide handle, started from the environment on first use when `init` was
 * not called. A bad setting then never throws into the caller's render: it is logged
 * and the handle is disabled.
 */
export function getTelemetry(): Telemetry {
  const running = holder[GLOBAL_KEY];
  if (running !== undefined) return running;
  try {
    return init();
  } catch (err) {
    consoleLogger.error("telemetry is off: its settings are invalid", { error: String(err) });
    const disabled = Telemetry.disabled();
    holder[GLOBAL_KEY] = disabled;
    return disabled;
  }
}

/** The original app's `startRun`: returns at once; resolves to the drop reason, if dropped. */
export function startRun(input: StartRunInput): EmitResult {
  return getTelemetry().startRun(input);
}

/** The original app's `recordVariantStart`. */
export function recordVariantStart(input: VariantStartInput): EmitResult {
  return getTelemetry().recordVariantStart(input);
}

/** The original app's `recordVariantResult`. */
export function recordVariantResult(input: VariantResultInput): EmitResult {
  return getTelemetry().recordVariantResult(input);
}

/** The original app's `completeRun`. */
export function completeRun(input: CompleteRunInput): EmitResult {
  return getTelemetry().completeRun(input);
}

/** The original app's `emit`. */
export function emit(input: EmitInput): EmitResult {
  return getTelemetry().emit(input);
}

/**
 * Flushes and stops the process-wide handle (see `Telemetry.shutdown`). Calls after it
 * are dropped and counted as `closed`, as in the Rust SDK; `init` starts a new handle.
 * Call it from the server's SIGTERM handler.
 */
export async function shutdown(deadlineMs?: number): Promise<ShutdownReport> {
  const running = holder[GLOBAL_KEY];
  if (running === undefined) return { emitted: 0, published: 0, dropped: 0, left: 0, finalStatsSent: false };
  return running.shutdown(deadlineMs);
}
