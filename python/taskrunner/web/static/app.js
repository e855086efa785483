// The taskrunner dashboard: plain JavaScript over the HTTP API, live from
// /api/events. Relative URLs throughout, so that it works under any prefix.
"use strict";

const PAGE = 100; // tasks per GET api/tasks page; "Load older tasks" asks for the next
const MAX_KEPT = 500; // tasks held in the page, newest first, past those "Load older" brought
// The stream brings counts and task changes as they happen; these figures change
// between events, and every open page's polls cost the server (benchmarks/dashboard_load.py).
const STATS_EVERY_MS = 5000;
const WORKERS_EVERY_MS = 2000;
const LIMITS_EVERY_MS = 5000;
const LATE_HEARTBEAT_S = 5; // a worker reports about once a second
const TICK_EVERY_MS = 250;
const TYPING_MS = 350; // a text filter applies once the typing stops this long
const MAX_CANCEL = 1000; // ids per POST api/tasks/cancel

const tasks = new Map(); // id -> {status, receivedAt}: the tasks the filters let in
const rows = new Map(); // id -> <tr>
const selected = new Set(); // ids ticked for "Cancel selected"
let filters = noFilters();
let cursor = null; // where the next older page starts (next_cursor), null at the end
let keep = MAX_KEPT; // tasks held: more once older pages are loaded
let loadGeneration = 0; // a page asked for before the filters changed is dropped
let renderQueued = false;
let states = []; // every task state, in order, as GET api/meta lists them
let kinds = [];
let statesLoading = null; // the request for them, while one is out
let lastCounts = null;
let workersTimer = null;
let limitLabels = []; // the runner's limits, by label, as GET api/limits lists them
const taskTypes = new Map(); // name -> {name, description, input_schema, takes_wait}
let inputEdited = false; // the user has typed in the input box
let paused = null; // the runner's pause, as last heard; null before the first word
let readOnly = false; // the token may read but not change (GET api/access)

const $ = (id) => document.getElementById(id);

// ---- talking to the API --------------------------------------------------

// The API, the token, the event stream, notices and state names come from
// common.js, which every page shares (it also takes a #token=... out of the URL).
const { ApiError, api, setToken, notify, formatSeconds, stateLabel } = window.taskrunner;
const readStream = window.taskrunner.readEvents;

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

// A status from anywhere: kept while the filters let it in; a task that moved out of them leaves.
// A new row flashes, unless it came with a page of the list.
function upsert(status, flash = true) {
  const known = tasks.get(status.id);
  if (known && isOlder(status, known.status)) return;
  if (!matches(status)) {
    if (known) forget(status.id);
    return;
  }
  showOptionalColumns(status);
  tasks.set(status.id, { status, receivedAt: performance.now(), fresh: flash && !known });
  scheduleRender();
}

function forget(id) {
  tasks.delete(id);
  selected.delete(id);
  scheduleRender();
}

function scheduleRender() {
  if (!renderQueued) {
    renderQueued = true;
    requestAnimationFrame(render);
  }
}

// As new tasks come, the oldest go; "Load older tasks" brings them back from where they start.
function pruneOldTasks() {
  if (tasks.size <= keep) return;
  const ids = [...tasks.keys()].sort((a, b) => b - a);
  for (const id of ids.slice(keep)) forget(id);
  cursor = ids[keep - 1];
  $("load-more").hidden = false;
}

