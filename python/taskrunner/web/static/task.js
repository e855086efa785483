// A task's own page, /tasks/<id>: its whole status, the timeline of its
// states, its attempts with their tracebacks, its dependencies, and Cancel and
// Run again. Live from api/events while the task is unfinished.
"use strict";

const REFRESH_EVERY_MS = 1000; // polls and progress move without an event
const TIME_KEYS = new Set(["submitted_at", "started_at", "finished_at", "not_before"]);

const tr = window.taskrunner;
const $ = (id) => document.getElementById(id);
const rawId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
const taskId = /^\d{1,20}$/.test(rawId) ? Number(rawId) : null;

let statusKeys = []; // GET api/meta's status_keys, in order
let readOnly = false; // the token may only read (GET api/access)
let status = null;
let timeline = null;
let events = null; // the AbortController of the event stream, while one is open
let refreshTimer = null;

// ---- showing the task -----------------------------------------------------------

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function muted(text) {
  const span = document.createElement("span");
  span.className = "muted";
  span.textContent = text;
  return span;
}

function taskLink(id) {
  const link = document.createElement("a");
  link.href = `./${id}`; // a sibling of this page: /tasks/<id>
  link.textContent = `task ${id}`;
  return link;
}

function errorText(error) {
  return `${error.type}: ${error.message}`;
}

function resultText(current) {
  if (current.result_is_repr) return String(current.result);
  return JSON.stringify(current.result, null, 2);
}

function progressText(progress) {
  const fraction = typeof progress.fraction === "number" ? progress.fraction : null;
  const message = progress.message || "";
  if (fraction === null) return message || "working";
  return `${Math.round(fraction * 100)}%${message ? ` ${message}` : ""}`;
}

// One value of the status dict, readable: times local (UTC on hover), results as JSON.
function statusValue(key, value, current) {
  if (value === null || value === undefined) return muted("none");
  if (TIME_KEYS.has(key) && typeof value === "number") return tr.timeElement(value);
  switch (key) {
    case "state":
      return tr.badge(value);
    case "done":
      return document.createTextNode(value ? "yes" : "no");
    case "runtime":
      return document.createTextNode(tr.formatSeconds(value));
    case "result": {
      const pre = document.createElement("pre");
      pre.className = "value";
      if (current.result_is_repr) pre.title = "Not JSON: the result's repr()";
      pre.textContent = (current.result_is_repr ? "repr: " : "") + resultText(current);
      return pre;
    }
    case "error": {
      const span = document.createElement("span");
      span.className = "error-text";
      span.textContent = errorText(value);
      return span;
    }
    case "progress":
      return document.createTextNode(progressText(value));
    case "after": {
      if (!value.length) return muted("none");
      const span = document.createElement("span");
      value.forEach((id, i) => {
        if (i) span.appendChild(document.createTextNode(", "));
        span.appendChild(taskLink(id));
      });
      return span;
    }
    default:
      return document.createTextNode(typeof value === "object" ? JSON.stringify(value) : String(value));
  }
}

// Rows are rebuilt only when their value changes, so that a focused link stays focused.
function showStatusList(current) {
  const keys = statusKeys.length ? statusKeys : Object.keys(current).filter((k) => k !== "result_is_repr");
  const list = $("status");
  if (list.dataset.keys !== keys.join(",")) {
    list.dataset.keys = keys.join(",");
    const items = [];
    for (const key of keys) {
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dt.dataset.key = dd.dataset.key = key;
      items.push(dt, dd);
    }
    list.replaceChildren(...items);
  }
  for (const dd of list.querySelectorAll("dd")) {
    const key = dd.dataset.key;
    const value = JSON.stringify([current[key], key === "result" ? current.result_is_repr : null]);
    if (dd.dataset.value === value) continue;
    dd.dataset.value = value;
    dd.replaceChildren(statusValue(key, current[key], current));
  }
}

function showProgress(current) {
  const progress = current.progress;
  $("progress").hidden = !progress;
  if (!progress) return;
  const bar = $("progress-bar");
  if (typeof progress.fraction === "number") bar.value = progress.fraction;
  else bar.removeAttribute("value"); // indeterminate
  bar.setAttribute("aria-label", "Progress");
  const polls = current.kind === "polling" ? ` · ${current.polls} polls` : "";
  setText($("progress-text"), progressText(progress) + polls);
}

