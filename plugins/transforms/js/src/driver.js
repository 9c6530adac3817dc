// The JavaScript half of `ebb:js`, evaluated once per instance before the
// user's module. It gives the transformation RudderStack's globals (`log`,
// plus `console`), and returns the two functions the Rust half calls:
// `describe(error)` for a failure outside a batch (a syntax error), and
// `driver(exports, settings)`, which returns `run(batchJson)`.
//
// `run` keeps JSON on the C side of QuickJS: the batch arrives as one JSON
// text, and each result leaves as `null` (drop), a string (the row error),
// or a flat array of `op, id, fieldsJson, previousJson` per event kept,
// where `previousJson` is `false` for "the change's own previous".
(hostLog, files) => {
  const LEVELS = { debug: 1, info: 2, warn: 3, error: 4 };
  const text = (value) => {
    if (typeof value === "string") return value;
    if (value instanceof Error) return describe(value);
    try {
      const json = JSON.stringify(value);
      return json === undefined ? String(value) : json;
    } catch {
      return String(value);
    }
  };
  // A value inside an error message: strings quoted.
  const quote = (value) => (typeof value === "string" ? JSON.stringify(value) : text(value));
  const writer = (level) => (...args) => hostLog(LEVELS[level], args.map(text).join(" "));
  globalThis.log = writer("info");
  globalThis.console = {
    log: writer("info"),
    info: writer("info"),
    debug: writer("debug"),
    warn: writer("warn"),
    error: writer("error"),
  };

  // `TypeError: x is undefined (transforms/rebuild.js:4:7)`: the message and
  // the first place in the user's own files, never in this driver.
  function describe(error) {
    // Out of memory with no room left for an error object, QuickJS throws null.
    if (error === null) return "threw null (unless the transformation throws null, it ran out of memory)";
    if (!(error instanceof Error)) return `threw ${text(error)}`;
    const head = error.name ? `${error.name}: ${error.message}` : String(error.message);
    const at = String(error.stack ?? "")
      .split("\n")
      .map((line) => /([^\s()]+?):(\d+)(?::(\d+))?\)?\s*$/.exec(line))
      .find((m) => m && Object.hasOwn(files, m[1]));
    return at ? `${head} (${files[at[1]]}:${at[2]}${at[3] ? `:${at[3]}` : ""})` : head;
  }

  function driver(exports, settings) {
    const { shape, sync, destination } = settings;
    const exported = (name) => (typeof exports[name] === "function" ? exports[name] : null);
    const transformEvent = exported("transformEvent");
    const transformBatch = exported("transformBatch");
    const name = transformBatch ? "transformBatch" : "transformEvent";
    const rudderstack = shape === "rudderstack";
    // An event's metadata: by the object given, or (for a copy) by its
    // messageId, as RudderStack looks it up; `{}` for an unknown event.
    // Built when first asked for, as many transformations never ask.
    let inputs = [];
    let byEvent = null;
    let byId = null;
    const messageId = (event) => (rudderstack ? event.messageId : event.delivery_id);
    const metaOf = (input) =>
      (input.meta ??= {
        key: input.id,
        recordId: input.id,
        op: input.op,
        sync,
        destination,
        messageId: input.deliveryId,
        previous: input.previous,
        sourceType: "warehouse",
      });
    function metadata(event) {
      byEvent ??= new Map(inputs.map((input) => [input.event, input]));
      let input = byEvent.get(event);
      if (!input && event !== null && typeof event === "object") {
        byId ??= new Map(inputs.map((one) => [one.deliveryId, one]));
        input = byId.get(messageId(event));
      }
      return input ? metaOf(input) : {};
    }

    const wrongType = (value) =>
      new TypeError(
        `${name} returned ${value === null ? "null" : Array.isArray(value) ? "an array" : typeof value} ` +
          `where an event is expected: return ${rudderstack ? "an object (the call to send)" : "an envelope {op, id, fields, previous}"}, ` +
          "an array of them, or null/undefined to drop the event",
      );
    const json = (value, what) => {
      try {
        return JSON.stringify(value);
      } catch (error) {
        throw new TypeError(`${name} returned ${what} that cannot be written as JSON: ${error.message}`);
      }
    };
    const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

    // One event the transformation returned, for the change `input`, as
    // the four strings Rust reads.
    function encode(out, input, into) {
      if (!isObject(out)) throw wrongType(out);
      if (rudderstack) {
        into.push(input.op, input.id, json(out, "an event"), false);
        return;
      }
      const op = out.op ?? input.op;
      if (op !== "added" && op !== "updated" && op !== "deleted") {
        throw new TypeError(`${name} returned an envelope whose op is ${quote(op)}; use "added", "updated" or "deleted"`);
      }
      const id = out.id ?? input.id;
      if ((typeof id !== "string" && typeof id !== "number") || id === "") {
        throw new TypeError(`${name} returned an envelope whose id is ${quote(id)}; use a non-empty string`);
      }
      if (!isObject(out.fields)) {
        throw new TypeError(
          `${name} returned an envelope whose fields are ${quote(out.fields)}; \`fields\` must be an object`,
        );
      }
      const previous = out.previous === undefined ? input.event.previous : out.previous;
      if (previous !== null && previous !== undefined && !isObject(previous)) {
        throw new TypeError(`${name} returned an envelope whose previous is ${quote(previous)}; use an object or null`);
      }
      into.push(op, String(id), json(out.fields, "fields"), previous == null ? null : json(previous, "previous"));
    }

    // What a change became: `null`, an error string, or the encoded events.
    function settle(out, input) {
      try {
        if (out === undefined || out === null) return null;
        const kept = [];
        if (Array.isArray(out)) {
          for (const one of out) if (one !== undefined && one !== null) encode(one, input, kept);
          return kept.length ? kept : null;
        }
        encode(out, input, kept);
        return kept;
      } catch (error) {
        return describe(error);
      }
    }

    // The change as the transformation sees it, and what its metadata is
    // made of.
    function present(change) {
      const event = rudderstack
        ? {
            type: "identify",
            userId: change.id,
            traits: change.fields,
            messageId: change.delivery_id,
            channel: "sources",
            context: { sources: { name: sync } },
          }
        : change;
      return {
        event,
        op: change.op,
        id: change.id,
        deliveryId: change.delivery_id,
        previous: change.previous ?? null,
        meta: null,
      };
    }

    const PENDING = {};
    // Promises a transformation returned; the Rust half runs QuickJS's jobs
    // and then calls `finish`, which turns any still pending into errors.
    let waiting = 0;
    function later(promise, results, i, convert) {
      waiting++;
      results[i] = PENDING;
      promise.then(
        (out) => {
          results[i] = convert(out);
        },
        (error) => {
          results[i] = describe(error);
        },
      );
    }

    function eachEvent(inputs) {
      const results = new Array(inputs.length);
      for (let i = 0; i < inputs.length; i++) {
        const input = inputs[i];
        let out;
        try {
          out = transformEvent(input.event, metadata);
        } catch (error) {
          results[i] = describe(error);
          continue;
        }
        if (out instanceof Promise) later(out, results, i, (o) => settle(o, input));
        else results[i] = settle(out, input);
      }
      return results;
    }

    function wholeBatch(inputs) {
      const results = new Array(inputs.length).fill(null);
      const byEvent = new Map(inputs.map((input, i) => [input.event, i]));
      const byKey = new Map(
        inputs.map((input, i) => [rudderstack ? input.event.messageId : input.id, i]),
      );
      const gather = (out) => {
        if (!Array.isArray(out)) return inputs.map(() => describe(wrongType(out)));
        const grouped = inputs.map(() => []);
        for (const one of out) {
          if (one === undefined || one === null) continue;
          const i = byEvent.get(one) ?? (isObject(one) ? byKey.get(rudderstack ? one.messageId : one.id) : undefined);
          if (i === undefined) {
            const why = `transformBatch returned an event that is none of its inputs (${text(one).slice(0, 120)}): return the events it was given, changed or not, or keep their ${rudderstack ? "messageId" : "id"}`;
            return inputs.map(() => why);
          }
          grouped[i].push(one);
        }
        return grouped.map((outs, i) => (outs.length ? settle(outs, inputs[i]) : null));
      };
      let out;
      try {
        out = transformBatch(
          inputs.map((input) => input.event),
          metadata,
        );
      } catch (error) {
        return inputs.map(() => describe(error));
      }
      if (out instanceof Promise) {
        const box = [];
        later(out, box, 0, gather);
        return { box };
      }
      return gather(out);
    }

    let pending = null;
    return {
      run(batchJson) {
        waiting = 0;
        byEvent = null;
        byId = null;
        inputs = JSON.parse(batchJson).map(present);
        const results = transformBatch ? wholeBatch(inputs) : eachEvent(inputs);
        pending = waiting ? { results, size: inputs.length } : null;
        return waiting ? null : results;
      },
      // After QuickJS's jobs ran: the results of a batch whose
      // transformation returned promises.
      finish() {
        const { results, size } = pending;
        pending = null;
        const never = `${name}'s promise never settled: Ebb gives transformations no timers and no network`;
        if (results.box) {
          const [out] = results.box;
          return out === PENDING ? new Array(size).fill(never) : out;
        }
        return results.map((r) => (r === PENDING ? never : r));
      },
    };
  }

  return { describe, driver };
};