function render() {
  renderQueued = false;
  pruneOldTasks();
  const ids = [...tasks.keys()].sort((a, b) => b - a);
  const wanted = new Set(ids);
  for (const [id, tr] of rows) {
    if (!wanted.has(id)) {
      tr.remove();
      rows.delete(id);
      selected.delete(id);
    }
  }
  const body = $("task-rows");
  let previous = null;
  for (const id of ids) {
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
  $("empty").hidden = ids.length > 0;
  setText($("empty"), emptyText());
  setText($("shown"), `${ids.length} shown${cursor ? ", older ones not loaded" : ""}`);
  showSelection();
}

function emptyText() {
  if (!hasFilters(filters)) return "No tasks yet. Submit one with the form.";
  return "No tasks match these filters.";
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
  const columns = ["select", "id num", "name", "kind", "state", "submitted", "worker", "progress", "after", "limit", "priority num"];
  for (const name of [...columns, "runtime num", "polls num", "outcome", "actions"]) {
    cell(tr, name);
  }
  const box = document.createElement("input");
  box.type = "checkbox";
  box.setAttribute("aria-label", `Select task ${id}`);
  box.addEventListener("change", () => {
    if (box.checked) selected.add(id);
    else selected.delete(id);
    showSelection();
  });
  tr.querySelector(".select").appendChild(box);
  const link = document.createElement("a");
  link.href = `tasks/${id}`;
  link.textContent = String(id);
  link.title = `Task ${id}: its own page`;
  tr.querySelector(".id").appendChild(link);
  const button = document.createElement("button");
  button.type = "button";
  button.className = "cancel";
  button.textContent = "Cancel";
  button.setAttribute("aria-label", `Cancel task ${id}`);
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

// A time in the viewer's local time (the time of day alone for today), with UTC on hover.
function localTime(seconds) {
  const date = new Date(seconds * 1000);
  const today = date.toDateString() === new Date().toDateString();
  return today ? date.toLocaleTimeString() : date.toLocaleString();
}

function utcTitle(seconds) {
  return `${new Date(seconds * 1000).toISOString()} (UTC)`;
}

function fillTime(td, seconds) {
  if (typeof seconds !== "number") {
    setText(td, "");
    return;
  }
  const key = String(seconds);
  if (td.dataset.key === key) return;
  td.dataset.key = key;
  const time = document.createElement("time");
  time.dateTime = new Date(seconds * 1000).toISOString();
  time.textContent = localTime(seconds);
  time.title = utcTitle(seconds);
  td.replaceChildren(time);
}

function fillRow(tr, entry) {
  const { status } = entry;
  if (entry.fresh) {
    tr.classList.add("fresh");
    entry.fresh = false;
  }
  tr.dataset.state = status.state;
  fillTime(tr.querySelector(".submitted"), status.submitted_at);
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
  button.disabled = stuck || readOnly;
  button.title = readOnly ? READ_ONLY : stuck ? "A running blocking task cannot be cancelled" : `Cancel task ${status.id}`;
  tr.querySelector(".select input").checked = selected.has(status.id);
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
  if (seconds > 3600) return `${word} at ${localTime(status.not_before)}`;
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
  mark.title = `Not before ${new Date(status.not_before * 1000).toLocaleString()}, ${utcTitle(status.not_before)}`;
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
  // The worker filter offers the live workers' addresses.
  $("worker-options").replaceChildren(
    ...view.workers.map((worker) => {
      const option = document.createElement("option");
      option.value = worker.address;
      return option;
    }),
  );
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
  fillLabelOptions($("limit-filter"), labels);
  selectValue($("limit-filter"), filters.label); // a label filtered on stays in the list
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

// One count button and one filter option per state, in the server's order.
function buildStateControls() {
  const counts = $("counts");
  const select = $("state-filter");
  for (const state of states) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "count";
    button.dataset.state = state;
    button.setAttribute("aria-pressed", String(filters.state === state));
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
  }
  fillOptions(select, states, stateLabel);
  fillOptions($("kind-filter"), kinds);
  showFilters();
  if (lastCounts) showCounts(lastCounts);
}

// A filter's options: its first ("all"), then one per name.
function fillOptions(select, names, label = (name) => name) {
  const keep = select.options[0];
  select.replaceChildren(
    keep,
    ...names.map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = label(name);
      return option;
    }),
  );
}