function showOutcome(current) {
  const outcome = $("task-outcome");
  outcome.className = "outcome";
  let text = "";
  if (current.state === "failed" && current.error) {
    text = errorText(current.error);
    outcome.classList.add("error-text");
  } else if (current.state === "succeeded") {
    text = `Result: ${current.result_is_repr ? String(current.result) : JSON.stringify(current.result)}`;
  } else if (current.state === "timed_out") {
    text = "Timed out.";
    outcome.classList.add("error-text");
  } else if (current.state === "pending" && current.not_before) {
    text = `Starts no earlier than ${new Date(current.not_before * 1000).toLocaleString()}.`;
  } else if (current.state === "pending" && current.after && current.after.length) {
    text = `Starts once ${current.after.map((id) => `task ${id}`).join(", ")} ${current.after.length > 1 ? "have" : "has"} succeeded.`;
  } else if (current.kind === "polling" && current.state === "running") {
    text = `Polled ${current.polls} times so far.`;
  }
  setText(outcome, text);
  outcome.hidden = !text;
}

// Cancel works on an unfinished task, but not on a blocking one that runs:
// Python cannot interrupt its run().
function cancelBlocked(current) {
  if (readOnly && !current.done) return "This token may only read: it cannot cancel.";
  if (current.done) return `It has finished (${tr.stateLabel(current.state)}): there is nothing to cancel.`;
  if (current.state === "running" && current.kind === "blocking") {
    return "A running blocking task cannot be cancelled: Python cannot interrupt its run().";
  }
  return "";
}

function showActions(current) {
  const reason = cancelBlocked(current);
  const cancel = $("cancel");
  cancel.disabled = Boolean(reason) || cancel.dataset.busy === "true";
  setText($("cancel-reason"), reason);
  const again = $("again");
  again.hidden = !(timeline && timeline.again);
  again.disabled = readOnly;
  again.title = readOnly ? "This token may only read: it cannot run a task again" : "";
}

function showStatus(current) {
  status = current;
  document.title = `Task ${current.id}: ${current.name} (${tr.stateLabel(current.state)}) – taskrunner`;
  setText($("title"), `Task ${current.id}`);
  setText($("task-name"), current.name);
  $("task-state").replaceChildren(tr.badge(current.state));
  setText($("task-attempt"), current.attempt > 1 ? `attempt ${current.attempt}` : "");
  showOutcome(current);
  showProgress(current);
  showStatusList(current);
  showActions(current);
  showDependencies();
  $("missing").hidden = true;
  $("task").hidden = false;
}

// ---- the timeline, attempts and dependencies ---------------------------------------

function showTimeline() {
  const list = timeline ? timeline.events : [];
  const items = list.map((event, i) => {
    const li = document.createElement("li");
    li.dataset.state = event.state;
    if (typeof event.at === "number") li.appendChild(tr.timeElement(event.at));
    li.appendChild(tr.badge(event.state));
    if (event.attempt > 1 || timeline.attempts.length > 1) li.appendChild(muted(`attempt ${event.attempt}`));
    const previous = list[i - 1];
    if (previous && typeof previous.at === "number" && typeof event.at === "number") {
      li.appendChild(muted(`+${tr.formatSeconds(Math.max(0, event.at - previous.at))}`));
    }
    if (event.error) {
      const error = document.createElement("span");
      error.className = "error-text";
      error.textContent = errorText(event.error);
      li.appendChild(error);
    }
    return li;
  });
  $("timeline").replaceChildren(...items);
}

