/** Settings: defaults, the environment, and refusals that name the setting (the Rust SDK's `config.rs` tests). */

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ConfigError,
  defaultConfig,
  optionsFromEnv,
  resolveConfig,
  validateConfig,
  type TelemetryOptions,
} from "../src/config.js";
import { StreamSpec, Subjects, validateStreamName } from "../src/subjects.js";

test("the defaults are valid and name the contract's subjects and stream", () => {
  const { subjects, stream } = validateConfig(defaultConfig());
  assert.equal(subjects.prefix, "telemetry");
  assert.equal(stream.name, "TELEMETRY");
  assert.equal(subjects.forKind("run_started"), "telemetry.v1.run.started");
  assert.equal(subjects.forKind("variant_started"), "telemetry.v1.variant.started");
  assert.equal(subjects.forKind("variant_result"), "telemetry.v1.variant.result");
  assert.equal(subjects.forKind("run_completed"), "telemetry.v1.run.completed");
  assert.equal(subjects.forKind("event"), "telemetry.v1.event");
  assert.equal(subjects.forKind("producer_stats"), "telemetry.v1.producer.stats");
  assert.equal(subjects.wildcard(), "telemetry.v1.>");
  assert.equal(subjects.kindOf("telemetry.v1.variant.result"), "variant_result");
  assert.equal(subjects.kindOf("other.v1.event"), undefined);
});

test("bad values are refused with the setting named", () => {
  const cases: Array<[TelemetryOptions, string]> = [
    [{ subjectPrefix: "a b" }, "TELEMETRY_SUBJECT_PREFIX"],
    [{ stream: "a.b" }, "TELEMETRY_STREAM"],
    [{ streamMaxBytes: 1000 }, "TELEMETRY_STREAM_MAX_BYTES"],
    [{ streamReplicas: 0 }, "TELEMETRY_STREAM_REPLICAS"],
    [{ streamReplicas: 6 }, "TELEMETRY_STREAM_REPLICAS"],
    [{ queueCapacity: 0 }, "TELEMETRY_QUEUE_CAPACITY"],
    [{ maxInFlight: 5000 }, "TELEMETRY_MAX_IN_FLIGHT"],
    [{ publishLingerMs: 5000 }, "TELEMETRY_PUBLISH_LINGER_MS"],
    [{ nats: { url: "nats://host:notaport" } }, "NATS_URL"],
    [{ nats: { user: "u" } }, "NATS_USER/NATS_PASSWORD"],
    [{ nats: { user: "u", password: "p", token: "t" } }, "NATS_CREDS/NATS_USER/NATS_TOKEN"],
    [{ nats: { tlsCaFile: "/nonexistent/ca.pem" } }, "NATS_TLS_CA"],
    [{ nats: { tlsKeyFile: "/nonexistent/key.pem" } }, "NATS_TLS_KEY"],
  ];
  for (const [options, setting] of cases) {
    assert.throws(
      () => validateConfig(resolveConfig(options)),
      (err: unknown) => err instanceof ConfigError && err.setting === setting && err.message === `invalid setting ${setting}: ${err.reason}`,
      setting,
    );
  }
});

test("prefixes that would break subjects and stream names the broker refuses are refused", () => {
  for (const bad of ["", "a..b", "a b", "a.*", ">", ".a", "a."]) {
    assert.throws(() => new Subjects(bad), /invalid subject prefix/, JSON.stringify(bad));
  }
  assert.equal(new Subjects("test_x.y-z").prefix, "test_x.y-z");
  assert.equal(validateStreamName("TELEMETRY"), undefined);
  assert.ok(validateStreamName("a.b"));
  assert.ok(validateStreamName(""));
});

test("the environment names the Rust services use; TELEMETRY=off disables", () => {
  const { enabled, options } = optionsFromEnv({
    NATS_URL: "nats://a:4222,nats://b:4222",
    TELEMETRY_SUBJECT_PREFIX: "p",
    TELEMETRY_STREAM: "S",
    TELEMETRY_STREAM_MAX_BYTES: "2097152",
    TELEMETRY_STREAM_REPLICAS: "3",
    TELEMETRY_SERVICE: "remix-app",
    TELEMETRY_QUEUE_CAPACITY: "100",
  });
  assert.equal(enabled, true);
  const config = resolveConfig(options);
  assert.equal(config.nats.url, "nats://a:4222,nats://b:4222");
  assert.equal(config.subjectPrefix, "p");
  assert.equal(config.stream, "S");
  assert.equal(config.streamMaxBytes, 2_097_152);
  assert.equal(config.streamReplicas, 3);
  assert.equal(config.service, "remix-app");
  assert.equal(config.queueCapacity, 100);
  assert.equal(config.maxInFlight, 512, "unset values keep their defaults");
  assert.equal(validateConfig(config).stream.config().num_replicas, 3);
  assert.equal(optionsFromEnv({ TELEMETRY: "off" }).enabled, false);
  assert.throws(() => optionsFromEnv({ TELEMETRY: "maybe" }), ConfigError);
  assert.throws(() => optionsFromEnv({ TELEMETRY_QUEUE_CAPACITY: "lots" }), /TELEMETRY_QUEUE_CAPACITY/);
});

test("the stream definition is the contract's", () => {
  const spec = new StreamSpec("T", new Subjects("p"));
  const config = spec.config();
  assert.deepEqual(config.subjects, ["p.v1.>"]);
  assert.equal(config.storage, "file");
  assert.equal(config.retention, "limits");
  assert.equal(config.discard, "old");
  assert.equal(config.duplicate_window, 120_000_000_000);
  assert.equal(config.max_age, 604_800_000_000_000);
  assert.equal(config.max_bytes, 8 * 1024 ** 3);
  assert.equal(config.max_msg_size, 1_048_576);
  assert.equal(config.num_replicas, 1);
  assert.throws(() => spec.withMaxBytes(StreamSpec.MIN_MAX_BYTES - 1), /one largest message/);
  assert.equal(spec.withMaxBytes(StreamSpec.MIN_MAX_BYTES).config().max_bytes, 1_048_576);
});
