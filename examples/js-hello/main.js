#!/usr/bin/env node
/*
 * js-hello: a Spacedrive integration in plain Node.js (>= 18), standard library only.
 *
 * It is written to be copied: everything a minimal integration needs is in this one file,
 * in the order you would write it in another language:
 *
 *   1. errors      the JSON-RPC error codes, and the error class handlers throw
 *   2. framing     a 4-byte big-endian length word, then UTF-8 JSON  (docs/protocol.md §2)
 *   3. messages    JSON-RPC 2.0: requests, notifications, responses, batches  (§3)
 *   4. session     handshake, dispatch, cancellation, progress, logs, shutdown  (§3, §4)
 *   5. capability  filetype.extract_metadata and filetype.validate  (§5)
 *   6. transports  unix socket, tcp or stdio, chosen by SPACEDRIVE_IPC  (§1)
 *
 * One rule to keep in mind: in stdio mode stdout carries frames and nothing else. Log with
 * `$/log` (the core shows it with the integration's name) or to stderr (captured as its log).
 */
'use strict';

const fsp = require('node:fs/promises');
const net = require('node:net');
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');

// The manifest is the single source of truth for our name, version, protocol range,
// capabilities and configuration schema: the handshake answers straight from it.
const MANIFEST = require('./manifest.json');

const PROGRESS_INTERVAL_MS = 100; // at most ~10 `$/progress` per second and request
const MAX_REPORTED_ERRORS = 100; // `filetype.validate` lists this many problems, then a count
const MAX_BATCH_LENGTH = 1024; // the same limit as the Python core's dispatcher
const EXIT_FLUSH_TIMEOUT_MS = 2000; // how long `exit` waits for unsent frames before giving up

// ---------------------------------------------------------------------------------------------
// 1. Errors
// ---------------------------------------------------------------------------------------------

/** Wire codes (the table is in src/spacedrive/ipc/_errors.py and docs/protocol.md §7). */
const ErrorCode = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  INTEGRATION_ERROR: -32000,
  NOT_FOUND: -32001,
  PERMISSION_DENIED: -32006,
  CONFIGURATION_ERROR: -32007,
  REQUEST_CANCELLED: -32009,
  PROTOCOL_VERSION_MISMATCH: -32012,
});

/** An error that travels as a JSON-RPC error object: throw it from a handler. */
class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.code = code;
    this.data = data;
  }

  toJSON() {
    const error = { code: this.code, message: this.message };
    if (this.data !== undefined) error.data = this.data;
    return error;
  }
}

/** The peer broke the framing or the protocol: we send nothing more and close (§2). */
class ProtocolError extends Error {}

// ---------------------------------------------------------------------------------------------
// 2. Framing
// ---------------------------------------------------------------------------------------------
//
//   bit 31     S: 1 = stream frame. Only after streams were negotiated; we never negotiate them.
//   bit 30     Z: 1 = zstd-compressed payload. Only after compression was negotiated; ditto.
//   bits 29..0 L: payload length, 1 <= L <= max frame size (16 MiB).
//
// So every frame we accept is "4-byte big-endian length, then that many bytes of UTF-8 JSON".

const MAX_FRAME_SIZE = 16 * 1024 * 1024;
const STREAM_BIT = 0x80000000;
const ZSTD_BIT = 0x40000000;
const LENGTH_MASK = 0x3fffffff;
const HEADER_SIZE = 4;
const INITIAL_BUFFER_SIZE = 64 * 1024;

/** Checks a length word as soon as its 4 bytes are known, before any payload is kept. */
function payloadLength(word) {
  // JavaScript's bit operators work on signed 32-bit integers: test bits for being non-zero.
  if (word & STREAM_BIT) {
    throw new ProtocolError(`stream frame (word 0x${word.toString(16)}), but streams were not negotiated`);
  }
  if (word & ZSTD_BIT) {
    throw new ProtocolError(`zstd frame (word 0x${word.toString(16)}), but compression was not negotiated`);
  }
  const length = word & LENGTH_MASK;
  if (length === 0) throw new ProtocolError('empty frame (length 0)');
  if (length > MAX_FRAME_SIZE) {
    throw new ProtocolError(`frame of ${length} bytes exceeds the maximum of ${MAX_FRAME_SIZE}`);
  }
  return length;
}

/**
 * Turns the byte stream into frame payloads. Sockets and pipes deliver arbitrary chunks: a
 * chunk may end in the middle of a length word or of a payload, and may hold many frames.
 *
 * One growing buffer holds the unparsed bytes between `start` and `end`. It only grows to fit
 * a frame whose length word was already checked, so a peer cannot make us allocate more than
 * MAX_FRAME_SIZE plus one chunk by declaring a huge length.
 */
