// What the dashboard's pages share: talking to the API with the tab's token,
// problem details as sentences, the event stream, times and state badges.
// Everything is on one global, `taskrunner`, so that a page's own names stay its own.
"use strict";

window.taskrunner = (() => {
  const TOKEN_KEY = "taskrunner-token";
  // The server's root, from where this script was loaded (".../static/common.js"),
  // so that API paths work from any page and under any prefix.
  const root = new URL("..", document.currentScript.src);
  let onUnauthorized = () => {};

  // ---- the API ---------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
    }
  }

  function url(path) {
    return new URL(path, root).href;
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function setToken(value) {
    sessionStorage.setItem(TOKEN_KEY, value);
  }

  // A token handed over in the URL's fragment (#token=..., which browsers never
  // send) goes to the tab's session storage and out of the address bar.
  function takeTokenFromFragment() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (!fragment.has("token")) return;
    setToken(fragment.get("token"));
    fragment.delete("token");
    const rest = fragment.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  takeTokenFromFragment();

  function headers(extra = {}) {
    const value = token();
    return value ? { ...extra, Authorization: `Bearer ${value}` } : extra;
  }

  // The body of a response: JSON (problem details included), or its text as a detail.
  async function readBody(response) {
    const text = await response.text();
    try {
      return text ? JSON.parse(text) : null;
    } catch (_) {
      return { detail: text };
    }
  }

  /**
   * A request to the API, relative to the server's root ("api/tasks/1").
   * Resolves to the decoded JSON; rejects with an ApiError carrying the
   * problem details, or a TypeError when the server is out of reach.
   */
  async function api(path, options = {}) {
    const response = await fetch(url(path), { ...options, headers: headers(options.headers) });
    const body = await readBody(response);
    if (!response.ok) {
      if (response.status === 401) onUnauthorized();
      throw new ApiError(response.status, body || {});
    }
    return body;
  }

  // A sentence for a failed request, for the page to show.
  function problemText(error) {
    if (error instanceof ApiError) return error.message;
    return "the server is out of reach";
  }

  // ---- the event stream ---------------------------------------------------------

  function dispatch(block, onEvent) {
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
    if (data.length) onEvent(name, JSON.parse(data.join("\n")));
  }

  /**
   * Reads GET api/events until it ends or `signal` aborts, calling
   * onEvent(name, data) for each event. Server-sent events are read with
   * fetch rather than EventSource, so that the token travels in a header.
   */
  async function readEvents(signal, onEvent, onOpen = () => {}) {
    const response = await fetch(url("api/events"), {
      headers: headers({ Accept: "text/event-stream" }),
      signal,
    });
    if (!response.ok) {
      if (response.status === 401) onUnauthorized();
      throw new ApiError(response.status, (await readBody(response)) || {});
    }
    onOpen();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, end), onEvent);
        buffer = buffer.slice(end + 2);
      }
    }
  }

  // ---- notices ----------------------------------------------------------------------

  // A dismissable line in the page's #notices box: the same text shows once, and
  // only the last four stay.
  function notify(text) {
    const notices = document.getElementById("notices");
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
    close.setAttribute("aria-label", "Dismiss");
    close.addEventListener("click", () => div.remove());
    div.append(span, close);
    notices.appendChild(div);
    while (notices.children.length > 4) notices.firstChild.remove();
  }

  // ---- times, durations and states ------------------------------------------------

  // Unix seconds as the viewer's local date and time; the exact UTC time goes in `title`.
  function timeElement(seconds) {
    const element = document.createElement("time");
    const date = new Date(seconds * 1000);
    element.dateTime = date.toISOString();
    element.title = `${date.toISOString().replace(".000Z", "Z")} (UTC)`;
    element.textContent = date.toLocaleString(undefined, {
      year: "numeric",
      month: "short",
      day: "numeric",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    return element;
  }

  function formatSeconds(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 10) return `${seconds.toFixed(2)} s`;
    if (seconds < 120) return `${seconds.toFixed(1)} s`;
    if (seconds < 7200) return `${Math.floor(seconds / 60)} m ${Math.round(seconds % 60)} s`;
    return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} m`;
  }

  function stateLabel(state) {
    return String(state).replaceAll("_", " ");
  }

  // A task state as a badge: its name in words, its colour from the stylesheet.
  function badge(state) {
    const span = document.createElement("span");
    span.className = "badge";
    span.dataset.state = state;
    span.textContent = stateLabel(state);
    return span;
  }

  return Object.freeze({
    ApiError,
    api,
    url,
    token,
    setToken,
    headers,
    problemText,
    notify,
    readEvents,
    timeElement,
    formatSeconds,
    stateLabel,
    badge,
    // What to do when the server asks for a token (401): ask the user for one.
    whenUnauthorized(handler) {
      onUnauthorized = handler;
    },
  });
})();
