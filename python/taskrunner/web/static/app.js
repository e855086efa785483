// The taskrunner dashboard: plain JavaScript over the HTTP API, live from
// /api/events. Relative URLs throughout, so that it works under any prefix.
"use strict";

const MAX_ROWS = 500;
const MAX_KEPT = 2000; // tasks remembered in the page, newest first
const STATS_EVERY_MS = 2000;
const WORKERS_EVERY_MS = 2000;
const LIMITS_EVERY_MS = 2000;
const LATE_HEARTBEAT_S = 5; // a worker reports about once a second
const TICK_EVERY_MS = 250;

const tasks = new Map(); // id -> {status, receivedAt}
const rows = new Map(); // id -> <tr>
let filter = "";
let limitFilter = ""; // a limit's label: only the tasks under it
let waitingOnly = false; // only pending tasks with a start time
let token = sessionStorage.getItem("taskrunner-token") || "";
let renderQueued = false;
let states = []; // every task state, in order, as GET api/meta lists them
let statesLoading = null; // the request for them, while one is out
let lastCounts = null;
let workersTimer = null;
let limitLabels = []; // the runner's limits, by label, as GET api/limits lists them
const taskTypes = new Map(); // name -> {name, description, input_schema, takes_wait}
let inputEdited = false; // the user has typed in the input box

const $ = (id) => document.getElementById(id);

// ---- talking to the API --------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function headers(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers) });
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = { detail: text };
  }
  if (!response.ok) {
    if (response.status === 401) askForToken();
    throw new ApiError(response.status, body || {});
  }
  return body;
}

function askForToken() {
  $("token-form").hidden = false;
  setConnection("down", "needs a token");
}

// ---- the task table ------------------------------------------------------

// A task only moves forward: pending, running, then a final state, within
// each attempt (a retry is pending again, one attempt on). Statuses arrive by
// several paths (events, a submit's or cancel's answer, list pages fetched a
// while ago), so a late one may be older than what is shown.
function stage(status) {
  return status.done ? 2 : status.state === "running" ? 1 : 0;
}

function isOlder(status, known) {
  const attempt = status.attempt || 1;
  const knownAttempt = known.attempt || 1;
  return attempt < knownAttempt || (attempt === knownAttempt && stage(status) < stage(known));
}

// The columns of the scheduling options appear once a task uses them.
function showOptionalColumns(status) {
  const table = $("task-table");
  if (status.worker) showWorkerColumn(); // the journal may hold tasks of a cluster
  if (status.progress) table.classList.add("with-progress");
  if (status.after && status.after.length) table.classList.add("with-after");
  if (status.limit) table.classList.add("with-limit");
  if (status.priority) table.classList.add("with-priority");
}

function upsert(status) {
  const known = tasks.get(status.id);
  if (known && isOlder(status, known.status)) return;
  showOptionalColumns(status);
  tasks.set(status.id, { status, receivedAt: performance.now(), fresh: !known });
  scheduleRender();
}

function forget(id) {
  tasks.delete(id);
  scheduleRender();
}

function scheduleRender() {
  if (!renderQueued) {
    renderQueued = true;
    requestAnimationFrame(render);
  }
}

// A pending task with a start time: delayed, or waiting for its next attempt.
function isWaiting(status) {
  return status.state === "pending" && status.not_before !== null && status.not_before !== undefined;
}

function isShown(status) {
  return (
    (!filter || status.state === filter) &&
    (!limitFilter || status.limit === limitFilter) &&
    (!waitingOnly || isWaiting(status))
  );
}

function visibleIds() {
  const ids = [];
  for (const [id, entry] of tasks) {
    if (isShown(entry.status)) ids.push(id);
  }
  ids.sort((a, b) => b - a);
  return ids;
}

function pruneOldTasks() {
  if (tasks.size <= MAX_KEPT) return;
  const ids = [...tasks.keys()].sort((a, b) => b - a);
  for (const id of ids.slice(MAX_KEPT)) tasks.delete(id);
}

