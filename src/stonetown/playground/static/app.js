// Stonetown playground page. It only renders: every answer comes from the server's engine
// (POST /api/...). No authorization semantics live here.
"use strict";

const $ = (id) => document.getElementById(id);
const SECTIONS = ["schema", "relationships", "assertions", "validation"];
const state = { marks: { schema: {}, relationships: {}, assertions: {}, validation: {} }, allowWrites: false };

async function api(name, body) {
  const response = await fetch(`/api/${name}`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body || {}),
  });
  let data;
  try { data = await response.json(); } catch (e) { data = { error: `the server answered ${response.status}` }; }
  if (!response.ok || data.error) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function sections() {
  const out = {};
  for (const name of SECTIONS) out[name] = $(name).value;
  return out;
}

function status(text, isError) {
  const el = $("status");
  el.textContent = text || "";
  el.style.color = isError ? "#ff9b9b" : "#ffd479";
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}

// ---- editors: highlighting overlay and gutter marks ---------------------------------------

const KEYWORDS = /\b(definition|relation|permission|caveat|with|use|expiration|nil|any|all|assertTrue|assertFalse|assertCaveated|is)\b/g;

function highlight(name, text) {
  let html = escapeHtml(text);
  if (name === "schema") {
    html = html.replace(/(\/\/[^\n]*|\/\*[\s\S]*?\*\/)|(\b(?:definition|relation|permission|caveat|with|use|expiration|nil)\b)|(-&gt;|\||\+|&amp;|-)/g,
      (m, comment, kw, op) => comment ? `<span class="tok-comment">${m}</span>` : kw ? `<span class="tok-kw">${m}</span>` : `<span class="tok-op">${m}</span>`);
  } else if (name === "relationships") {
    html = html.replace(/(\/\/[^\n]*)|([#@])/g, (m, comment) => comment ? `<span class="tok-comment">${m}</span>` : `<span class="tok-op">${m}</span>`);
  } else {
    html = html.replace(/(#[^\n]*$)|("[^"\n]*")/gm, (m, comment) => comment ? `<span class="tok-comment">${m}</span>` : `<span class="tok-str">${m}</span>`)
      .replace(KEYWORDS, (m) => `<span class="tok-kw">${m}</span>`);
  }
  return html + "\n";
}

function renderEditor(name) {
  const area = $(name);
  const editor = area.closest(".editor");
  editor.querySelector("pre").innerHTML = highlight(name, area.value);
  const lines = area.value.split("\n").length;
  const marks = state.marks[name];
  const gutter = [];
  for (let i = 1; i <= lines; i++) {
    const mark = marks[i];
    gutter.push(`<span class="${mark ? mark.kind : ""}" title="${mark ? escapeHtml(mark.message) : ""}" data-line="${i}">${i}</span>`);
  }
  editor.querySelector(".gutter").innerHTML = gutter.join("");
  syncScroll(name);
}

function syncScroll(name) {
  const area = $(name);
  const editor = area.closest(".editor");
  editor.querySelector("pre").scrollTop = area.scrollTop;
  editor.querySelector("pre").scrollLeft = area.scrollLeft;
  editor.querySelector(".gutter").scrollTop = area.scrollTop;
}

function setMarks(name, list) {
  state.marks[name] = {};
  for (const item of list) {
    const prior = state.marks[name][item.line];
    if (!prior || prior.kind === "pass" || prior.kind === "warning") state.marks[name][item.line] = item;
  }
  renderEditor(name);
}

function goTo(name, line, column) {
  const area = $(name);
  const lines = area.value.split("\n");
  let offset = 0;
  for (let i = 0; i < Math.max(0, line - 1) && i < lines.length; i++) offset += lines[i].length + 1;
  offset += Math.max(0, (column || 1) - 1);
  showTab(`${name}-pane`);
  area.focus();
  area.setSelectionRange(offset, offset);
  area.scrollTop = Math.max(0, (line - 5) * 18);
  syncScroll(name);
}

function problemList(el, items, section) {
  el.innerHTML = items.map((item) =>
    `<div class="${item.kind}" data-section="${section}" data-line="${item.line}" data-column="${item.column || 0}">${escapeHtml(item.text)}</div>`).join("");
}

// ---- schema: live diagnostics and lint -----------------------------------------------------

let schemaTimer = null;
let schemaSeq = 0;

async function refreshSchema() {
  const seq = ++schemaSeq;
  try {
    const result = await api("schema", { schema: $("schema").value });
    if (seq !== schemaSeq) return;
    const errors = result.errors.map((d) => ({ kind: "error", line: d.line, column: d.column, message: d.message,
      text: `${d.line}:${d.column}: ${d.message}` }));
    const warnings = result.warnings.map((d) => ({ kind: "warning", line: d.line, column: d.column, message: d.message,
      text: `${d.line}:${d.column}: warning: ${d.message}` }));
    problemList($("diagnostics"), errors.length ? errors : [{ kind: "pass", line: 0, text: "schema OK" }], "schema");
    const lintNote = errors.length ? { kind: "warning", line: 0, text: "the schema has errors: lint runs once it compiles" }
      : { kind: "pass", line: 0, text: "no lint warnings" };
    problemList($("lint"), warnings.length ? warnings : [lintNote], "schema");
    $("converted-note").textContent = result.converted ? "OpenFGA model: shown converted below" : "";
    if (result.converted) $("diagnostics").insertAdjacentHTML("beforeend", `<pre class="converted">${escapeHtml(result.converted)}</pre>`);
    setMarks("schema", errors.length ? errors : warnings);
    refreshRelationships();
  } catch (e) {
    status(e.message, true);
  }
}

// ---- relationships: per-row validation, grid -----------------------------------------------

let relTimer = null;

async function refreshRelationships() {
  try {
    const result = await api("relationships", { schema: $("schema").value, relationships: $("relationships").value });
    const bad = result.rows.filter((row) => row.error);
    setMarks("relationships", bad.map((row) => ({ kind: "error", line: row.line, message: row.error })));
    problemList($("rel-problems"), bad.map((row) => ({ kind: "error", line: row.line, text: `${row.line}: ${row.text}: ${row.error}` })), "relationships");
    $("rel-summary").textContent = `${result.rows.length} relationships, ${bad.length} with problems` +
      (result.schema_ok ? "" : " (the schema has errors: rows checked for syntax only)");
    renderGrid(result.rows);
  } catch (e) {
    status(e.message, true);
  }
}

function renderGrid(rows) {
  const body = $("rel-grid").querySelector("tbody");
  body.innerHTML = rows.map((row) => `<tr class="${row.error ? "bad" : ""}" data-line="${row.line}">
    <td>${row.line}</td>
    ${["resource", "relation", "subject", "caveat"].map((f) => `<td><input data-field="${f}" value="${escapeHtml(row[f] || "")}"></td>`).join("")}
    <td><input data-field="context" value="${escapeHtml(row.context && Object.keys(row.context).length ? JSON.stringify(row.context) : "")}"></td>
    <td><input data-field="expiration" value="${escapeHtml(row.expiration || "")}"></td>
    <td>${escapeHtml(row.error || "")}</td></tr>`).join("");
}

function gridLine(tr) {
  const v = (f) => tr.querySelector(`[data-field="${f}"]`).value.trim();
  let text = `${v("resource")}#${v("relation")}@${v("subject")}`;
  if (v("caveat")) text += v("context") ? `[${v("caveat")}:${v("context")}]` : `[${v("caveat")}]`;
  if (v("expiration")) text += `[expiration:${v("expiration")}]`;
  return text;
}

function onGridEdit(event) {
  const tr = event.target.closest("tr");
  if (!tr) return;
  const lines = $("relationships").value.split("\n");
  lines[Number(tr.dataset.line) - 1] = gridLine(tr);
  $("relationships").value = lines.join("\n");
  renderEditor("relationships");
  refreshRelationships();
}

// ---- assertions and expected relations -----------------------------------------------------

async function runAll() {
  status("running…");
  try {
    const result = await api("run", { sections: sections() });
    const load = result.load.map((p) => ({ kind: "error", line: p.line, column: p.column, message: p.message, section: p.section,
      text: `${p.section} ${p.line}: ${p.message}` }));
    for (const section of ["schema", "relationships"]) {
      const mine = load.filter((p) => p.section === section);
      if (mine.length) setMarks(section, mine);
    }
    const assertions = result.assertions.map((a) => ({ kind: a.passed ? "pass" : "fail", line: a.line,
      message: a.reason, text: `${a.line}: ${a.passed ? "✓" : "✗"} ${a.kind} ${a.text}${a.passed ? "" : " — " + a.reason}` }));
    const validation = result.validation.map((v) => ({ kind: v.passed ? "pass" : "fail", line: v.line,
      message: v.reasons.join("; "), text: `${v.line}: ${v.passed ? "✓" : "✗"} ${v.key}${v.passed ? "" : " — " + v.reasons.join("; ")}` }));
    setMarks("assertions", assertions);
    setMarks("validation", validation);
    problemList($("assertion-results"), load.concat(assertions), "assertions");
    problemList($("validation-results"), load.concat(validation), "validation");
    const failed = assertions.filter((a) => a.kind === "fail").length + validation.filter((v) => v.kind === "fail").length;
    $("run-summary").textContent = load.length ? `${load.length} load errors` :
      `${assertions.length} assertions, ${validation.length} expected-relation blocks, ${failed} failed`;
    status(load.length || failed ? "failures" : "all passed", load.length || failed);
  } catch (e) {
    status(e.message, true);
  }
}

async function regenerate() {
  try {
    const result = await api("regenerate", { sections: sections() });
    $("validation").value = result.validation;
    renderEditor("validation");
    status("expected relations regenerated");
  } catch (e) {
    status(e.message, true);
  }
}

// ---- check and explain ---------------------------------------------------------------------

function treeHtml(node) {
  // a skipped node (not evaluated, engine/explain.py) has no value
  const mark = node.kind === "skipped" ? "·" : { ALLOWED: "✓", DENIED: "✗", CONDITIONAL: "?" }[node.result];
  const where = node.line ? ` <span class="where" data-line="${node.line}" data-column="${node.column}">[${node.line}:${node.column}]</span>` : "";
  const reason = node.reason ? ` <span class="reason">— ${escapeHtml(node.reason)}</span>` : "";
  const missing = node.missing && node.missing.length ? ` <span class="reason">(missing: ${escapeHtml(node.missing.join(", "))})</span>` : "";
  const children = node.children && node.children.length ? `<ul>${node.children.map(treeHtml).join("")}</ul>` : "";
  return `<li class="${node.result}" data-kind="${node.kind}"><span class="node"><span class="mark">${mark}</span> ${escapeHtml(node.label)}${where}${reason}${missing}</span>${children}</li>`;
}

async function runCheck() {
  let context = null;
  const contextText = $("check-context").value.trim();
  if (contextText) {
    try { context = JSON.parse(contextText); } catch (e) { status(`context is not JSON: ${e.message}`, true); return; }
  }
  try {
    const result = await api("check", {
      sections: sections(), resource: $("check-resource").value.trim(), permission: $("check-permission").value.trim(),
      subject: $("check-subject").value.trim(), context, target: $("check-target").value,
    });
    const missing = result.missing.length ? ` (missing context: ${result.missing.join(", ")})` : "";
    $("check-result").innerHTML = `<span class="badge ${result.result}">${result.result}</span>${escapeHtml(missing)}`;
    $("check-path").innerHTML = result.path.map((step) => `<li>${escapeHtml(step)}</li>`).join("");
    $("check-tree").innerHTML = `<ul>${treeHtml(result.tree)}</ul>`;
    status("");
  } catch (e) {
    $("check-result").innerHTML = `<span class="badge DENIED">error</span> ${escapeHtml(e.message)}`;
    $("check-path").innerHTML = "";
    $("check-tree").innerHTML = "";
  }
}

// ---- lookups -------------------------------------------------------------------------------

async function lookup(kind, args, list) {
  try {
    const result = await api("lookup", { sections: sections(), kind, args });
    $(list).innerHTML = result.found.length ? result.found.map((item) => `<li>${escapeHtml(item)}</li>`).join("") : "<li class='muted'>none</li>";
  } catch (e) {
    $(list).innerHTML = `<li class="error">${escapeHtml(e.message)}</li>`;
  }
}

// ---- pictures ------------------------------------------------------------------------------

const EDGE_COLORS = { direct: "#5570d8", computed: "#7a3eb1", tupleset: "#aaa", arrow: "#b4501e" };

async function drawSchemaGraph() {
  try {
    const pic = await api("picture/schema", { schema: $("schema").value });
    const rowY = {}, boxW = 190, rowH = 18, gap = 40, perRow = 3;
    let svg = "", x = 10, y = 10, column = 0, tallest = 0, width = 0;
    for (const def of pic.definitions) {
      const height = 24 + rowH * def.rows.length;
      svg += `<g class="def" data-name="${escapeHtml(def.name)}"><rect x="${x}" y="${y}" width="${boxW}" height="${height}" rx="6" fill="#fff" stroke="#1d2330"/>`;
      svg += `<text x="${x + 8}" y="${y + 16}" font-weight="bold">${escapeHtml(def.name)}</text>`;
      rowY[def.name] = [x + boxW / 2, y + 10];
      def.rows.forEach((row, i) => {
        const ry = y + 24 + rowH * i + 13;
        rowY[`${def.name}#${row.name}`] = [x + boxW, ry - 4, x];
        const color = row.kind === "permission" ? "#7a3eb1" : "#1f5fbf";
        const feeds = pic.feeds[`${def.name}#${row.name}`] || [];
        const tip = row.expression + (feeds.length ? `\nfeeds: ${feeds.join(", ")}` : "");
        svg += `<text x="${x + 8}" y="${ry}" fill="${color}" data-row="${escapeHtml(def.name)}#${escapeHtml(row.name)}"><title>${escapeHtml(tip)}</title>${row.kind === "permission" ? "◆" : "●"} ${escapeHtml(row.name)}</text>`;
      });
      svg += "</g>";
      tallest = Math.max(tallest, height);
      column += 1;
      width = Math.max(width, x + boxW + 10);
      if (column % perRow === 0) { x = 10; y += tallest + gap; tallest = 0; } else { x += boxW + gap; }
    }
    let edges = "";
    for (const edge of pic.edges) {
      const from = rowY[edge.from], target = rowY[edge.to] || rowY[edge.to.replace(":*", "")];
      if (!from || !target) continue;
      const [x1, y1] = from, x2 = target[2] !== undefined ? target[2] : target[0], y2 = target[1];
      edges += `<path d="M${x1},${y1} C${x1 + 40},${y1} ${x2 - 40},${y2} ${x2},${y2}" fill="none" stroke="${EDGE_COLORS[edge.kind] || "#999"}" stroke-width="1.2" opacity="0.7"><title>${escapeHtml(`${edge.from} → ${edge.to} (${edge.kind}${edge.label ? ", " + edge.label : ""})`)}</title></path>`;
    }
    const height = y + tallest + 20;
    $("schema-graph").innerHTML = `<svg viewBox="-60 0 ${Math.max(width, 600) + 120} ${height}" data-edges="${pic.edges.length}">${edges}${svg}</svg>`;
  } catch (e) {
    $("schema-graph").innerHTML = `<p class="error">${escapeHtml(e.message)}</p>`;
  }
}

async function drawDataGraph() {
  try {
    const pic = await api("picture/data", { sections: sections(), object: $("data-center").value.trim(), hops: Number($("data-hops").value) || 2 });
    const byHop = {};
    for (const node of pic.nodes) (byHop[node.hops] = byHop[node.hops] || []).push(node.id);
    const pos = {}, cx = 400, cy = 300;
    for (const [hop, ids] of Object.entries(byHop)) {
      ids.forEach((id, i) => {
        const angle = (2 * Math.PI * i) / ids.length, r = 130 * Number(hop);
        pos[id] = [cx + r * Math.cos(angle), cy + r * Math.sin(angle)];
      });
    }
    let svg = "";
    for (const edge of pic.edges) {
      const [x1, y1] = pos[edge.from], [x2, y2] = pos[edge.to];
      svg += `<line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" stroke="#99a"/><text x="${(x1 + x2) / 2}" y="${(y1 + y2) / 2}" fill="#b4501e">${escapeHtml(edge.label)}</text>`;
    }
    for (const [id, [x, y]] of Object.entries(pos)) {
      svg += `<circle cx="${x}" cy="${y}" r="6" fill="${id === $("data-center").value.trim() ? "#b00020" : "#5570d8"}"/><text x="${x + 8}" y="${y + 4}">${escapeHtml(id)}</text>`;
    }
    const size = 190 + 130 * Math.max(...Object.keys(byHop).map(Number));
    $("data-graph").innerHTML = `<svg viewBox="${cx - size} ${cy - size} ${2 * size} ${2 * size}" data-nodes="${pic.nodes.length}">${svg}</svg>${pic.truncated ? "<p class='muted'>truncated</p>" : ""}`;
  } catch (e) {
    $("data-graph").innerHTML = `<p class="error">${escapeHtml(e.message)}</p>`;
  }
}

// ---- files, examples, server ---------------------------------------------------------------

function loadDocument(doc) {
  for (const name of SECTIONS) { $(name).value = doc.sections[name]; state.marks[name] = {}; renderEditor(name); }
  $("doc-name").textContent = doc.name;
  for (const id of ["assertion-results", "validation-results", "check-result", "check-path", "check-tree"]) $(id).innerHTML = "";
  refreshSchema();
}

async function save() {
  try {
    const result = await api("save", { sections: sections() });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([result.yaml], { type: "application/yaml" }));
    link.download = result.name;
    link.click();
    status(`saved ${result.name}`);
  } catch (e) {
    status(e.message, true);
  }
}

async function loadFile(file) {
  try {
    const doc = await api("load", { name: file.name, text: await file.text() });
    loadDocument(doc);
    status(`loaded ${file.name}`);
  } catch (e) {
    status(e.message, true);
  }
}

async function connect() {
  try {
    const result = await api("connect", { endpoint: $("connect-endpoint").value.trim(), key: $("connect-key").value });
    for (const name of SECTIONS) { $(name).value = result.sections[name]; renderEditor(name); }
    $("check-target").value = "server";
    $("push").hidden = !state.allowWrites;
    refreshSchema();
    status(`connected to ${result.connected} (read-only${state.allowWrites ? " unless you push" : ""})`);
  } catch (e) {
    status(e.message, true);
  }
}

async function push() {
  try {
    const result = await api("push", { sections: sections() });
    status(`pushed: ${result.written} relationships`);
  } catch (e) {
    status(e.message, true);
  }
}

// ---- wiring --------------------------------------------------------------------------------

function showTab(paneId) {
  const pane = $(paneId);
  const group = pane.parentElement;
  group.querySelectorAll(":scope > .pane").forEach((p) => p.classList.toggle("active", p === pane));
  group.querySelectorAll(":scope > .tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === paneId));
}

function wire() {
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  for (const name of SECTIONS) {
    const area = $(name);
    area.addEventListener("input", () => {
      state.marks[name] = name === "schema" ? state.marks[name] : {};
      renderEditor(name);
      if (name === "schema") { clearTimeout(schemaTimer); schemaTimer = setTimeout(refreshSchema, 120); }
      if (name === "relationships") { clearTimeout(relTimer); relTimer = setTimeout(refreshRelationships, 200); }
    });
    area.addEventListener("scroll", () => syncScroll(name));
    area.addEventListener("keydown", (e) => {
      if (e.key === "Tab") { e.preventDefault(); area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end"); area.dispatchEvent(new Event("input")); }
    });
  }
  document.addEventListener("click", (e) => {
    const item = e.target.closest(".problems div[data-line]");
    if (item && Number(item.dataset.line) > 0) goTo(item.dataset.section, Number(item.dataset.line), Number(item.dataset.column));
    const where = e.target.closest(".where");
    if (where) goTo("schema", Number(where.dataset.line), Number(where.dataset.column));
  });
  $("format").addEventListener("click", async () => {
    try { $("schema").value = (await api("format", { schema: $("schema").value })).schema; renderEditor("schema"); refreshSchema(); }
    catch (e) { status(e.message, true); }
  });
  $("rel-text-view").addEventListener("click", () => { $("rel-grid").hidden = true; $("relationships").closest(".editor").hidden = false; });
  $("rel-grid-view").addEventListener("click", () => { $("rel-grid").hidden = false; $("relationships").closest(".editor").hidden = true; refreshRelationships(); });
  $("rel-add-row").addEventListener("click", () => {
    const area = $("relationships");
    area.value = area.value.replace(/\n*$/, "") + (area.value.trim() ? "\n" : "") + "resource:id#relation@subject:id";
    renderEditor("relationships"); refreshRelationships();
  });
  $("rel-grid").addEventListener("change", onGridEdit);
  $("run-all").addEventListener("click", runAll);
  $("run-all-2").addEventListener("click", runAll);
  $("regenerate").addEventListener("click", regenerate);
  $("check-run").addEventListener("click", runCheck);
  $("lr-run").addEventListener("click", () => lookup("resources", { type: $("lr-type").value.trim(), permission: $("lr-permission").value.trim(), subject: $("lr-subject").value.trim() }, "lr-results"));
  $("ls-run").addEventListener("click", () => lookup("subjects", { resource: $("ls-resource").value.trim(), permission: $("ls-permission").value.trim(), subject_type: $("ls-type").value.trim() }, "ls-results"));
  $("schema-graph-draw").addEventListener("click", drawSchemaGraph);
  $("data-draw").addEventListener("click", drawDataGraph);
  $("save").addEventListener("click", save);
  $("load-input").addEventListener("change", (e) => { if (e.target.files[0]) loadFile(e.target.files[0]); });
  $("examples").addEventListener("change", async (e) => {
    if (!e.target.value) return;
    try { loadDocument(await api("example", { name: e.target.value })); status(`opened ${e.target.value}`); }
    catch (err) { status(err.message, true); }
    e.target.value = "";
  });
  $("connect").addEventListener("click", connect);
  $("push").addEventListener("click", push);
}

async function start() {
  wire();
  try {
    const doc = await api("document");
    state.allowWrites = doc.allow_writes;
    $("examples").innerHTML = `<option value="">Examples…</option>` + doc.examples.map((n) => `<option>${escapeHtml(n)}</option>`).join("");
    loadDocument(doc);
  } catch (e) {
    status(e.message, true);
  }
}

start();
