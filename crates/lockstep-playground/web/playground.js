// The lockstep policy playground: the page around the lockstep-playground module.
// Every decision, alias, drift count and import comes from the module (the same Rust as
// `lockstep explain`, `check` and `policy import`); this file only moves text in and out.
// User text is only ever set as textContent, never parsed as HTML.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);

  const EXAMPLE_POLICIES = {
    default: "",
    lockstep: [
      "# A lockstep policy: the collector's tail_sampling policies, plus log-only settings.",
      "policies:",
      "  - name: errors",
      "    type: status_code",
      "    status_code: {status_codes: [ERROR]}",
      "  - name: slow",
      "    type: latency",
      "    latency: {threshold_ms: 200}",
      "  - name: checkout",
      "    type: string_attribute",
      "    string_attribute: {key: route, values: [/checkout]}",
      "lockstep:",
      "  no_trace_id: keep",
      "",
    ].join("\n"),
    collector: [
      "# An OTel Collector tail_sampling block, pasted as is.",
      "tail_sampling:",
      "  decision_wait: 10s",
      "  policies:",
      "    - name: errors",
      "      type: status_code",
      "      status_code: {status_codes: [ERROR]}",
      "    - name: slow",
      "      type: latency",
      "      latency: {threshold_ms: 100}",
      "    - name: big-traces",
      "      type: span_count",
      "      span_count: {min_spans: 50}",
      "    - name: one-in-ten",
      "      type: probabilistic",
      "      probabilistic: {sampling_percentage: 10}",
      "",
    ].join("\n"),
    fluentbit: [
      "# A Fluent Bit YAML config whose traces pass its own sampling processor.",
      "pipeline:",
      "  inputs:",
      "    - name: opentelemetry",
      "      port: 4318",
      "      processors:",
      "        traces:",
      "          - name: sampling",
      "            type: tail",
      "            sampling_settings:",
      "              decision_wait: 2s",
      "            conditions:",
      "              - type: status_code",
      "                status_codes: [ERROR]",
      "              - type: latency",
      "                threshold_ms_high: 200",
      "  outputs:",
      "    - name: stdout",
      "      match: '*'",
      "",
    ].join("\n"),
  };

  const EXAMPLE_LOGS = [
    '{"ts":1795000000049,"level":"info","service":"api","trace_id":"7c11c05dff7b9c8f9a4cbd787f6c813e","span_id":"2c4bd4f0a0e1e6b1","msg":"request started","route":"/cart"}',
    '{"ts":1795000000112,"level":"info","service":"api","trace_id":"7c11c05dff7b9c8f9a4cbd787f6c813e","span_id":"2c4bd4f0a0e1e6b1","msg":"request finished","duration_ms":63}',
    '{"time":1795000000.2969,"level":"ERR","svc":"billing","trace_id":"9a6d7c1e2b3f40558a1b2c3d4e5f6071","span_id":"d0c6d548d393c5f9","message":"card declined","duration":0.041}',
    '{"level":50,"time":1795000000301,"traceId":"1f2e3d4c5b6a79881f2e3d4c5b6a7988","spanId":"75c454fa23d82792","msg":"render failed"}',
    '{"level":30,"time":1795000000420,"traceId":"0a0b0c0d0e0f10111213141516171819","spanId":"1a2b3c4d5e6f7081","msg":"render","responseTime":412}',
    '{"Timestamp":"2026-11-28T10:00:00.5Z","SeverityText":"Information","TraceId":"aabbccddeeff00112233445566778899","SpanId":"0102030405060708","Body":"GET /checkout","Attributes":{"route":"/checkout"},"duration":"1.2s"}',
    '{"level":"info","service":"ledger","trace_id":"5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e","msg":"posted","upstream_ms":950}',
    '{"level":"warning","service":"ledger","msg":"no trace here"}',
    '{"level":"info","service":"api","trace_id":"00000000000000000000000000000000","msg":"bad id"}',
    '{"level":"info","msg":"truncated',
  ].join("\n") + "\n";

  // ---- the module ---------------------------------------------------------------
  function b64bytes(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  // Embedded (lockstep_playground_wasm.js), so the page also works from file:// offline.
  wasm_bindgen.initSync({ module: b64bytes(window.LOCKSTEP_WASM_B64) });
  const mod = wasm_bindgen;

  // ---- the URL fragment -----------------------------------------------------------
  function b64url(bytes) {
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function unb64url(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    return b64bytes(s);
  }
  async function pipe(bytes, stream) {
    const out = new Response(new Blob([bytes]).stream().pipeThrough(stream));
    return new Uint8Array(await out.arrayBuffer());
  }
  async function compress(text) {
    return b64url(await pipe(new TextEncoder().encode(text), new CompressionStream("deflate-raw")));
  }
  async function decompress(s) {
    return new TextDecoder().decode(await pipe(unb64url(s), new DecompressionStream("deflate-raw")));
  }
  function fragmentParams() {
    const out = {};
    const h = location.hash.replace(/^#/, "");
    if (!h) return null;
    for (const part of h.split("&")) {
      const i = part.indexOf("=");
      if (i > 0) out[part.slice(0, i)] = part.slice(i + 1);
    }
    return out;
  }
  // {policy, logs, processor} from the fragment, or null when it has none.
  async function readFragment() {
    const p = fragmentParams();
    if (!p) return null;
    // Each failure is said in words (never a raw DOMException or SyntaxError).
    const fail = (msg) => {
      const e = new Error(msg);
      e.name = "FragmentError";
      throw e;
    };
    if (p.z !== undefined) {
      let text, state;
      try {
        text = await decompress(p.z);
      } catch (_) {
        fail("its z= value is not compressed playground state (was the link cut short or edited?)");
      }
      try {
        state = JSON.parse(text);
      } catch (_) {
        fail("its z= value inflates, but not to the playground's state");
      }
      if (!state || typeof state !== "object") fail("its z= value is not the playground's state");
      const str = (v) => (typeof v === "string" ? v : "");
      return { policy: str(state.policy), logs: str(state.logs), processor: str(state.processor) };
    }
    if (p.policy === undefined && p.logs === undefined) return null;
    const dec = (s, name) => {
      if (s === undefined) return "";
      try {
        return decodeURIComponent(s);
      } catch (_) {
        return fail("its " + name + "= value is not percent-encoded text (was the link cut short or edited?)");
      }
    };
    return { policy: dec(p.policy, "policy"), logs: dec(p.logs, "logs"), processor: dec(p.processor, "processor") };
  }
  async function shareFragment() {
    const st = { policy: $("policy").value, logs: $("logs").value, processor: currentProcessor() };
    let plain = "policy=" + encodeURIComponent(st.policy) + "&logs=" + encodeURIComponent(st.logs);
    if (st.processor) plain += "&processor=" + encodeURIComponent(st.processor);
    if (plain.length <= 2000) return plain;
    return "z=" + (await compress(JSON.stringify(st)));
  }

  // ---- rendering ------------------------------------------------------------------
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }
  function currentProcessor() {
    const box = $("processor-choice");
    return box.hidden ? "" : $("processor").value;
  }

  function renderPolicy(p) {
    const st = $("policy-status");
    clear(st);
    st.className = "status" + (p.ok ? "" : " error");
    if (!p.ok) {
      let where = "";
      if (p.line) where = "line " + p.line + (p.column ? ", column " + p.column : "") + ": ";
      st.appendChild(el("div", where + p.error));
      if (p.line) {
        const src = $("policy").value.split("\n")[p.line - 1];
        if (src !== undefined) {
          st.appendChild(el("pre", src + "\n" + " ".repeat(Math.max(0, (p.column || 1) - 1)) + "^", "caret"));
        }
      }
    } else {
      const what = { default: "built-in default", lockstep: "lockstep policy", otelcol: "imported from an OTel Collector config", "fluent-bit": "imported from a Fluent Bit config" }[p.kind] || p.kind;
      st.appendChild(el("div", what + " · " + p.semantics + " semantics · policies: " + (p.policies.join(", ") || "none")));
      for (const w of p.warnings || []) st.appendChild(el("div", "warning: " + w, "warn"));
    }
    const procs = (p.import && p.import.processors) || p.processors || [];
    const choice = $("processor-choice");
    if (procs.length > 1) {
      const sel = $("processor");
      const keep = sel.value;
      clear(sel);
      for (const pr of procs) {
        const id = typeof pr === "string" ? pr : pr.id;
        const o = el("option", id);
        o.value = id;
        sel.appendChild(o);
      }
      sel.value = (p.import && p.import.chosen) || keep || sel.value;
      choice.hidden = false;
    } else if (!p.import) {
      choice.hidden = true;
    }
    const imp = $("import");
    imp.hidden = !p.import;
    if (p.import) {
      $("import-source").textContent = p.import.source === "otelcol" ? "an OTel Collector config (" + p.import.chosen + ")" : "a Fluent Bit config (" + p.import.chosen + ")";
      const ul = $("import-messages");
      clear(ul);
      for (const m of p.import.messages) ul.appendChild(el("li", m.trim(), m.includes("NOT MIRRORED") ? "skipped" : ""));
      $("import-policy").textContent = p.import.policy_yaml;
    }
  }

  function byteSnippet(line, offset) {
    const bytes = new TextEncoder().encode(line);
    const from = Math.max(0, offset - 24);
    const dec = new TextDecoder();
    const before = dec.decode(bytes.subarray(from, offset));
    const after = dec.decode(bytes.subarray(offset, offset + 24));
    return (from > 0 ? "…" : "") + before + "⟦" + after;
  }

  function renderLines(explained, logs) {
    const src = logs.split("\n");
    const body = $("lines").tBodies[0];
    clear(body);
    let n = 0;
    for (const text of explained.split("\n")) {
      if (!text) continue;
      const r = JSON.parse(text);
      n++;
      const tr = document.createElement("tr");
      tr.dataset.line = r.line;
      tr.dataset.decision = r.decision;
      tr.appendChild(el("td", r.line));
      tr.appendChild(el("td", r.decision, "decision"));
      tr.appendChild(el("td", r.reason));
      for (const [key, from] of [["trace_id", "trace_id_from"], ["span_id", "span_id_from"], ["level", "level_from"], ["duration_ms", "duration_from"]]) {
        const td = el("td", r[key] === null || r[key] === undefined ? "–" : r[key], "mono");
        if (r[from]) {
          td.appendChild(document.createElement("br"));
          td.appendChild(el("span", "from " + r[from], "from"));
        }
        tr.appendChild(td);
      }
      const problems = [];
      if (r.error) {
        const m = /byte offset (\d+)/.exec(r.error);
        const line = (src[r.line - 1] || "").replace(/\r$/, "");
        problems.push(r.error + (m ? "  " + byteSnippet(line, Number(m[1])) : ""));
      }
      if (r.trace_id_invalid) problems.push("trace_id: " + r.trace_id_invalid);
      if (r.span_id_invalid) problems.push("span_id: " + r.span_id_invalid);
      if (r.level_unknown !== undefined) problems.push("unknown level " + JSON.stringify(r.level_unknown));
      if (r.duration_invalid) problems.push("duration not readable");
      if (r.skipped_policies) problems.push(r.skipped_policies + " policies could not evaluate");
      tr.appendChild(el("td", problems.join("; "), "problem"));
      body.appendChild(tr);
    }
    $("lines-section").hidden = n === 0;
    return n;
  }

  function renderCheck(c) {
    $("summary").hidden = false;
    $("kept").textContent = c.kept + " of " + c.records + " lines (" + c.keep_pct + "%)";
    const body = $("reasons").tBodies[0];
    clear(body);
    for (const r of c.reasons) {
      const tr = document.createElement("tr");
      tr.dataset.decision = r.decision;
      for (const v of [r.decision, r.reason, r.records, r.share_pct + "%"]) tr.appendChild(el("td", v));
      body.appendChild(tr);
    }
    const dl = $("drift-list");
    clear(dl);
    const counts = (m) => Object.entries(m).map(([k, n]) => k + " " + n).join(", ") || "–";
    const rows = [
      ["trace_id", counts(c.trace_id)], ["  found in", counts(c.trace_id_from)],
      ["span_id", counts(c.span_id)],
      ["level", counts(c.level)], ["  found in", counts(c.level_from)],
      ["duration", counts(c.duration)], ["  found in", counts(c.duration_from)],
    ];
    if (Object.keys(c.unknown_levels).length) rows.push(["DRIFT unknown level values", counts(c.unknown_levels)]);
    if (Object.keys(c.uncovered_duration_fields).length) rows.push(["DRIFT duration-like fields no alias covers", counts(c.uncovered_duration_fields)]);
    if (Object.keys(c.uncovered_level_fields).length) rows.push(["DRIFT level-like fields no alias covers", counts(c.uncovered_level_fields)]);
    for (const d of c.implausible_durations || []) rows.push(["DRIFT implausible durations", d.hint]);
    if (Object.keys(c.uncovered_trace_id_fields || {}).length) rows.push(["DRIFT trace-id-like fields no alias covers", counts(c.uncovered_trace_id_fields)]);
    if (Object.keys(c.nested_json_candidates || {}).length) rows.push(["DRIFT JSON inside a string field (lockstep.fields.nested_json)", counts(c.nested_json_candidates)]);
    if (c.first_unreadable) rows.push(["unreadable", c.unreadable + " (first: " + c.first_unreadable + ")"]);
    for (const [k, v] of rows) {
      dl.appendChild(el("dt", k, k.startsWith("DRIFT") ? "warn" : ""));
      dl.appendChild(el("dd", v));
    }
    $("drift").hidden = false;
  }

  function run() {
    const logs = $("logs").value;
    const result = JSON.parse(mod.evaluate($("policy").value, logs, currentProcessor()));
    renderPolicy(result.policy);
    if (!result.policy.ok) {
      for (const id of ["summary", "drift", "lines-section"]) $(id).hidden = true;
      $("result-json").textContent = "";
      document.body.dataset.state = "policy-error";
      return;
    }
    $("result-json").textContent = result.explain;
    document.body.dataset.lines = renderLines(result.explain, logs);
    renderCheck(result.check);
    document.body.dataset.state = "ready";
  }

  // ---- wiring ---------------------------------------------------------------------
  let timer = 0;
  function later() {
    clearTimeout(timer);
    timer = setTimeout(run, 200);
  }
  async function loadFragment() {
    try {
      const st = await readFragment();
      if (!st) return false;
      $("policy").value = st.policy;
      $("logs").value = st.logs;
      $("processor-choice").hidden = !st.processor;
      if (st.processor) {
        const o = el("option", st.processor);
        o.value = st.processor;
        clear($("processor"));
        $("processor").appendChild(o);
      }
      return true;
    } catch (e) {
      $("policy-status").className = "status error";
      $("policy-status").textContent =
        "the link's fragment could not be read: " +
        (e && e.name === "FragmentError" ? e.message : "it is not a playground link");
      document.body.dataset.state = "fragment-error";
      throw e;
    }
  }
  function readFile(input, target) {
    input.addEventListener("change", () => {
      const f = input.files[0];
      if (!f) return;
      f.text().then((t) => {
        $(target).value = t;
        run();
      });
    });
  }
  $("policy").addEventListener("input", () => {
    $("processor-choice").hidden = true;
    later();
  });
  $("logs").addEventListener("input", later);
  $("processor").addEventListener("change", run);
  $("example-policy").addEventListener("change", (e) => {
    if (!e.target.value) return;
    $("policy").value = EXAMPLE_POLICIES[e.target.value];
    $("processor-choice").hidden = true;
    e.target.value = "";
    run();
  });
  $("example-logs").addEventListener("click", () => {
    $("logs").value = EXAMPLE_LOGS;
    run();
  });
  readFile($("policy-file"), "policy");
  readFile($("logs-file"), "logs");
  $("share").addEventListener("click", async () => {
    const frag = await shareFragment();
    history.replaceState(null, "", "#" + frag);
    $("share-url").value = location.href;
    $("share-url").select();
    try {
      await navigator.clipboard.writeText(location.href);
    } catch (_) {
      /* file:// or no permission: the link is selected in the box */
    }
  });
  window.addEventListener("hashchange", () => loadFragment().then((ok) => ok && run()));

  loadFragment().then((ok) => {
    if (!ok) {
      $("policy").value = EXAMPLE_POLICIES.lockstep;
      $("logs").value = EXAMPLE_LOGS;
    }
    run();
  });
})();