function attemptSection(attempt, isLast) {
  const section = document.createElement("section");
  section.className = "attempt";
  section.id = `attempt-${attempt.attempt}`;
  section.dataset.attempt = String(attempt.attempt);
  const heading = document.createElement("h3");
  heading.textContent = `Attempt ${attempt.attempt}`;
  const times = document.createElement("p");
  times.className = "attempt-times";
  if (attempt.started_at) times.append("started ", tr.timeElement(attempt.started_at));
  else times.append(muted("not started"));
  if (attempt.ended_at) {
    times.append(", ended ", tr.timeElement(attempt.ended_at));
    if (attempt.started_at) times.append(` (${tr.formatSeconds(attempt.ended_at - attempt.started_at)})`);
  } else if (attempt.started_at && isLast && status && !status.done) {
    times.append(", still running");
  }
  section.append(heading, times);
  if (attempt.error) {
    const message = document.createElement("p");
    message.className = "error-text attempt-error";
    message.textContent = errorText(attempt.error);
    section.appendChild(message);
    if (attempt.error.traceback) {
      const pre = document.createElement("pre");
      pre.className = "traceback";
      pre.tabIndex = 0; // a box that scrolls must be reachable by keyboard
      pre.setAttribute("aria-label", `Traceback of attempt ${attempt.attempt}`);
      pre.textContent = attempt.error.traceback;
      section.appendChild(pre);
    }
  } else if (isLast && status && status.done) {
    section.appendChild(muted(tr.stateLabel(status.state)));
  }
  return section;
}

function showAttempts() {
  const list = timeline ? timeline.attempts : [];
  const sections = list.map((attempt, i) => attemptSection(attempt, i === list.length - 1));
  if (!sections.length) sections.push(muted("Not started yet."));
  $("attempts").replaceChildren(...sections);
}

// Each linked task with its state, read once per list.
async function addStates(items, ids) {
  const statuses = await Promise.all(ids.slice(0, 50).map((id) => tr.api(`api/tasks/${id}`).catch(() => null)));
  statuses.forEach((linked, i) => {
    if (linked) items[i].append(" ", tr.badge(linked.state));
  });
}

function fillLinks(list, ids, none) {
  const key = ids.join(",") || `-${none}`;
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  const items = ids.map((id) => {
    const li = document.createElement("li");
    li.appendChild(taskLink(id));
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.appendChild(muted(none));
    list.replaceChildren(li);
    return;
  }
  list.replaceChildren(...items);
  addStates(items, ids);
}

function showDependencies() {
  const after = timeline ? timeline.after : status ? status.after || [] : [];
  fillLinks($("after"), after, "none: it waits for no other task");
  if (timeline) fillLinks($("dependents"), timeline.dependents, "none: no task waits for it");
}

// ---- loading, live updates --------------------------------------------------------

function setConnection(state, text) {
  const element = $("connection");
  element.dataset.status = state;
  setText(element, text);
}

function showMissing(detail) {
  stopFollowing();
  document.title = `No task ${rawId} – taskrunner`;
  setText($("title"), "No such task");
  setText($("missing-title"), `No task ${rawId}`);
  setText($("missing-detail"), detail);
  $("missing").hidden = false;
  $("task").hidden = true;
  setConnection("down", "no task");
}

async function loadMeta() {
  try {
    statusKeys = (await tr.api("api/meta")).status_keys;
  } catch (error) {
    if (!(error instanceof tr.ApiError && error.status === 401)) tr.notify(`Status keys: ${tr.problemText(error)}`);
  }
  try {
    readOnly = !(await tr.api("api/access")).can_change;
  } catch (_) {
    readOnly = false; // an older server: the actions say so if they are refused
  }
}

async function loadTimeline() {
  try {
    timeline = await tr.api(`api/tasks/${taskId}/timeline`);
  } catch (error) {
    // 404: the task was just forgotten (the status says so next); 401: the token prompt asks.
    if (!(error instanceof tr.ApiError && (error.status === 404 || error.status === 401))) {
      tr.notify(`Timeline: ${tr.problemText(error)}`);
    }
    timeline = null;
  }
  showTimeline();
  showAttempts();
  showDependencies();
  if (status) showActions(status);
}

// Reads the status (and, when asked or when the state moved, the timeline).
async function load({ withTimeline = false } = {}) {
  let current;
  try {
    current = await tr.api(`api/tasks/${taskId}`);
  } catch (error) {
    if (error instanceof tr.ApiError && error.status === 404) {
      showMissing(`The server knows no task ${taskId}: it may never have existed, or it was forgotten.`);
    } else if (!(error instanceof tr.ApiError && error.status === 401)) {
      tr.notify(`Task ${taskId}: ${tr.problemText(error)}`);
    }
    return;
  }
  if (status && isOlder(current, status)) return;
  const moved = !status || status.state !== current.state || status.attempt !== current.attempt;
  showStatus(current);
  if (withTimeline || moved) await loadTimeline();
  if (current.done) stopFollowing();
}

// A task only moves forward: pending, running, then a final state, in each
// attempt. A status may arrive late, by the stream or a refresh.
function stage(current) {
  return current.done ? 2 : current.state === "running" ? 1 : 0;
}

function isOlder(current, known) {
  const attempt = current.attempt || 1;
  const knownAttempt = known.attempt || 1;
  return attempt < knownAttempt || (attempt === knownAttempt && stage(current) < stage(known));
}

function onEvent(name, data) {
  if (name === "task" && data.id === taskId) {
    if (status && isOlder(data, status)) return;
    const moved = !status || status.state !== data.state || status.attempt !== data.attempt;
    showStatus(data);
    if (moved) loadTimeline();
    if (data.done) stopFollowing();
  } else if (name === "ready" || name === "resync" || (name === "forgotten" && data.id === taskId)) {
    load({ withTimeline: true });
  }
}

// Polls and progress change without an event: read them again while it runs.
function refresh() {
  if (!document.hidden && status && status.state === "running") load();
}

async function followEvents() {
  let delay = 500;
  while (events) {
    const controller = events;
    try {
      await tr.readEvents(controller.signal, onEvent, () => setConnection("live", "live"));
      if (events === controller) setConnection("connecting", "reconnecting…");
    } catch (error) {
      if (events !== controller) return; // stopped on purpose
      setConnection("down", `offline: ${tr.problemText(error)}`);
    }
    if (events !== controller) return;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10000);
    if (events === controller) events = new AbortController();
  }
}

