// The dashboard's charts: tasks finished per second by final state, tasks
// running and pending, and the runtime percentiles. The history comes from
// GET api/stats/history once (and again when the window changes or the event
// stream reconnects); after that each second's `stats` event adds to it.
// Chart.js (static/vendor/chart.min.js) draws; no date adapter: the x axis is
// linear in Unix seconds, and its ticks are formatted in the viewer's local time.
"use strict";

const taskCharts = (() => {
  const FINAL = ["succeeded", "failed", "cancelled", "timed_out"];
  const STEP = { "1m": 1, "1h": 10, "1d": 60 }; // seconds per point, as the server steps
  const SPAN = { "1m": 60, "1h": 3600, "1d": 86400 };
  const TICK = { "1m": 10, "1h": 600, "1d": 14400 }; // a time label every 10 s, 10 min, 4 h
  const RUNTIME_EVERY_MS = 30000; // the percentiles move slowly: ask for them twice a minute
  const WINDOWS = [
    ["1m", "minute"],
    ["1h", "hour"],
    ["1d", "day"],
  ];

  let api = null;
  let windowName = "1h";
  let finishedChart = null;
  let loadChart = null;
  let bucket = null; // the step the stats events are adding to: {start, seconds, sums, partial}
  let generation = 0; // a history asked for before the window changed is dropped
  let lastAt = null; // the newest point's x

  const $ = (id) => document.getElementById(id);

  function label(state) {
    return state.replaceAll("_", " ");
  }

  function colours() {
    const style = getComputedStyle(document.documentElement);
    const get = (name) => style.getPropertyValue(name).trim();
    return {
      fg: get("--fg"),
      muted: get("--muted"),
      grid: get("--border"),
      succeeded: get("--succeeded"),
      failed: get("--failed"),
      cancelled: get("--cancelled"),
      timed_out: get("--timed_out"),
      running: get("--running"),
      pending: get("--pending"),
    };
  }

  // A colour at a fraction of its strength, for the areas under the lines.
  function faded(colour, alpha) {
    const hex = colour.replace("#", "");
    if (!/^[0-9a-f]{6}$/i.test(hex)) return colour;
    const [r, g, b] = [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16));
    return `rgba(${r}, ${g}, ${b}, ${alpha})`;
  }

  function timeLabel(seconds) {
    const date = new Date(seconds * 1000);
    if (windowName === "1d") return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: windowName === "1m" ? "2-digit" : undefined });
  }

  function axes(c, yTitle, stacked) {
    return {
      x: {
        type: "linear",
        ticks: { color: c.muted, stepSize: TICK[windowName], maxRotation: 0, callback: (value) => timeLabel(value) },
        grid: { color: c.grid },
      },
      y: {
        stacked,
        beginAtZero: true,
        ticks: { color: c.muted, precision: 0, maxTicksLimit: 5 },
        grid: { color: c.grid },
        title: { display: true, text: yTitle, color: c.muted },
      },
    };
  }

  function options(c, yTitle, stacked) {
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      spanGaps: false,
      interaction: { mode: "index", intersect: false },
      elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 1.5, tension: 0 } },
      scales: axes(c, yTitle, stacked),
      plugins: {
        legend: { position: "bottom", labels: { color: c.fg, boxWidth: 12, boxHeight: 12 } },
        tooltip: {
          callbacks: {
            title: (items) => (items.length ? new Date(items[0].parsed.x * 1000).toLocaleString() : ""),
          },
        },
      },
    };
  }

  function makeCharts() {
    const c = colours();
    finishedChart = new Chart($("finished-chart"), {
      type: "line",
      data: {
        datasets: FINAL.map((state, i) => ({
          label: label(state),
          data: [],
          borderColor: c[state],
          backgroundColor: faded(c[state], 0.35),
          fill: i === 0 ? "origin" : "-1", // stacked areas
        })),
      },
      options: options(c, "tasks/s", true),
    });
    loadChart = new Chart($("load-chart"), {
      type: "line",
      data: {
        datasets: [
          { label: "running", data: [], borderColor: c.running, backgroundColor: c.running },
          { label: "pending", data: [], borderColor: c.pending, backgroundColor: c.pending, borderDash: [5, 3] },
        ],
      },
      options: options(c, "tasks", false),
    });
  }

  // The theme changed: the lines and axes take the new colours.
  function recolour() {
    const c = colours();
    finishedChart.data.datasets.forEach((dataset, i) => {
      dataset.borderColor = c[FINAL[i]];
      dataset.backgroundColor = faded(c[FINAL[i]], 0.35);
    });
    loadChart.data.datasets[0].borderColor = loadChart.data.datasets[0].backgroundColor = c.running;
    loadChart.data.datasets[1].borderColor = loadChart.data.datasets[1].backgroundColor = c.pending;
    for (const chart of [finishedChart, loadChart]) {
      for (const axis of Object.values(chart.options.scales)) {
        axis.ticks.color = c.muted;
        axis.grid.color = c.grid;
        if (axis.title) axis.title.color = c.muted;
      }
      chart.options.plugins.legend.labels.color = c.fg;
      chart.update("none");
    }
  }

  function datasets() {
    return [...finishedChart.data.datasets, ...loadChart.data.datasets];
  }

  // The x axis spans the window up to now; older points go.
  function frame(now) {
    const from = now - SPAN[windowName];
    for (const dataset of datasets()) {
      const data = dataset.data;
      let old = 0;
      while (old < data.length && data[old].x < from) old++;
      if (old) data.splice(0, old);
    }
    for (const chart of [finishedChart, loadChart]) {
      chart.options.scales.x.min = from;
      chart.options.scales.x.max = now;
      chart.options.scales.x.ticks.stepSize = TICK[windowName];
    }
  }

  function draw() {
    if (document.hidden) return; // the next visible second draws it all
    finishedChart.update("none");
    loadChart.update("none");
  }

  function showHistory(history) {
    const { at, finished, running, pending } = history;
    finishedChart.data.datasets.forEach((dataset, i) => {
      const values = finished[FINAL[i]] || [];
      dataset.data = at.map((x, j) => ({ x, y: values[j] || 0 }));
    });
    loadChart.data.datasets[0].data = at.map((x, j) => ({ x, y: running[j] || 0 }));
    loadChart.data.datasets[1].data = at.map((x, j) => ({ x, y: pending[j] || 0 }));
    lastAt = at.length ? at[at.length - 1] : null;
    bucket = null;
    frame(Date.now() / 1000);
    draw();
    showRuntime(history.runtime);
  }

  function seconds(value) {
    if (value === null || value === undefined) return "–";
    if (value < 1) return `${(value * 1000).toFixed(value < 0.01 ? 1 : 0)} ms`;
    if (value < 120) return `${value.toFixed(value < 10 ? 2 : 1)} s`;
    return `${Math.floor(value / 60)} m ${Math.round(value % 60)} s`;
  }

  function showRuntime(runtime) {
    if (!runtime) return;
    const rows = WINDOWS.map(([key, word]) => {
      const figures = runtime[key] || { count: 0, p50: null, p90: null, p99: null };
      const tr = document.createElement("tr");
      tr.dataset.window = key;
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = word;
      tr.appendChild(th);
      for (const text of [String(figures.count), seconds(figures.p50), seconds(figures.p90), seconds(figures.p99)]) {
        const td = document.createElement("td");
        td.className = "num";
        td.textContent = text;
        tr.appendChild(td);
      }
      return tr;
    });
    $("runtime-rows").replaceChildren(...rows);
  }

  function status(text) {
    const element = $("chart-status");
    if (element.textContent !== text) element.textContent = text;
  }

  async function reload() {
    if (!finishedChart) return;
    const asked = ++generation;
    try {
      const history = await api(`api/stats/history?window=${encodeURIComponent(windowName)}`);
      if (asked !== generation) return;
      showHistory(history);
      status("");
    } catch (error) {
      if (asked === generation) status(`History unavailable: ${error.message}`);
    }
  }

  async function refreshRuntime() {
    if (document.hidden || !finishedChart) return;
    try {
      showRuntime((await api("api/stats/history?window=1m")).runtime);
    } catch (_) {
      // reload() says why the history is missing
    }
  }

  function push(x, values) {
    datasets().forEach((dataset, i) => dataset.data.push({ x, y: values[i] }));
  }

  function setLast(values) {
    datasets().forEach((dataset, i) => {
      if (values[i] !== null && dataset.data.length) dataset.data[dataset.data.length - 1].y = values[i];
    });
  }

  // One second's `stats` event: a point of its own for the minute, else added to its step's
  // (tasks finished per second over the seconds seen of the step, running and pending at the last).
  function addStats(event) {
    if (!finishedChart) return;
    const step = STEP[windowName];
    const start = Math.floor(event.at / step) * step;
    if (lastAt !== null && start < lastAt) return; // the history already holds it
    const counts = FINAL.map((state) => (event.finished && event.finished[state]) || 0);
    if (!bucket || bucket.start !== start) {
      // The server's last step may be this one: it counted part of it already.
      const partial = lastAt === start;
      bucket = { start, seconds: 0, sums: FINAL.map(() => 0), partial };
      if (!partial) {
        push(start, [...counts, event.running, event.pending]);
        lastAt = start;
      }
    }
    bucket.seconds += 1;
    counts.forEach((n, i) => {
      bucket.sums[i] += n;
    });
    const rates = bucket.partial ? FINAL.map(() => null) : bucket.sums.map((sum) => sum / bucket.seconds);
    setLast([...rates, event.running, event.pending]);
    frame(Math.max(event.at, Date.now() / 1000));
    draw();
  }

  function setWindow(name) {
    if (!STEP[name] || name === windowName) return;
    windowName = name;
    finishedChart.data.datasets.forEach((dataset) => (dataset.data = []));
    loadChart.data.datasets.forEach((dataset) => (dataset.data = []));
    lastAt = null;
    bucket = null;
    reload();
  }

  function start(apiCall) {
    api = apiCall;
    if (typeof Chart === "undefined") {
      status("The charts' script did not load.");
      return;
    }
    windowName = $("chart-window").value;
    makeCharts();
    frame(Date.now() / 1000);
    draw();
    $("chart-window").addEventListener("change", (event) => setWindow(event.target.value));
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", recolour);
    setInterval(refreshRuntime, RUNTIME_EVERY_MS);
    // The first stream connection's `ready` loads the history.
  }

  return { start, reload, addStats };
})();