function render() {
  renderQueued = false;
  pruneOldTasks();
  const ids = visibleIds();
  const shown = ids.slice(0, MAX_ROWS);
  const wanted = new Set(shown);
  for (const [id, tr] of rows) {
    if (!wanted.has(id)) {
      tr.remove();
      rows.delete(id);
    }
  }
  const body = $("task-rows");
  let previous = null;
  for (const id of shown) {
    let tr = rows.get(id);
    if (!tr) {
      tr = newRow(id);
      rows.set(id, tr);
    }
    fillRow(tr, tasks.get(id));
    const expected = previous ? previous.nextSibling : body.firstChild;
    if (tr !== expected) body.insertBefore(tr, expected);
    previous = tr;
  }
  $("empty").hidden = shown.length > 0;
  $("empty").textContent = emptyText();
  $("shown").textContent = ids.length > MAX_ROWS ? `newest ${MAX_ROWS} of ${ids.length} shown` : `${ids.length} shown`;
}

function emptyText() {
  if (!filter && !limitFilter && !waitingOnly) return "No tasks yet. Submit one with the form.";
  const what = [waitingOnly ? "waiting" : "", filter ? stateLabel(filter) : ""].filter(Boolean).join(" ");
  return `No ${what ? what + " " : ""}tasks${limitFilter ? ` under the limit ${limitFilter}` : ""}.`;
}

function cell(tr, className) {
  const td = document.createElement("td");
  td.className = className;
  tr.appendChild(td);
  return td;
}