// Asks once; a failed attempt leaves the way open for the next one.
function loadStates() {
  if (states.length) return Promise.resolve();
  if (!statesLoading) {
    statesLoading = api("api/meta")
      .then((meta) => {
        states = meta.states;
        kinds = meta.kinds;
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

// The engine panel: the pool's threads, the poller, and whether tasks start.
function showEngine(stats) {
  setText($("stat-workers-busy"), String(stats.workers_busy));
  setText($("stat-workers-idle"), String(stats.workers_idle));
  setText($("stat-workers-attaching"), typeof stats.workers_attaching === "number" ? String(stats.workers_attaching) : "–");
  setText($("stat-poller-queue"), String(stats.poller_queue));
  setText($("stat-polls-per-second"), stats.polls_per_second.toFixed(1));
  showTimedOutWorkers(stats.workers_timed_out);
  showJournal(stats.journal, stats.journal_problem);
  if (typeof stats.paused === "boolean") showPaused(stats.paused);
}

async function refreshStats() {
  if (document.hidden) return;
  try {
    const stats = await api("api/stats");
    showCounts(stats.counts);
    showEngine(stats);
    // Polls and runtimes move without a state change: refresh the newest page of running tasks.
    if (stats.counts.running > 0 && (!filters.state || filters.state === "running")) {
      const query = apiQuery({ ...filters, state: "running" });
      const page = await api(`api/tasks?${query}`);
      page.tasks.forEach((status) => upsert(status, false));
    }
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) notify(`Stats: ${error.message}`);
  }
}

function setConnection(status, text) {
  const element = $("connection");
  element.dataset.status = status;
  setText(element, text);
}
// ---- filters and the URL ---------------------------------------------------------

// The URL's query string holds the filters: ?state=failed&name=nightly&since=2026-01-01T00:00:00.000Z.
// Times travel as UTC ISO strings, so that a shared link means the same instants anywhere.
const TEXT_FILTERS = ["state", "name", "kind", "type", "worker", "error", "label"];

function noFilters() {
  return { state: "", name: "", kind: "", type: "", worker: "", error: "", label: "", since: null, until: null, waiting: false };
}

function hasFilters(f) {
  return TEXT_FILTERS.some((key) => f[key]) || f.since !== null || f.until !== null || f.waiting;
}

// Unix seconds from an ISO string or a number of seconds; null for anything else.
function parseTime(text) {
  if (!text) return null;
  if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms / 1000;
}

function filtersFromUrl(search) {
  const query = new URLSearchParams(search);
  const f = noFilters();
  for (const key of TEXT_FILTERS) f[key] = (query.get(key) || "").trim();
  if (f.state && states.length && !states.includes(f.state)) f.state = "";
  f.since = parseTime(query.get("since"));
  f.until = parseTime(query.get("until"));
  f.waiting = ["1", "true", "yes"].includes(query.get("waiting"));
  return f;
}

function filtersToQuery(f) {
  const query = new URLSearchParams();
  for (const key of TEXT_FILTERS) if (f[key]) query.set(key, f[key]);
  if (f.since !== null) query.set("since", new Date(f.since * 1000).toISOString());
  if (f.until !== null) query.set("until", new Date(f.until * 1000).toISOString());
  if (f.waiting) query.set("waiting", "1");
  return query.toString();
}

// The API's query for a page: the filters the server applies, and the cursor.
function apiQuery(f, from) {
  const query = new URLSearchParams({ limit: String(PAGE) });
  // Waiting tasks are pending: the server lists those, and the page keeps the ones with a start time.
  const state = f.state || (f.waiting ? "pending" : "");
  if (state) query.set("state", state);
  for (const key of ["name", "kind", "type", "worker", "error"]) if (f[key]) query.set(key, f[key]);
  if (f.since !== null) query.set("since", String(f.since));
  if (f.until !== null) query.set("until", String(f.until));
  if (from) query.set("cursor", String(from));
  return query;
}

// A pending task with a start time: delayed, or waiting for its next attempt.
function isWaiting(status) {
  return status.state === "pending" && status.not_before !== null && status.not_before !== undefined;
}

// The server's filters, applied again to what the event stream brings (the name's case counts).
function matches(status) {
  const f = filters;
  return (
    (!f.state || status.state === f.state) &&
    (!f.name || (status.name || "").includes(f.name)) &&
    (!f.kind || status.kind === f.kind) &&
    (!f.type || status.type === f.type) &&
    (!f.worker || status.worker === f.worker) &&
    (!f.error || (status.error && status.error.type === f.error)) &&
    (f.since === null || status.submitted_at >= f.since) &&
    (f.until === null || status.submitted_at < f.until) && // as the server: since in, until out
    (!f.label || status.limit === f.label) &&
    (!f.waiting || isWaiting(status))
  );
}

// The value a datetime-local input shows for a time: the viewer's local time.
function localInputValue(seconds) {
  if (seconds === null) return "";
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fromLocalInput(value) {
  if (!value) return null;
  const ms = new Date(value).getTime(); // a date-time without an offset is local time
  return Number.isNaN(ms) ? null : ms / 1000;
}

// A select shows the value filtered on even when its list does not have it (yet).
function selectValue(select, value) {
  if (value && ![...select.options].some((option) => option.value === value)) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = value;
    select.appendChild(option);
  }
  select.value = value;
}

// The controls show the filters, and the count buttons which state is picked.
function showFilters() {
  const f = filters;
  selectValue($("state-filter"), f.state);
  selectValue($("kind-filter"), f.kind);
  selectValue($("type-filter"), f.type);
  selectValue($("limit-filter"), f.label);
  for (const [id, key] of [["name-filter", "name"], ["worker-filter", "worker"], ["error-filter", "error"]]) {
    const input = $(id);
    if (input.value.trim() !== f[key] && document.activeElement !== input) input.value = f[key];
  }
  $("since-filter").value = localInputValue(f.since);
  $("until-filter").value = localInputValue(f.until);
  $("waiting-filter").checked = f.waiting;
  $("clear-filters").disabled = !hasFilters(f);
  for (const button of document.querySelectorAll(".count")) {
    button.setAttribute("aria-pressed", String(button.dataset.state === f.state));
  }
}

let typingField = null; // the text filter being typed in: its changes replace one history entry

// New filters: into the URL (a new history entry, or the same one while typing), then a new first page.
function setFilters(change, { typing = null } = {}) {
  filters = { ...filters, ...change };
  const query = filtersToQuery(filters);
  const url = `${location.pathname}${query ? `?${query}` : ""}`;
  if (url !== `${location.pathname}${location.search}`) {
    if (typing && typing === typingField) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
  }
  typingField = typing;
  showFilters();
  reloadTasks();
}

function setFilter(state) {
  setFilters({ state });
}

function setLimitFilter(label) {
  setFilters({ label });
}

let typingTimer = null;

function watchText(id, key) {
  const input = $(id);
  input.addEventListener("input", () => {
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => setFilters({ [key]: input.value.trim() }, { typing: id }), TYPING_MS);
  });
  input.addEventListener("change", () => {
    clearTimeout(typingTimer);
    if (input.value.trim() !== filters[key]) setFilters({ [key]: input.value.trim() }, { typing: id });
    typingField = null; // the next edit is a new step back
  });
}

function watchFilters() {
  $("state-filter").addEventListener("change", (event) => setFilter(event.target.value));
  $("kind-filter").addEventListener("change", (event) => setFilters({ kind: event.target.value }));
  $("type-filter").addEventListener("change", (event) => setFilters({ type: event.target.value }));
  $("limit-filter").addEventListener("change", (event) => setLimitFilter(event.target.value));
  $("waiting-filter").addEventListener("change", (event) => setFilters({ waiting: event.target.checked }));
  $("since-filter").addEventListener("change", (event) => setFilters({ since: fromLocalInput(event.target.value) }));
  $("until-filter").addEventListener("change", (event) => setFilters({ until: fromLocalInput(event.target.value) }));
  watchText("name-filter", "name");
  watchText("worker-filter", "worker");
  watchText("error-filter", "error");
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("clear-filters").addEventListener("click", () => setFilters(noFilters()));
  $("count-all").closest(".count").addEventListener("click", () => setFilter(""));
  // Back and Forward: the URL's filters, shown and loaded.
  window.addEventListener("popstate", () => {
    filters = filtersFromUrl(location.search);
    typingField = null;
    showFilters();
    reloadTasks();
  });
}

// ---- loading and the event stream ------------------------------------------

// The first page under the filters; the newer tasks the stream brought meanwhile stay.
async function reloadTasks() {
  const generation = ++loadGeneration;
  const from = filters;
  keep = MAX_KEPT;
  $("load-more").hidden = true;
  const asked = performance.now();
  try {
    const page = await api(`api/tasks?${apiQuery(from)}`);
    if (generation !== loadGeneration) return;
    const newest = page.tasks.length ? page.tasks[0].id : null;
    for (const [id, entry] of [...tasks]) {
      const inPage = newest !== null && id <= newest; // the page has them as they are now
      const stale = newest === null && entry.receivedAt < asked; // none match: the stream's later news stays
      if (inPage || stale || !matches(entry.status)) forget(id);
    }
    page.tasks.forEach((status) => upsert(status, false));
    cursor = page.next_cursor;
    $("load-more").hidden = cursor === null;
    scheduleRender();
  } catch (error) {
    if (generation === loadGeneration) notify(`Loading tasks: ${error.message}`);
  }
}

// The next page, older than every task shown.
async function loadOlder() {
  if (cursor === null) return;
  const generation = loadGeneration;
  const button = $("load-more");
  button.disabled = true;
  try {
    const page = await api(`api/tasks?${apiQuery(filters, cursor)}`);
    if (generation !== loadGeneration) return;
    page.tasks.forEach((status) => upsert(status, false));
    keep = Math.max(keep, tasks.size);
    cursor = page.next_cursor;
    button.hidden = cursor === null;
    scheduleRender();
  } catch (error) {
    notify(`Loading older tasks: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

function handleEvent(name, data) {
  if (name === "task") upsert(data);
  else if (name === "counts") showCounts(data);
  else if (name === "forgotten") forget(data.id);
  else if (name === "stats") taskCharts.addStats(data);
  else if (name === "paused") showPaused(data.paused);
  else if (name === "ready" || name === "resync") {
    // Also when the server was out of reach as the page loaded.
    loadStates().catch(reportStatesError);
    showCounts(data.counts);
    if (typeof data.paused === "boolean") showPaused(data.paused);
    reloadTasks();
    // On a new connection, the seconds missed while away come from the history.
    if (name === "ready") taskCharts.reload();
  }
}

// A page left for another is kept by the browser's back-forward cache with its
// fetches open: the stream is closed on leaving, so that its server thread comes
// free, and opened again if the page comes back.
let streamController = null;
let cached = null; // resolves when a page put in the cache comes back

function watchPageCache() {
  window.addEventListener("pagehide", (event) => {
    if (!event.persisted) return;
    let resume;
    cached = new Promise((resolve) => {
      resume = resolve;
    });
    cached.resume = resume;
    if (streamController) streamController.abort();
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && cached) cached.resume();
  });
}

async function followEvents() {
  let delay = 500;
  watchPageCache();
  for (;;) {
    if (cached) {
      await cached;
      cached = null;
      delay = 0;
    }
    streamController = new AbortController();
    const started = Date.now();
    try {
      await readStream(streamController.signal, handleEvent, () => setConnection("live", "live"));
      setConnection("connecting", "reconnecting…");
    } catch (error) {
      const why = error instanceof ApiError ? error.message : "server unreachable";
      if (!(error instanceof ApiError && error.status === 401)) setConnection("down", `offline: ${why}`);
    }
    if (cached) continue;
    if (Date.now() - started > 10000) delay = 500;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(Math.max(delay * 2, 500), 10000);
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
    button.disabled = readOnly;
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
  fillOptions($("type-filter"), types.map((type) => type.name));
  showFilters();
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

// ---- selecting and cancelling several, pause and resume -----------------------

// The "select all" box and the count follow the ticked rows shown.
function showSelection() {
  const shownIds = [...rows.keys()];
  const ticked = shownIds.filter((id) => selected.has(id)).length;
  const all = $("select-page");
  all.checked = ticked > 0 && ticked === shownIds.length;
  all.indeterminate = ticked > 0 && ticked < shownIds.length;
  $("cancel-selected").disabled = ticked === 0 || readOnly;
  setText($("selected-count"), ticked ? `${ticked} selected` : "none selected");
}

function selectPage(on) {
  for (const [id, tr] of rows) {
    if (on) selected.add(id);
    else selected.delete(id);
    tr.querySelector(".select input").checked = on;
  }
  showSelection();
}

const NOT_CANCELLED_WHY = {
  finished: "already finished",
  running: "running blocking tasks cannot be cancelled",
  unknown: "unknown",
};

function cancelReport(cancelled, notCancelled) {
  const parts = [];
  if (cancelled.length) parts.push(`Cancelled ${cancelled.length} ${cancelled.length === 1 ? "task" : "tasks"}: ${cancelled.join(", ")}.`);
  else parts.push("Cancelled none.");
  const byReason = new Map();
  for (const { id, reason } of notCancelled) {
    if (!byReason.has(reason)) byReason.set(reason, []);
    byReason.get(reason).push(id);
  }
  for (const [reason, ids] of byReason) {
    parts.push(`Not cancelled (${NOT_CANCELLED_WHY[reason] || reason}): ${ids.join(", ")}.`);
  }
  return parts.join(" ");
}

async function cancelSelected() {
  const ids = [...rows.keys()].filter((id) => selected.has(id)).sort((a, b) => a - b);
  const result = $("bulk-result");
  const button = $("cancel-selected");
  if (!ids.length) return;
  button.disabled = true;
  result.className = "bulk-result";
  const cancelled = [];
  const notCancelled = [];
  try {
    for (let i = 0; i < ids.length; i += MAX_CANCEL) {
      const answer = await api("api/tasks/cancel", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ids: ids.slice(i, i + MAX_CANCEL) }),
      });
      cancelled.push(...answer.cancelled);
      notCancelled.push(...answer.not_cancelled);
    }
    for (const id of cancelled) selected.delete(id);
    result.textContent = cancelReport(cancelled, notCancelled);
  } catch (error) {
    const done = cancelled.length ? ` (${cancelled.length} cancelled first)` : "";
    result.textContent = `Cancel selected failed${done}: ${error.message}`;
    result.className = "bulk-result error";
  } finally {
    showSelection();
  }
}

// Paused: a banner in words, the button offers to resume, the engine panel says so.
function showPaused(now) {
  if (paused === now) return;
  paused = now;
  $("paused-banner").hidden = !now;
  const button = $("pause-button");
  button.dataset.paused = String(now);
  setText(button, now ? "Resume" : "Pause");
  button.title = now ? "Start pending tasks again" : "Start no new task until resumed; running ones go on";
  const state = $("engine-state");
  state.dataset.paused = String(now);
  setText(state, now ? "Paused: no pending task starts" : "Running: pending tasks start");
}

async function togglePause() {
  const button = $("pause-button");
  button.disabled = true;
  try {
    const answer = await api(paused ? "api/resume" : "api/pause", { method: "POST" });
    showPaused(answer.paused);
  } catch (error) {
    notify(`${paused ? "Resume" : "Pause"}: ${error.message}`);
  } finally {
    button.disabled = readOnly;
  }
}

const READ_ONLY = "This token may look but not change anything";

// A read-only token: the controls that change things are greyed out, and the top bar says why.
async function loadAccess() {
  try {
    const access = await api("api/access");
    readOnly = access.can_change === false;
  } catch (_) {
    return; // a server without GET api/access lets the actions say what they may not do
  }
  $("read-only").hidden = !readOnly;
  for (const id of ["pause-button", "submit-button", "cancel-selected"]) {
    $(id).disabled = readOnly || (id === "cancel-selected" && $(id).disabled);
    if (readOnly) $(id).title = READ_ONLY;
  }
  scheduleRender();
}

// ---- start ---------------------------------------------------------------------

function start() {
  window.taskrunner.whenUnauthorized(askForToken);
  filters = filtersFromUrl(location.search);
  showFilters();
  $("submit-form").addEventListener("submit", submitTasks);
  $("task-type").addEventListener("change", describeType);
  $("task-input").addEventListener("input", () => {
    inputEdited = true;
  });
  watchFilters();
  $("load-more").addEventListener("click", loadOlder);
  $("select-page").addEventListener("change", (event) => selectPage(event.target.checked));
  $("cancel-selected").addEventListener("click", cancelSelected);
  $("pause-button").addEventListener("click", togglePause);
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken($("token-input").value.trim());
    $("token-form").hidden = true;
    location.reload();
  });
  loadAccess();
  loadStates().catch(reportStatesError);
  loadTaskTypes().catch((error) => notify(`Task types: ${error.message}`));
  taskCharts.start(api);
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