class FrameDecoder {
  constructor(onFrame) {
    this.onFrame = onFrame; // called with a view of the payload, valid only during the call
    this.buffer = Buffer.allocUnsafe(INITIAL_BUFFER_SIZE);
    this.start = 0;
    this.end = 0;
  }

  push(chunk) {
    this.reserve(this.end - this.start + chunk.length);
    chunk.copy(this.buffer, this.end);
    this.end += chunk.length;
    while (this.end - this.start >= HEADER_SIZE) {
      const length = payloadLength(this.buffer.readUInt32BE(this.start)); // throws on a bad word
      const frameEnd = this.start + HEADER_SIZE + length;
      if (frameEnd > this.end) {
        this.reserve(HEADER_SIZE + length); // one allocation for a large frame, not one per chunk
        break;
      }
      const payload = this.buffer.subarray(this.start + HEADER_SIZE, frameEnd);
      this.start = frameEnd;
      this.onFrame(payload);
    }
    if (this.start === this.end) {
      this.start = this.end = 0;
      // Give back the memory of a large frame once it is handled.
      if (this.buffer.length > INITIAL_BUFFER_SIZE) this.buffer = Buffer.allocUnsafe(INITIAL_BUFFER_SIZE);
    }
  }

  /** Makes room for `size` bytes from `start`: compact in place, or move to a larger buffer. */
  reserve(size) {
    if (this.buffer.length - this.start >= size) return;
    const pending = this.buffer.subarray(this.start, this.end);
    if (this.buffer.length >= size) {
      this.buffer.copyWithin(0, this.start, this.end);
    } else {
      const larger = Buffer.allocUnsafe(Math.max(size, 2 * this.buffer.length));
      pending.copy(larger, 0);
      this.buffer = larger;
    }
    this.end -= this.start;
    this.start = 0;
  }
}

/** Raised by `encodeFrame` when a message does not fit one frame. */
class FrameTooLarge extends Error {}

/** One JSON frame: the length word and the UTF-8 JSON, built in one buffer, written at once. */
function encodeFrame(message) {
  const json = JSON.stringify(message);
  const size = Buffer.byteLength(json, 'utf8');
  if (size > MAX_FRAME_SIZE) throw new FrameTooLarge(`a message of ${size} bytes does not fit one frame`);
  const frame = Buffer.allocUnsafe(HEADER_SIZE + size);
  frame.writeUInt32BE(size, 0);
  frame.write(json, HEADER_SIZE, 'utf8');
  return frame;
}

// ---------------------------------------------------------------------------------------------
// 3. JSON-RPC 2.0 messages
// ---------------------------------------------------------------------------------------------

const JSONRPC = '2.0';
const hasOwn = (object, key) => Object.prototype.hasOwnProperty.call(object, key);
const isObject = (value) => typeof value === 'object' && value !== null && !Array.isArray(value);

// JSON.parse turns every number into a double: an integer id above 2**53 would silently change
// and our answer would carry the wrong id. Such ids are refused instead.
const isId = (value) => value === null || typeof value === 'string' || Number.isSafeInteger(value);

const result = (id, value) => ({ jsonrpc: JSONRPC, id, result: value === undefined ? null : value });
const failure = (id, error) => ({ jsonrpc: JSONRPC, id, error });
const invalid = (id, reason) => ({
  kind: 'invalid',
  id,
  error: new RpcError(ErrorCode.INVALID_REQUEST, 'Invalid Request', { reason }),
});

/**
 * Classifies one message (one element of a batch, or a whole frame that is not a batch).
 * Never throws: anything malformed becomes `invalid`, answered with -32600. The error echoes
 * the id only when the message looked like a request with a usable id, so an error never
 * lands on an unrelated request of the core.
 */
function classify(message) {
  if (!isObject(message)) return invalid(null, 'a message must be a JSON object');
  const looksLikeRequest = hasOwn(message, 'method');
  const echoId = looksLikeRequest && hasOwn(message, 'id') && isId(message.id) ? message.id : null;
  if (message.jsonrpc !== JSONRPC) return invalid(echoId, 'the "jsonrpc" member must be exactly "2.0"');

  if (looksLikeRequest) {
    const { method, params } = message;
    if (typeof method !== 'string') return invalid(echoId, '"method" must be a string');
    if (hasOwn(message, 'result') || hasOwn(message, 'error')) {
      return invalid(echoId, 'a request cannot carry "result" or "error"');
    }
    if (hasOwn(message, 'params') && (typeof params !== 'object' || params === null)) {
      return invalid(echoId, '"params" must be an array or an object');
    }
    if (!hasOwn(message, 'id')) return { kind: 'notification', method, params };
    if (!isId(message.id)) return invalid(null, '"id" must be a string, an integer below 2**53, or null');
    return { kind: 'request', id: message.id, method, params };
  }

  if (!hasOwn(message, 'id') || !isId(message.id) || hasOwn(message, 'params')) {
    return invalid(null, 'neither a request (no "method") nor a response (no valid "id")');
  }
  if (hasOwn(message, 'result') === hasOwn(message, 'error')) {
    return invalid(null, 'a response carries exactly one of "result" and "error"');
  }
  const { error } = message;
  const wellFormed = isObject(error) && Number.isInteger(error.code) && typeof error.message === 'string';
  if (hasOwn(message, 'error') && !wellFormed) {
    return invalid(null, '"error" must be an object with an integer "code" and a string "message"');
  }
  return { kind: 'response', id: message.id, result: message.result, error };
}