function newRow(id) {
  const tr = document.createElement("tr");
  tr.dataset.id = String(id);
  tr.id = `task-${id}`;
  const columns = ["id num", "name", "kind", "state", "worker", "progress", "after", "limit", "priority num"];
  for (const name of [...columns, "runtime num", "polls num", "outcome", "actions"]) {
    cell(tr, name);
  }
  const button = document.createElement("button");
  button.type = "button";
  button.className = "cancel";
  button.textContent = "Cancel";
  button.addEventListener("click", () => cancelTask(id, button));
  tr.querySelector(".actions").appendChild(button);
  return tr;
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function runtimeOf(entry) {
  const { status, receivedAt } = entry;
  if (status.runtime === null || status.runtime === undefined) return null;
  if (status.state !== "running") return status.runtime;
  return status.runtime + (performance.now() - receivedAt) / 1000;
}

function formatSeconds(seconds) {
  if (seconds === null) return "";
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} m ${Math.round(seconds % 60)} s`;
}

function fillRow(tr, entry) {
  const { status } = entry;
  if (entry.fresh) {
    tr.classList.add("fresh");
    entry.fresh = false;
  }
  tr.dataset.state = status.state;
  setText(tr.querySelector(".id"), String(status.id));
  setText(tr.querySelector(".name"), status.name);
  setText(tr.querySelector(".kind"), status.kind || "–");
  const stateCell = tr.querySelector(".state");
  let badge = stateCell.firstChild;
  if (!badge) {
    badge = document.createElement("span");
    badge.className = "badge";
    stateCell.appendChild(badge);
  }
  badge.dataset.state = status.state;
  setText(badge, stateLabel(status.state));
  showAttempt(stateCell, status.attempt);
  showStart(stateCell, status);
  const worker = tr.querySelector(".worker");
  setText(worker, status.worker ? shortAddress(status.worker) : "–");
  worker.title = status.worker || "Not on a worker (yet)";
  fillProgress(tr.querySelector(".progress"), status.progress);
  fillAfter(tr.querySelector(".after"), status.after || []);
  setText(tr.querySelector(".limit"), status.limit || "");
  setText(tr.querySelector(".priority"), status.priority ? String(status.priority) : "");
  setText(tr.querySelector(".runtime"), formatSeconds(runtimeOf(entry)));
  // The poller calls get_output() on polling tasks only: a blocking task has no polls.
  setText(tr.querySelector(".polls"), status.kind === "blocking" ? "–" : String(status.polls));
  fillOutcome(tr.querySelector(".outcome"), status);
  const button = tr.querySelector("button.cancel");
  button.hidden = status.done;
  const stuck = status.state === "running" && status.kind === "blocking";
  button.disabled = stuck;
  button.title = stuck ? "A running blocking task cannot be cancelled" : `Cancel task ${status.id}`;
}

// A task that ran again (a retry, or after a restart) says which run this is.
function showAttempt(stateCell, attempt) {
  let mark = stateCell.querySelector(".attempt");
  if (!(attempt > 1)) {
    if (mark) mark.remove();
    return;
  }
  if (!mark) {
    mark = document.createElement("span");
    mark.className = "attempt";
    stateCell.appendChild(mark);
  }
  setText(mark, `attempt ${attempt}`);
  mark.title = `Run ${attempt}: a retry, or a run again after the server restarted`;
}

// "in 12 s", or the time of day for a start more than an hour away.
function startText(status) {
  const seconds = status.not_before - Date.now() / 1000;
  const word = status.attempt > 1 ? "retry" : "starts";
  if (seconds <= 0) return `${word} now`;
  if (seconds > 3600) return `${word} at ${new Date(status.not_before * 1000).toLocaleString()}`;
  return `${word} in ${formatSeconds(Math.ceil(seconds))}`;
}

// A pending task's start time (its delay, or its next attempt) as a countdown.
function showStart(stateCell, status) {
  let mark = stateCell.querySelector(".starts");
  if (!isWaiting(status)) {
    if (mark) mark.remove();
    return;
  }
  if (!mark) {
    mark = document.createElement("span");
    mark.className = "starts";
    stateCell.appendChild(mark);
  }
  setText(mark, startText(status));
  mark.title = `Not before ${new Date(status.not_before * 1000).toLocaleString()}`;
}

// A bar of the fraction done and the task's message; nothing for a task that says nothing.
function fillProgress(td, progress) {
  const fraction = progress && typeof progress.fraction === "number" ? progress.fraction : null;
  const message = (progress && progress.message) || "";
  const key = progress ? `${fraction}|${message}` : "";
  if (td.dataset.key === key) return;
  td.dataset.key = key;
  td.replaceChildren();
  td.title = message;
  if (!progress) return;
  const bar = document.createElement("progress");
  bar.max = 1;
  if (fraction !== null) bar.value = fraction; // else indeterminate
  bar.setAttribute("aria-label", message || "progress");
  const text = document.createElement("span");
  text.className = "progress-message";
  text.textContent = fraction === null ? message : `${Math.round(fraction * 100)}%${message ? ` ${message}` : ""}`;
  td.append(bar, text);
}

// The tasks this one starts after, each a link to its row.
function fillAfter(td, after) {
  const key = after.join(",");
  if (td.dataset.key === key) return;
  td.dataset.key = key;
  td.replaceChildren();
  after.forEach((id, i) => {
    if (i) td.appendChild(document.createTextNode(", "));
    const link = document.createElement("a");
    link.href = `#task-${id}`;
    link.textContent = String(id);
    link.title = `Starts after task ${id} has succeeded`;
    td.appendChild(link);
  });
}

function fillOutcome(td, status) {
  let text = "";
  let title = "";
  let tag = "";
  td.classList.toggle("error", status.state === "failed" || status.state === "timed_out");
  if (status.state === "failed" && status.error) {
    text = `${status.error.type}: ${status.error.message}`;
    title = status.error.traceback || text;
  } else if (status.state === "timed_out") {
    text = "timed out";
  } else if (status.state === "succeeded") {
    text = status.result_is_repr ? String(status.result) : JSON.stringify(status.result);
    tag = status.result_is_repr ? "repr" : "";
    title = text;
  }
  const key = `${tag}|${text}`;
  if (td.dataset.key === key) return;
  td.dataset.key = key;
  td.title = title;
  td.replaceChildren();
  if (tag) {
    const span = document.createElement("span");
    span.className = "tag";
    span.textContent = tag;
    td.appendChild(span);
  }
  td.appendChild(document.createTextNode(text));
}

// Runtimes and countdowns move between events.
function tick() {
  for (const [id, tr] of rows) {
    const entry = tasks.get(id);
    if (!entry) continue;
    if (entry.status.state === "running") {
      setText(tr.querySelector(".runtime"), formatSeconds(runtimeOf(entry)));
    } else if (isWaiting(entry.status)) {
      const mark = tr.querySelector(".state .starts");
      if (mark) setText(mark, startText(entry.status));
    }
  }
}