function startFollowing() {
  if (events) return;
  events = new AbortController();
  refreshTimer = setInterval(refresh, REFRESH_EVERY_MS);
  followEvents();
}

// A finished task changes no more: the stream and the refresh stop.
function stopFollowing() {
  if (status && status.done) setConnection("final", "finished: not following");
  if (!events) return;
  const controller = events;
  events = null;
  controller.abort();
  clearInterval(refreshTimer);
}

// ---- actions ------------------------------------------------------------------------

async function cancelTask() {
  const button = $("cancel");
  button.dataset.busy = "true";
  button.disabled = true;
  const result = $("action-result");
  try {
    showStatus(await tr.api(`api/tasks/${taskId}`, { method: "DELETE" }));
    setText(result, `Task ${taskId} cancelled.`);
    result.className = "action-result";
    loadTimeline();
  } catch (error) {
    setText(result, `Not cancelled: ${tr.problemText(error)}`);
    result.className = "action-result error-text";
  } finally {
    button.dataset.busy = "false";
    if (status) showActions(status);
  }
}

async function runAgain() {
  const button = $("again");
  button.disabled = true;
  const result = $("action-result");
  try {
    const copy = await tr.api(`api/tasks/${taskId}/again`, { method: "POST" });
    location.assign(`./${copy.id}`);
  } catch (error) {
    setText(result, `Not run again: ${tr.problemText(error)}`);
    result.className = "action-result error-text";
    button.disabled = false;
  }
}

function askForToken() {
  $("token-form").hidden = false;
  setConnection("down", "needs a token");
}

async function start() {
  tr.whenUnauthorized(askForToken);
  $("cancel").addEventListener("click", cancelTask);
  $("again").addEventListener("click", runAgain);
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    tr.setToken($("token-input").value.trim());
    location.reload();
  });
  if (taskId === null) {
    showMissing(`"${rawId}" is not a task id: ids are whole numbers, such as /tasks/12.`);
    return;
  }
  await loadMeta();
  await load({ withTimeline: true });
  // Follow only an unfinished task; a finished one changes no more.
  if (status && !status.done) startFollowing();
}

start();
