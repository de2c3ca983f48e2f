/**
 * What every test against NATS uses, the way the Rust tests' `test-support` does it: the
 * machine's NATS server (checked; a failure says how to start it — tests never skip), a
 * random subject prefix and stream per test (the stream deleted afterwards), a private
 * `nats-server` for tests that stop the broker, and reading back what the stream holds.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { fromBinary } from "@bufbuild/protobuf";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";

import type { Logger, TelemetryOptions } from "../src/config.js";
import { EnvelopeSchema, type Envelope } from "../src/gen/telemetry/v1/telemetry_pb.js";

/** Test streams' disk cap: the broker reserves it in full at creation (as in Rust's tests). */
export const STREAM_MAX_BYTES = 256 * 1024 * 1024;

export const DEFAULT_TEST_NATS_URL = "nats://127.0.0.1:4222";

function hostPort(url: string): { host: string; port: number } {
  const parsed = new URL(url.includes("://") ? url : `nats://${url}`);
  return { host: parsed.hostname, port: Number(parsed.port || 4222) };
}

function reachable(url: string): Promise<boolean> {
  const { host, port } = hostPort(url);
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** The shared NATS server's URL, after checking it answers; throws how to start it otherwise. */
export async function sharedNatsUrl(): Promise<string> {
  const url = process.env.TEST_NATS_URL ?? DEFAULT_TEST_NATS_URL;
  if (!(await reachable(url))) {
    throw new Error(
      `NATS is not reachable at ${url}. Start it with JetStream: ` +
        "`nats-server -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server &` " +
        "(or run `bash scripts/services.sh` from the repository root), or point TEST_NATS_URL at one.",
    );
  }
  return url;
}

/** A random subject prefix and stream name; `cleanup()` deletes the stream. */
export class Isolation {
  readonly prefix: string;
  readonly stream: string;

  private constructor(readonly natsUrl: string) {
    const token = randomBytes(8).toString("hex").replace(/[0-9]/g, (d) => "ghijklmnop"[Number(d)]!).slice(0, 10);
    this.prefix = `t_${token}`;
    this.stream = `T_${token.toUpperCase()}`;
  }

  static async create(natsUrl?: string): Promise<Isolation> {
    return new Isolation(natsUrl ?? (await sharedNatsUrl()));
  }

  /** SDK options on this isolation, with a test logger and quick retries. */
  options(extra: TelemetryOptions = {}): TelemetryOptions {
    return {
      subjectPrefix: this.prefix,
      stream: this.stream,
      streamMaxBytes: STREAM_MAX_BYTES,
      service: "ts-sdk-test",
      maxBackoffMs: 200,
      logger: quietLogger(),
      ...extra,
      nats: { url: this.natsUrl, ...extra.nats },
    };
  }

  async cleanup(): Promise<void> {
    const nc = await connect({ servers: this.natsUrl, timeout: 2_000 }).catch(() => undefined);
    if (nc === undefined) return;
    try {
      const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 2_000 });
      await jsm.streams.delete(this.stream).catch(() => undefined);
    } finally {
      await nc.close();
    }
  }
}

/** A logger that keeps its lines for assertions instead of printing them. */
export function quietLogger(): Logger & { lines: Array<{ level: string; message: string; fields?: Record<string, unknown> }> } {
  const lines: Array<{ level: string; message: string; fields?: Record<string, unknown> }> = [];
  return {
    lines,
    warn: (message, fields) => lines.push({ level: "warn", message, fields }),
    error: (message, fields) => lines.push({ level: "error", message, fields }),
  };
}

/** One message the stream holds. */
export interface StoredMessage {
  seq: number;
  subject: string;
  msgId: string | undefined;
  envelope: Envelope;
}

export async function withJsm<T>(natsUrl: string, work: (jsm: JetStreamManager, nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connect({ servers: natsUrl, timeout: 5_000 });
  try {
    return await work(await jetstreamManager(nc, { checkAPI: false }), nc);
  } finally {
    await nc.close();
  }
}

/** Every message of `stream`, in stream order, decoded. */
export async function readStream(natsUrl: string, stream: string): Promise<StoredMessage[]> {
  return withJsm(natsUrl, async (jsm) => {
    const info = await jsm.streams.info(stream);
    const out: StoredMessage[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const msg = await jsm.streams.getMessage(stream, { seq });
      if (msg === null) continue;
      out.push({
        seq,
        subject: msg.subject,
        msgId: msg.header?.get("Nats-Msg-Id") || undefined,
        envelope: fromBinary(EnvelopeSchema, msg.data),
      });
    }
    return out;
  });
}

/** Polls `check` every 20 ms until it is true; throws `what` after `timeoutMs`. */
export async function waitUntil(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(20);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/**
 * A private `nats-server -js` on a free port with its own store, which survives
 * `kill()` so a restart keeps the stream. `extraConfig` is appended to its config file.
 */
export class NatsServer {
  private child: ChildProcess | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), "ts-sdk-nats-"));

  private constructor(
    readonly port: number,
    private readonly extraConfig: string,
  ) {}

  static async unstarted(extraConfig = ""): Promise<NatsServer> {
    return new NatsServer(await freePort(), extraConfig);
  }

  static async start(extraConfig = ""): Promise<NatsServer> {
    const server = await NatsServer.unstarted(extraConfig);
    await server.restart();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async restart(): Promise<void> {
    await this.kill();
    const config = join(this.dir, "nats.conf");
    writeFileSync(
      config,
      `jetstream {\n  store_dir: ${JSON.stringify(join(this.dir, "js"))}\n  max_file_store: 1TB\n  max_memory_store: 1GB\n}\n${this.extraConfig}\n`,
    );
    const child = spawn("nats-server", ["-c", config, "-a", "127.0.0.1", "-p", String(this.port), "-l", join(this.dir, "nats.log")], {
      stdio: "ignore",
    });
    const spawned = new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", (err) =>
        reject(new Error(`cannot run \`nats-server\` (${err.message}). Install it (\`apt-get install nats-server\`) or run \`bash scripts/services.sh\`.`)),
      );
    });
    await spawned;
    this.child = child;
    await waitUntil(`nats-server listening on ${this.port}`, 10_000, () => reachable(this.url));
  }

  /** Kills the server (SIGKILL) and waits for it to exit. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGKILL");
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