// ---- the cluster's workers --------------------------------------------------

// Every worker has the same scheme: the host and port tell them apart.
function shortAddress(address) {
  return address.replace(/^tcp:\/\//, "");
}

function showWorkerColumn() {
  $("task-table").classList.add("with-worker");
}

// The age of a worker's last report, short enough for the side panel.
function heartbeatText(seconds) {
  if (seconds === null) return "none yet";
  const age = seconds < 10 ? `${seconds.toFixed(1)} s` : `${Math.round(seconds)} s`;
  return seconds > LATE_HEARTBEAT_S ? `${age}, late` : age;
}

function workerRow(worker) {
  const tr = document.createElement("tr");
  const address = cell(tr, "address");
  address.textContent = shortAddress(worker.address);
  address.title = worker.address;
  cell(tr, "running num").textContent = String(worker.running);
  cell(tr, "threads num").textContent = worker.threads === null ? "–" : String(worker.threads);
  const heartbeat = cell(tr, "heartbeat num");
  heartbeat.textContent = heartbeatText(worker.heartbeat);
  heartbeat.title = "Seconds since the worker last reported";
  heartbeat.classList.toggle("late", worker.heartbeat !== null && worker.heartbeat > LATE_HEARTBEAT_S);
  return tr;
}

function showWorkers(view) {
  $("workers-panel").hidden = !view.cluster;
  if (!view.cluster) return;
  showWorkerColumn();
  const scheduler = $("scheduler");
  scheduler.dataset.reachable = String(view.reachable);
  setText(
    scheduler,
    view.reachable
      ? `Scheduler ${view.scheduler}`
      : `Scheduler ${view.scheduler} is out of reach: new tasks are refused until it is back`,
  );
  $("worker-rows").replaceChildren(...view.workers.map(workerRow));
  $("workers-empty").hidden = view.workers.length > 0;
}

// A server without a cluster never gets one: asking once is enough.
async function refreshWorkers() {
  if (document.hidden) return;
  try {
    const view = await api("api/workers");
    showWorkers(view);
    if (!view.cluster) clearInterval(workersTimer);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) notify(`Workers: ${error.message}`);
  }
}

// ---- limits ---------------------------------------------------------------------

function limitText(limit) {
  return typeof limit === "number" ? String(limit) : `${limit.count}/${limit.per}s`;
}

function limitRow(entry) {
  const tr = document.createElement("tr");
  tr.dataset.label = entry.label;
  const label = cell(tr, "label");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link";
  button.textContent = entry.label;
  button.title = `Show only the tasks under ${entry.label}`;
  button.addEventListener("click", () => setLimitFilter(entry.label));
  label.appendChild(button);
  const limit = cell(tr, "limit num");
  limit.textContent = limitText(entry.limit);
  limit.title = typeof entry.limit === "number" ? `At most ${entry.limit} at once` : `At most ${entry.limit.count} starts in any ${entry.limit.per} s`;
  cell(tr, "running num").textContent = String(entry.running);
  cell(tr, "waiting num").textContent = String(entry.waiting);
  return tr;
}

// A select's options: the first ("all" or "none") kept, then one per label.
function fillLabelOptions(select, labels) {
  const current = select.value;
  const keep = select.options[0];
  const options = labels.map((label) => {
    const option = document.createElement("option");
    option.value = label;
    option.textContent = label;
    return option;
  });
  select.replaceChildren(keep, ...options);
  select.value = labels.includes(current) ? current : "";
}

function showLimits(entries) {
  $("limits-panel").hidden = entries.length === 0;
  $("limit-rows").replaceChildren(...entries.map(limitRow));
  const labels = entries.map((entry) => entry.label);
  if (labels.join("\n") === limitLabels.join("\n")) return;
  limitLabels = labels;
  fillLabelOptions($("task-limit"), labels);
  // A label filtered on stays in the list.
  const filterable = limitFilter && !labels.includes(limitFilter) ? [...labels, limitFilter] : labels;
  fillLabelOptions($("limit-filter"), filterable);
  $("limit-filter").value = limitFilter;
}