/** Collects the answers to one incoming batch; they go out together, as one array. */
class BatchReply {
  constructor(session) {
    this.session = session;
    this.answers = [];
    this.waiting = 0; // requests of the batch still running
    this.sealed = false; // every element of the batch has been looked at
  }

  add(answer) {
    this.answers.push(answer);
    this.flush();
  }

  seal() {
    this.sealed = true;
    this.flush();
  }

  flush() {
    // A batch of notifications only gets no answer at all (JSON-RPC 2.0, §6).
    if (this.sealed && this.waiting === 0 && this.answers.length > 0) {
      this.session.send(this.answers);
      this.answers = [];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 4. The session
// ---------------------------------------------------------------------------------------------
//
// States, in order:
//   awaiting-initialize    only `initialize` (and `ping`, `shutdown`) are accepted
//   awaiting-initialized   we answered `initialize`; the core has not sent `initialized` yet
//   ready                  capability methods are served
//   shutting-down          `shutdown` was answered; we wait for `exit`

const utf8 = new TextDecoder('utf-8', { fatal: true });

class Session {
  /** `transport`: { write(buffer), close(callback) }. Feed it with `onData` and `onEnd`. */
  constructor(transport) {
    this.transport = transport;
    this.state = 'awaiting-initialize';
    this.config = null;
    this.inFlight = new Map(); // request id -> { id, batch, answered, controller }
    this.closed = false;
    this.decoder = new FrameDecoder((payload) => this.onFrame(payload));
    this.handlers = new Map([
      ['initialize', (params) => this.initialize(params)],
      ['shutdown', (params, context) => this.shutdown(context)],
      ['filetype.extract_metadata', (params, context) => extractMetadata(params, this.config, context)],
      ['filetype.validate', (params, context) => validate(params, this.config, context)],
    ]);
  }

  // -- input --------------------------------------------------------------------------------

  onData(chunk) {
    if (this.closed) return;
    try {
      this.decoder.push(chunk);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      // §2: on a protocol error the receiver sends nothing more and closes the connection.
      this.close(1, `protocol error from the core: ${error.message}`);
    }
  }

  onEnd() {
    const clean = this.state === 'shutting-down';
    this.close(clean ? 0 : 1, clean ? null : 'the core closed the connection without shutdown');
  }

  onFrame(payload) {
    let value;
    try {
      value = JSON.parse(utf8.decode(payload));
    } catch {
      const reason = 'the frame is not UTF-8 JSON';
      this.send(failure(null, new RpcError(ErrorCode.PARSE_ERROR, 'Parse error', { reason })));
      return;
    }
    if (!Array.isArray(value)) {
      this.onMessage(classify(value), null);
      return;
    }
    if (value.length === 0 || value.length > MAX_BATCH_LENGTH) {
      const reason = value.length === 0 ? 'empty batch' : `a batch longer than ${MAX_BATCH_LENGTH}`;
      this.send(failure(null, invalid(null, reason).error));
      return;
    }
    const batch = new BatchReply(this);
    for (const element of value) this.onMessage(classify(element), batch);
    batch.seal();
  }

  onMessage(message, batch) {
    switch (message.kind) {
      case 'request':
        return this.onRequest(message, batch);
      case 'notification':
        return this.onNotification(message);
      case 'response':
        return this.onResponse(message);
      default:
        return this.reply(batch, failure(message.id, message.error));
    }
  }

  onRequest({ id, method, params }, batch) {
    if (this.inFlight.has(id)) {
      // Ids are unique among a sender's requests in flight (§3); two answers to one id would
      // be ambiguous, so this is fatal, as in the Python dispatcher.
      throw new ProtocolError(`request id ${JSON.stringify(id)} is already in flight`);
    }
    if (method === 'ping') {
      this.reply(batch, result(id, null)); // at once, never queued behind other work (§3)
      return;
    }
    const handler = this.handlers.get(method);
    if (handler === undefined) {
      const error = new RpcError(ErrorCode.METHOD_NOT_FOUND, `Method not found: ${method}`, { method });
      this.reply(batch, failure(id, error));
      return;
    }
    const refusal = this.refusal(method);
    if (refusal !== null) {
      this.reply(batch, failure(id, new RpcError(ErrorCode.INVALID_REQUEST, refusal, { method })));
      return;
    }

    const entry = { id, batch, answered: false, controller: new AbortController() };
    this.inFlight.set(id, entry);
    if (batch !== null) batch.waiting += 1;
    const context = {
      id,
      signal: entry.controller.signal, // aborted by `$/cancel`, `shutdown` or a closed connection
      progress: (progress, total) => {
        if (!entry.answered) this.notify('$/progress', { token: id, progress, total });
      },
    };
    const succeed = (value) => this.answer(entry, result(id, value));
    const fail = (error) => this.answer(entry, failure(id, this.toWireError(error, method, entry)));
    // The handler starts now, in message order: `initialize` must have changed the state
    // before the next message of the same chunk is looked at. An async handler then runs
    // concurrently with later requests; its promise settles into the single answer.
    try {
      const value = handler(params, context);
      if (value instanceof Promise) value.then(succeed, fail);
      else succeed(value);
    } catch (error) {
      fail(error);
    }
  }

  /** Why `method` may not run in the current state, or null. */
  refusal(method) {
    if (method === 'shutdown') return null;
    if (method === 'initialize') {
      return this.state === 'awaiting-initialize' ? null : 'initialize was already answered';
    }
    if (this.state === 'shutting-down') return 'shutting down: only exit is expected now';
    if (this.state !== 'ready') return 'not initialized: the core must send initialize, then initialized';
    return null;
  }

  onNotification({ method, params }) {
    switch (method) {
      case 'initialized':
        if (this.state === 'awaiting-initialized') {
          this.state = 'ready';
          this.log('info', `${MANIFEST.name} ${MANIFEST.version} ready (node ${process.version})`);
        }
        return;
      case 'exit':
        // §4: exit with status 0 after `shutdown`. An `exit` without `shutdown` is abnormal.
        this.close(this.state === 'shutting-down' ? 0 : 1, null);
        return;
      case '$/cancel':
        if (isObject(params) && isId(params.id)) this.cancel(params.id);
        return;
      default:
        // `$/log`, `$/progress` (we send no requests) and anything unknown: nothing to do, and a
        // notification is never answered, not even with an error.
        return;
    }
  }

  onResponse(response) {
    // This integration calls no core API, so it expects no responses. An error with a null id
    // is the core telling us what went wrong before it closes the connection: worth logging.
    if (response.error !== undefined) {
      process.stderr.write(`js-hello: the core reported an error: ${JSON.stringify(response.error)}\n`);
    }
  }

  // -- answers, exactly one per request ------------------------------------------------------

  reply(batch, message) {
    if (batch === null) this.send(message);
    else batch.add(message);
  }

  answer(entry, message) {
    if (entry.answered) return; // cancelled already: the late result or error is dropped
    entry.answered = true;
    this.inFlight.delete(entry.id);
    if (entry.batch !== null) entry.batch.waiting -= 1;
    this.reply(entry.batch, message);
  }

  cancel(id) {
    const entry = this.inFlight.get(id);
    if (entry === undefined) return; // unknown or answered: the cancellation lost the race
    entry.controller.abort();
    // Answer now rather than when the handler notices: the core gets a prompt, single answer.
    this.answer(entry, failure(id, new RpcError(ErrorCode.REQUEST_CANCELLED, 'Request cancelled')));
  }

  toWireError(error, method, entry) {
    if (error instanceof RpcError) return error;
    if (!entry.controller.signal.aborted) {
      // A bug on our side. The core gets a generic message: no stack trace on the wire (§7).
      this.log('error', `${method} failed: ${error && error.stack ? error.stack : error}`);
    }
    return new RpcError(ErrorCode.INTERNAL_ERROR, 'Internal error');
  }

  // -- output ---------------------------------------------------------------------------------

  send(message) {
    if (this.closed) return;
    let frame;
    try {
      frame = encodeFrame(message);
    } catch (error) {
      if (!(error instanceof FrameTooLarge)) throw error;
      // Only an answer can grow that large; replace it by an error so its id is still answered.
      const answers = (Array.isArray(message) ? message : [message]).filter((m) => !hasOwn(m, 'method'));
      if (answers.length === 0) return;
      const tooLong = new RpcError(ErrorCode.INTERNAL_ERROR, 'Internal error', { reason: error.message });
      const errors = answers.map((answer) => failure(answer.id, tooLong));
      frame = encodeFrame(Array.isArray(message) ? errors : errors[0]);
    }
    // write() queues what the kernel does not take yet. A production integration that sends a
    // lot should honour its `false` return value and wait for 'drain' (backpressure).
    this.transport.write(frame);
  }

  notify(method, params) {
    this.send({ jsonrpc: JSONRPC, method, params });
  }

  /** Our own logging: `$/log` while connected, stderr otherwise. Never stdout. */
  log(level, message, data) {
    if (this.closed) {
      process.stderr.write(`js-hello ${level}: ${message}\n`);
      return;
    }
    this.notify('$/log', data === undefined ? { level, message } : { level, message, data });
  }

  /** Stops everything in flight, flushes what we wrote, and exits with `code`. */
  close(code, why) {
    if (this.closed) return;
    this.closed = true;
    for (const entry of this.inFlight.values()) entry.controller.abort();
    this.inFlight.clear();
    if (why) process.stderr.write(`js-hello: ${why}\n`);
    process.exitCode = code;
    // On POSIX, writes to sockets and pipes are asynchronous: exiting right away could drop
    // the last frames. End the stream, exit once it is flushed, or after a grace period.
    setTimeout(() => process.exit(code), EXIT_FLUSH_TIMEOUT_MS);
    this.transport.close(() => process.exit(code));
  }

  // -- the handshake and shutdown (§4) ------------------------------------------------------

  initialize(params) {
    const core = isObject(params) ? params.protocol_versions : undefined;
    if (!isRange(core)) {
      const expected = 'initialize needs "protocol_versions": {"min": int, "max": int}, min <= max';
      throw new RpcError(ErrorCode.INVALID_PARAMS, expected);
    }
    const ours = MANIFEST.protocol;
    const version = Math.min(core.max, ours.max); // the highest version in both ranges
    if (version < Math.max(core.min, ours.min)) {
      throw new RpcError(
        ErrorCode.PROTOCOL_VERSION_MISMATCH,
        `Protocol version mismatch: the core speaks versions ${core.min}..${core.max}, ` +
          `${MANIFEST.id} speaks ${ours.min}..${ours.max}`,
        { core: { min: core.min, max: core.max }, integration: { min: ours.min, max: ours.max } },
      );
    }
    this.config = readConfig(params.config === undefined || params.config === null ? {} : params.config);
    if (params.integration_id !== undefined && params.integration_id !== MANIFEST.id) {
      const given = JSON.stringify(params.integration_id);
      throw new RpcError(
        ErrorCode.CONFIGURATION_ERROR,
        `This program is integration ${JSON.stringify(MANIFEST.id)}, but the core started it as ${given}: ` +
          'check the id in its manifest',
        { field: 'integration_id', expected: MANIFEST.id, given: params.integration_id },
      );
    }
    this.state = 'awaiting-initialized';
    return {
      protocol_version: version,
      info: { name: MANIFEST.name, version: MANIFEST.version },
      capabilities: MANIFEST.capabilities,
      // The features both sides use: we handle neither stream frames nor compressed frames.
      features: { streams: null, compression: [], fd_passing: false },
    };
  }

  shutdown(context) {
    this.state = 'shutting-down';
    // "finish or cancel work" (§4): we cancel; each request still running gets -32009.
    for (const id of [...this.inFlight.keys()]) if (id !== context.id) this.cancel(id);
    return null;
  }
}

function isRange(range) {
  return (
    isObject(range) &&
    Number.isSafeInteger(range.min) &&
    Number.isSafeInteger(range.max) &&
    range.min >= 1 &&
    range.min <= range.max
  );
}

/**
 * The configuration, checked against the manifest's `config_schema` (the small part of JSON
 * Schema it uses: object, integer, number, string, boolean, minimum, maximum, default,
 * additionalProperties: false), with defaults filled in. Throws ConfigurationError (-32007).
 */
function readConfig(config) {
  const schema = MANIFEST.config_schema;
  const problems = [];
  if (!isObject(config)) {
    problems.push('config must be an object');
  } else {
    for (const key of Object.keys(config)) {
      const property = schema.properties[key];
      if (property === undefined) {
        if (schema.additionalProperties === false) problems.push(`unknown setting "${key}"`);
        continue;
      }
      const problem = checkValue(config[key], property);
      if (problem !== null) problems.push(`${key} ${problem}`);
    }
  }
  if (problems.length > 0) {
    const message = `Invalid configuration: ${problems.join('; ')}`;
    throw new RpcError(ErrorCode.CONFIGURATION_ERROR, message, { problems });
  }
  const settings = {};
  for (const [key, property] of Object.entries(schema.properties)) {
    settings[key] = hasOwn(config, key) ? config[key] : property.default;
  }
  return settings;
}

function checkValue(value, schema) {
  const typeOk = {
    integer: Number.isSafeInteger(value),
    number: typeof value === 'number' && Number.isFinite(value),
    string: typeof value === 'string',
    boolean: typeof value === 'boolean',
  }[schema.type];
  if (!typeOk) return `must be of type ${schema.type}`;
  if (schema.minimum !== undefined && value < schema.minimum) return `must be at least ${schema.minimum}`;
  if (schema.maximum !== undefined && value > schema.maximum) return `must be at most ${schema.maximum}`;
  return null;
}

// ---------------------------------------------------------------------------------------------
// 5. The capability: FileTypeHandler (§5)
// ---------------------------------------------------------------------------------------------

const HANDLER = MANIFEST.capabilities.find((capability) => capability.type === 'FileTypeHandler');

/** `filetype.extract_metadata` {"path"} -> {"metadata": {"lines", "words", "bytes", "encoding"}} */
async function extractMetadata(params, config, context) {
  const filePath = requirePath(params);
  const stats = new TextStats();
  await readInChunks(filePath, config, context, (chunk) => stats.add(chunk));
  return { metadata: stats.finish() };
}

/** `filetype.validate` {"path"} -> {"valid", "errors"}: UTF-8 text; for CSV, equal row widths. */
async function validate(params, config, context) {
  const filePath = requirePath(params);
  const extension = path.extname(filePath).slice(1).toLowerCase();
  if (!HANDLER.extensions.includes(extension)) {
    const handled = HANDLER.extensions.map((e) => `.${e}`).join(', ');
    const message = `${MANIFEST.id} validates ${handled} files, not ${path.basename(filePath)}`;
    throw new RpcError(ErrorCode.INVALID_PARAMS, message, { path: filePath });
  }
  const errors = new ErrorList(MAX_REPORTED_ERRORS);
  const csv = extension === 'csv' ? new CsvChecker(errors) : null;
  const text = new Utf8Text((decoded) => csv && csv.add(decoded));
  await readInChunks(filePath, config, context, (chunk) => text.add(chunk));
  if (!text.finish()) errors.add(text.error);
  else if (csv) csv.finish();
  return { valid: errors.count === 0, errors: errors.list() };
}

function requirePath(params) {
  const filePath = isObject(params) ? params.path : undefined;
  if (typeof filePath !== 'string' || filePath === '' || filePath.includes('\0')) {
    const expected = 'Invalid params: expected {"path": "<absolute path of a local file>"}';
    throw new RpcError(ErrorCode.INVALID_PARAMS, expected);
  }
  if (!path.isAbsolute(filePath)) {
    const message = `path must be absolute, not ${JSON.stringify(filePath)}`;
    throw new RpcError(ErrorCode.INVALID_PARAMS, message, { path: filePath });
  }
  return filePath;
}

/**
 * Reads `filePath` in `config.chunk_size` steps and hands each chunk to `consume`. Between
 * steps it checks for cancellation and reports progress: awaiting each read yields to the
 * event loop, so `$/cancel` and `ping` are read and handled while a large file is processed.
 */
async function readInChunks(filePath, config, context, consume) {
  let handle;
  try {
    // stat before open: opening a FIFO would block until someone writes to it.
    const info = await fsp.stat(filePath);
    if (!info.isFile()) {
      throw new RpcError(ErrorCode.INVALID_PARAMS, `Not a regular file: ${filePath}`, { path: filePath });
    }
    if (info.size > config.max_bytes) throw tooLarge(filePath, info.size, config.max_bytes);
    handle = await fsp.open(filePath, 'r');
    const buffer = Buffer.allocUnsafe(Math.min(config.chunk_size, Math.max(info.size, 1)));
    const reportsProgress = info.size > buffer.length; // "larger files": more than one step
    let position = 0;
    let lastProgress = -Infinity;
    for (;;) {
      context.signal.throwIfAborted();
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      if (position > config.max_bytes) throw tooLarge(filePath, position, config.max_bytes); // it grew
      consume(buffer.subarray(0, bytesRead));
      if (reportsProgress && Date.now() - lastProgress >= PROGRESS_INTERVAL_MS) {
        context.progress(position, info.size);
        lastProgress = Date.now();
      }
      if (config.chunk_delay_ms > 0) {
        await sleep(config.chunk_delay_ms, undefined, { signal: context.signal }); // aborts at once
      }
    }
    return position;
  } catch (error) {
    if (typeof error.code === 'string' && typeof error.syscall === 'string') throw fileError(error, filePath);
    throw error;
  } finally {
    if (handle !== undefined) await handle.close();
  }
}

function tooLarge(filePath, size, maxBytes) {
  const message = `File too large: ${filePath} has ${size} bytes, max_bytes is ${maxBytes}`;
  return new RpcError(ErrorCode.INVALID_PARAMS, message, { path: filePath, size, max_bytes: maxBytes });
}

/** An operating-system error, as the error the core should see. */
function fileError(error, filePath) {
  const data = { path: filePath, errno: error.code };
  switch (error.code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new RpcError(ErrorCode.NOT_FOUND, `File not found: ${filePath}`, data);
    case 'EISDIR':
      return new RpcError(ErrorCode.INVALID_PARAMS, `Not a regular file: ${filePath}`, data);
    default:
      return new RpcError(ErrorCode.INTEGRATION_ERROR, `Cannot read ${filePath}: ${error.code}`, data);
  }
}

/**
 * Counts over raw bytes, so a chunk boundary inside a multi-byte character changes nothing:
 * `bytes`; `lines`, the newline-terminated lines plus an unterminated last one ("a\nb" has 2);
 * `words`, runs of bytes other than ASCII whitespace (like `wc -w` in the C locale).
 */
class TextStats {
  constructor() {
    this.bytes = 0;
    this.newlines = 0;
    this.words = 0;
    this.inWord = false;
    this.lastByte = -1;
    this.utf8 = new Utf8Text(null);
  }

  add(chunk) {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      if (byte === 0x0a) this.newlines++;
      if (byte === 0x20 || (byte >= 0x09 && byte <= 0x0d)) {
        this.inWord = false;
      } else if (!this.inWord) {
        this.inWord = true;
        this.words++;
      }
    }
    this.bytes += chunk.length;
    if (chunk.length > 0) this.lastByte = chunk[chunk.length - 1];
    this.utf8.add(chunk);
  }

  finish() {
    const unterminated = this.bytes > 0 && this.lastByte !== 0x0a ? 1 : 0;
    return {
      lines: this.newlines + unterminated,
      words: this.words,
      bytes: this.bytes,
      encoding: this.utf8.finish() ? 'utf-8' : 'unknown',
    };
  }
}

/** Decodes UTF-8 across chunk boundaries; remembers the first invalid sequence. */
class Utf8Text {
  constructor(onText) {
    this.onText = onText; // receives the decoded text, or null to only check validity
    this.decoder = new TextDecoder('utf-8', { fatal: true });
    this.offset = 0;
    this.error = null;
  }

  add(chunk) {
    if (this.error === null) {
      try {
        const text = this.decoder.decode(chunk, { stream: true });
        if (this.onText) this.onText(text);
      } catch {
        const last = this.offset + chunk.length - 1;
        this.error = `not valid UTF-8 text (an invalid sequence in bytes ${this.offset}..${last})`;
      }
    }
    this.offset += chunk.length;
  }

  finish() {
    if (this.error === null) {
      try {
        const text = this.decoder.decode();
        if (this.onText) this.onText(text);
      } catch {
        this.error = 'not valid UTF-8 text (the file ends in the middle of a character)';
      }
    }
    return this.error === null;
  }
}

/** The first `limit` problems, then only a count. */
class ErrorList {
  constructor(limit) {
    this.limit = limit;
    this.items = [];
    this.count = 0;
  }

  add(message) {
    if (this.items.length < this.limit) this.items.push(message);
    this.count++;
  }

  list() {
    const more = this.count - this.items.length;
    return more > 0 ? [...this.items, `... and ${more} more`] : [...this.items];
  }
}

const FIELD_START = 0;
const UNQUOTED = 1;
const QUOTED = 2;
const QUOTE_IN_QUOTED = 3; // a `"` inside a quoted field: `""` (an escaped quote) or its end

/**
 * Checks CSV as RFC 4180 writes it: comma-separated fields, optionally in double quotes (which
 * may span lines; `""` is a quote), LF or CRLF line endings. Every record must have as many
 * fields as the first one (the header). Blank lines are skipped. Fed text in pieces.
 */
class CsvChecker {
  constructor(errors) {
    this.errors = errors;
    this.state = FIELD_START;
    this.fields = 0; // fields completed in the current record
    this.blank = true; // nothing seen yet in the current record
    this.line = 1;
    this.recordLine = 1; // where the current record starts (quoted fields may span lines)
    this.quoteLine = 0; // where the open quoted field starts
    this.expected = null; // fields per record, from the header
  }

  add(text) {
    for (const char of text) {
      if (this.state === QUOTED) {
        if (char === '"') this.state = QUOTE_IN_QUOTED;
        else if (char === '\n') this.line++;
        continue;
      }
      if (char === '\r') continue; // CRLF: the LF ends the record
      if (this.state === QUOTE_IN_QUOTED) {
        if (char === '"') {
          this.state = QUOTED;
          continue;
        }
        if (char !== ',' && char !== '\n') {
          this.errors.add(`line ${this.line}: text after the closing quote of a field`);
          this.state = UNQUOTED;
          continue;
        }
      }
      if (char === ',') {
        this.fields++;
        this.blank = false;
        this.state = FIELD_START;
      } else if (char === '\n') {
        this.endRecord();
        this.line++;
        this.recordLine = this.line;
      } else if (char === '"' && this.state === FIELD_START) {
        this.state = QUOTED;
        this.quoteLine = this.line;
        this.blank = false;
      } else {
        if (char === '"') this.errors.add(`line ${this.line}: a quote inside an unquoted field`);
        this.state = UNQUOTED;
        this.blank = false;
      }
    }
  }

  endRecord() {
    if (!this.blank) {
      const count = this.fields + 1;
      if (this.expected === null) {
        this.expected = count;
      } else if (count !== this.expected) {
        const fields = count === 1 ? '1 field' : `${count} fields`;
        this.errors.add(`line ${this.recordLine}: ${fields}, expected ${this.expected} as in the header`);
      }
    }
    this.fields = 0;
    this.blank = true;
    this.state = FIELD_START;
  }

  finish() {
    if (this.state === QUOTED) this.errors.add(`line ${this.quoteLine}: a quoted field is never closed`);
    else this.endRecord(); // the last record may lack its final newline
  }
}

// ---------------------------------------------------------------------------------------------
// 6. Transports (§1) and main
// ---------------------------------------------------------------------------------------------

/** `unix:/path`, `tcp:HOST:PORT` (e.g. tcp:127.0.0.1:4000 or tcp:[::1]:4000), or `stdio`. */
function parseEndpoint(spec) {
  if (spec === 'stdio') return { kind: 'stdio' };
  if (spec.startsWith('unix:') && spec.length > 'unix:'.length) return { kind: 'unix', path: spec.slice(5) };
  if (spec.startsWith('tcp:')) {
    const address = spec.slice(4);
    const colon = address.lastIndexOf(':');
    const host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    const port = Number(address.slice(colon + 1));
    if (colon > 0 && host !== '' && Number.isInteger(port) && port > 0 && port < 65536) {
      return { kind: 'tcp', host, port };
    }
  }
  throw new Error(`SPACEDRIVE_IPC=${JSON.stringify(spec)}: expected unix:PATH, tcp:HOST:PORT or stdio`);
}

function connect(endpoint) {
  return new Promise((resolve, reject) => {
    const socket =
      endpoint.kind === 'unix'
        ? net.connect({ path: endpoint.path })
        : net.connect(endpoint.port, endpoint.host);
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Wires a session to a readable and a writable stream (one socket, or stdin and stdout). */
function serve(readable, writable, closeWritable) {
  const session = new Session({ write: (frame) => writable.write(frame), close: closeWritable });
  readable.on('data', (chunk) => session.onData(chunk));
  readable.on('end', () => session.onEnd());
  for (const stream of new Set([readable, writable])) {
    stream.on('error', (error) => session.close(1, `connection error: ${error.message}`));
  }
  return session;
}

async function main() {
  const spec = process.env.SPACEDRIVE_IPC;
  if (!spec) {
    process.stderr.write(
      'js-hello is a Spacedrive integration: the core starts it with SPACEDRIVE_IPC set\n' +
        '(unix:PATH, tcp:HOST:PORT or stdio) and SPACEDRIVE_IPC_SECRET. See README.md.\n',
    );
    process.exit(2);
  }
  const endpoint = parseEndpoint(spec);
  const secret = process.env.SPACEDRIVE_IPC_SECRET;

  if (endpoint.kind === 'stdio') {
    // stdout is the wire. Anything else printed there (a stray console.log, in our code or a
    // library's) would corrupt the framing, so console.log and friends go to stderr.
    console.log = console.info = console.debug = console.error;
    serve(process.stdin, process.stdout, (done) => process.stdout.end(done));
    return;
  }

  if (endpoint.kind === 'tcp' && !secret) {
    throw new Error('SPACEDRIVE_IPC_SECRET is not set: on tcp the first frame must be $/hello with it');
  }
  const socket = await connect(endpoint);
  socket.setNoDelay(true); // small request/answer frames: do not let Nagle hold them back
  // The first frame proves that we are the process the core started: any local process can
  // reach a loopback port, only the child knows the secret. Checked on unix sockets too.
  const session = serve(socket, socket, (done) => socket.end(done));
  if (secret) session.notify('$/hello', { secret });
}

main().catch((error) => {
  process.stderr.write(`js-hello: ${error.message}\n`);
  process.exit(1);
});