async function refreshLimits() {
  if (document.hidden) return;
  try {
    showLimits((await api("api/limits")).limits);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) notify(`Limits: ${error.message}`);
  }
}

// ---- states, counts, stats and notices ------------------------------------

function stateLabel(state) {
  return state.replaceAll("_", " ");
}

// One count button and one filter option per state, in the server's order.
function buildStateControls() {
  const counts = $("counts");
  const select = $("state-filter");
  for (const state of states) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "count";
    button.dataset.state = state;
    button.setAttribute("aria-pressed", String(filter === state));
    const label = document.createElement("span");
    label.className = "count-label";
    label.textContent = stateLabel(state);
    const value = document.createElement("span");
    value.className = "count-value";
    value.id = `count-${state}`;
    value.textContent = "0";
    button.append(label, value);
    button.addEventListener("click", () => setFilter(state));
    counts.appendChild(button);

    const option = document.createElement("option");
    option.value = state;
    option.textContent = stateLabel(state);
    select.appendChild(option);
  }
  if (lastCounts) showCounts(lastCounts);
}

// Asks once; a failed attempt leaves the way open for the next one.
function loadStates() {
  if (states.length) return Promise.resolve();
  if (!statesLoading) {
    statesLoading = api("api/meta")
      .then((meta) => {
        states = meta.states;
        buildStateControls();
      })
      .finally(() => {
        statesLoading = null;
      });
  }
  return statesLoading;
}

function reportStatesError(error) {
  if (!(error instanceof ApiError && error.status === 401)) notify(`States: ${error.message}`);
}

function showCounts(counts) {
  lastCounts = counts;
  let all = 0;
  for (const [state, n] of Object.entries(counts)) {
    all += n;
    const element = $(`count-${state}`);
    if (element) setText(element, String(n));
  }
  setText($("count-all"), String(all));
}

// Workers still inside the run() of a task that timed out: shown only when there are some.
function showTimedOutWorkers(count) {
  const shown = typeof count === "number" && count > 0;
  $("stat-workers-timed-out-item").hidden = !shown;
  if (shown) setText($("stat-workers-timed-out"), String(count));
}

// The journal cannot write: shown only then, with why on hover.
function showJournal(health, problem) {
  const degraded = health === "degraded";
  $("stat-journal-item").hidden = !degraded;
  if (degraded) $("stat-journal-item").title = `New tasks are refused until the journal can write again: ${problem}`;
}

async function refreshStats() {
  if (document.hidden) return;
  try {
    const stats = await api("api/stats");
    showCounts(stats.counts);
    setText($("stat-workers-busy"), String(stats.workers_busy));
    setText($("stat-workers-idle"), String(stats.workers_idle));
    showTimedOutWorkers(stats.workers_timed_out);
    showJournal(stats.journal, stats.journal_problem);
    setText($("stat-poller-queue"), String(stats.poller_queue));
    setText($("stat-polls-per-second"), stats.polls_per_second.toFixed(1));
    // Polls and runtimes move without a state change: refresh the running tasks.
    if (stats.counts.running > 0) {
      const page = await api(`api/tasks?state=running&limit=${MAX_ROWS}`);
      page.tasks.forEach(upsert);
    }
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) notify(`Stats: ${error.message}`);
  }
}

function notify(text) {
  const notices = $("notices");
  for (const existing of notices.children) {
    if (existing.dataset.text === text) return;
  }
  const div = document.createElement("div");
  div.className = "notice";
  div.dataset.text = text;
  const span = document.createElement("span");
  span.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "×";
  close.title = "Dismiss";
  close.addEventListener("click", () => div.remove());
  div.append(span, close);
  notices.appendChild(div);
  while (notices.children.length > 4) notices.firstChild.remove();
}

function setConnection(status, text) {
  const element = $("connection");
  element.dataset.status = status;
  setText(element, text);
}

// ---- loading and the event stream ------------------------------------------

async function loadTasks() {
  const query = new URLSearchParams({ limit: String(MAX_ROWS) });
  // Waiting tasks are pending: the server lists those, and the page keeps the ones with a start time.
  if (filter || waitingOnly) query.set("state", filter || "pending");
  const page = await api(`api/tasks?${query}`);
  page.tasks.forEach(upsert);
}

function handleEvent(name, data) {
  if (name === "task") upsert(data);
  else if (name === "counts") showCounts(data);
  else if (name === "forgotten") forget(data.id);
  else if (name === "ready" || name === "resync") {
    // Also when the server was out of reach as the page loaded.
    loadStates().catch(reportStatesError);
    showCounts(data.counts);
    loadTasks().catch((error) => notify(`Loading tasks: ${error.message}`));
  }
}

// Server-sent events read with fetch rather than EventSource, so that the
// bearer token can travel in a header.
async function readEvents(signal) {
  const response = await fetch("api/events", { headers: headers({ Accept: "text/event-stream" }), signal });
  if (!response.ok) {
    let problem = {};
    try {
      problem = await response.json();
    } catch (_) {}
    if (response.status === 401) askForToken();
    throw new ApiError(response.status, problem);
  }
  setConnection("live", "live");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      dispatch(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
}

function dispatch(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (data.length) handleEvent(name, JSON.parse(data.join("\n")));
}

async function followEvents() {
  let delay = 500;
  for (;;) {
    const controller = new AbortController();
    const started = Date.now();
    try {
      await readEvents(controller.signal);
      setConnection("connecting", "reconnecting…");
    } catch (error) {
      const why = error instanceof ApiError ? error.message : "server unreachable";
      if (!(error instanceof ApiError && error.status === 401)) setConnection("down", `offline: ${why}`);
    }
    if (Date.now() - started > 10000) delay = 500;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

// ---- actions ------------------------------------------------------------------

async function cancelTask(id, button) {
  button.disabled = true;
  try {
    upsert(await api(`api/tasks/${id}`, { method: "DELETE" }));
  } catch (error) {
    notify(`Cancel task ${id}: ${error.message}`);
    button.disabled = false;
  }
}

function readInput(text) {
  try {
    return JSON.parse(text);
  } catch (_) {
    return text;
  }
}

function numberOrNull(text) {
  return text.trim() === "" ? null : Number(text);
}

// The options section's fields, those filled in; bad ones go as typed, for the server to name.
function readOptions() {
  const options = {};
  const retries = numberOrNull($("task-retries").value);
  const delay = numberOrNull($("task-delay").value);
  const priority = numberOrNull($("task-priority").value);
  const after = $("task-after").value.trim();
  if (retries !== null) options.retries = retries;
  if (delay !== null) options.delay = delay;
  if (priority !== null) options.priority = priority;
  if (after) options.after = after.split(/[\s,]+/).filter(Boolean).map((id) => (/^\d+$/.test(id) ? Number(id) : id));
  if ($("task-limit").value) options.limit = $("task-limit").value;
  return options;
}

async function submitTasks(event) {
  event.preventDefault();
  const result = $("form-result");
  const button = $("submit-button");
  const body = { type: $("task-type").value, input: readInput($("task-input").value) };
  const wait = numberOrNull($("task-wait").value);
  const timeout = numberOrNull($("task-timeout").value);
  const name = $("task-name").value.trim();
  if (wait !== null) body.wait = wait;
  if (timeout !== null) body.timeout = timeout;
  if (name) body.name = name;
  Object.assign(body, readOptions());
  const copies = Math.max(1, Math.min(100, Number($("task-count").value) || 1));
  button.disabled = true;
  result.className = "form-result";
  const ids = [];
  try {
    for (let i = 0; i < copies; i++) {
      const status = await api("api/tasks", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      upsert(status);
      ids.push(status.id);
    }
    result.textContent = ids.length === 1 ? `Submitted task ${ids[0]}.` : `Submitted tasks ${ids[0]}–${ids[ids.length - 1]}.`;
  } catch (error) {
    const done = ids.length ? ` (${ids.length} submitted first)` : "";
    result.textContent = `Not submitted${done}: ${error.message}`;
    result.className = "form-result error";
  } finally {
    button.disabled = false;
  }
}

async function loadTaskTypes() {
  const select = $("task-type");
  const { task_types: types } = await api("api/task-types");
  select.replaceChildren();
  taskTypes.clear();
  for (const type of types) {
    const option = document.createElement("option");
    option.value = type.name;
    option.textContent = type.name;
    option.title = type.description;
    select.appendChild(option);
    taskTypes.set(type.name, type);
  }
  describeType();
}

// The input a schema shows as an example: its first example, else its default.
function sampleInput(schema) {
  if (!schema || typeof schema !== "object") return undefined;
  if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
  return schema.default;
}

function typeNames(schema) {
  if (!schema || typeof schema !== "object" || schema.type === undefined) return "any";
  return [].concat(schema.type).join(" or ");
}

// One line on what a schema expects: an object's properties, else its type.
function schemaHint(schema) {
  if (!schema || typeof schema !== "object") return "";
  const properties = schema.properties && typeof schema.properties === "object" ? Object.entries(schema.properties) : [];
  if (properties.length) {
    const required = new Set(Array.isArray(schema.required) ? schema.required : []);
    const fields = properties.map(([name, property]) => `${name} (${typeNames(property)}${required.has(name) ? ", required" : ""})`);
    return `Expects an object: ${fields.join(", ")}`;
  }
  return schema.type === undefined ? "" : `Expects ${typeNames(schema)}`;
}

function describeType() {
  const type = taskTypes.get($("task-type").value);
  const schema = type ? type.input_schema : null;
  const input = $("task-input");
  const sample = sampleInput(schema);
  setText($("task-type-description"), type ? type.description : "");
  const hint = schemaHint(schema);
  setText($("task-input-schema"), hint);
  $("task-input-schema").hidden = !hint;
  input.placeholder = sample === undefined ? "" : JSON.stringify(sample);
  // A box the user has not typed in follows the type: empty under a schema, so that
  // its example shows; else the page's default.
  if (!inputEdited) input.value = schema === null || schema === undefined ? input.defaultValue : "";
  $("task-wait").disabled = type ? !type.takes_wait : false;
}

function setLimitFilter(label) {
  limitFilter = label;
  $("limit-filter").value = label;
  scheduleRender();
}

function setWaitingFilter(on) {
  waitingOnly = on;
  $("waiting-filter").checked = on;
  scheduleRender();
  loadTasks().catch((error) => notify(`Loading tasks: ${error.message}`));
}

function setFilter(state) {
  filter = state;
  $("state-filter").value = state;
  for (const button of document.querySelectorAll(".count")) {
    button.setAttribute("aria-pressed", String(button.dataset.state === state));
  }
  scheduleRender();
  loadTasks().catch((error) => notify(`Loading tasks: ${error.message}`));
}

// ---- start ---------------------------------------------------------------------

function start() {
  $("submit-form").addEventListener("submit", submitTasks);
  $("task-type").addEventListener("change", describeType);
  $("task-input").addEventListener("input", () => {
    inputEdited = true;
  });
  $("state-filter").addEventListener("change", (event) => setFilter(event.target.value));
  $("limit-filter").addEventListener("change", (event) => setLimitFilter(event.target.value));
  $("waiting-filter").addEventListener("change", (event) => setWaitingFilter(event.target.checked));
  $("count-all").closest(".count").addEventListener("click", () => setFilter(""));
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token-input").value.trim();
    sessionStorage.setItem("taskrunner-token", token);
    $("token-form").hidden = true;
    location.reload();
  });
  loadStates().catch(reportStatesError);
  loadTaskTypes().catch((error) => notify(`Task types: ${error.message}`));
  followEvents();
  refreshStats();
  setInterval(refreshStats, STATS_EVERY_MS);
  refreshWorkers();
  workersTimer = setInterval(refreshWorkers, WORKERS_EVERY_MS);
  refreshLimits();
  setInterval(refreshLimits, LIMITS_EVERY_MS);
  setInterval(tick, TICK_EVERY_MS);
  render();
}

start();
