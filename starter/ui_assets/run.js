// Tideflow run page: refreshes node statuses and figures from /ui/runs/{id}/live while the run
// runs. The page is complete without this script; it only keeps it current.
"use strict";
(function () {
  const body = document.body;
  const url = body.dataset.live;
  const POLL_MS = 2000;
  if (!url) return;

  function seconds(value) {
    if (value === null || value === undefined) return "";
    if (value < 1) return Math.round(value * 1000) + "ms";
    if (value < 60) return value.toFixed(1) + "s";
    const minutes = Math.floor(value / 60);
    if (minutes < 60) return minutes + "m" + String(Math.floor(value % 60)).padStart(2, "0") + "s";
    return Math.floor(minutes / 60) + "h" + String(minutes % 60).padStart(2, "0") + "m";
  }

  function figures(node) {
    const parts = [];
    if (node.duration_seconds !== null) parts.push(seconds(node.duration_seconds));
    if (node.tokens) parts.push(node.tokens.toLocaleString("en-US") + " tok");
    if (node.cost_usd) parts.push("$" + node.cost_usd.toFixed(4));
    return parts.join(" · ");
  }

  function stateLine(node) {
    let line = node.status.replace(/_/g, " ");
    if (node.attention === "budget") line += " (budget)";
    else if (node.waiting) line += " (" + node.waiting + ")";
    if (node.attempts > 1) line += " · attempt " + node.attempts;
    return line;
  }

  function setStatus(element, prefix, status) {
    for (const name of Array.from(element.classList)) {
      if (name.startsWith("status-")) element.classList.remove(name);
    }
    element.classList.add("status-" + status);
    element.dataset.status = status;
    if (prefix !== null) element.textContent = status;
  }

  function text(parent, selector, value) {
    const found = parent.querySelector(selector);
    if (found && found.textContent !== value) found.textContent = value;
  }

  function spend(live) {
    const parts = [];
    if (live.usage.ai_tokens) {
      let part = "AI: " + live.usage.ai_tokens.toLocaleString("en-US") + " tokens";
      if (live.usage.cost_usd !== null) part += " · $" + live.usage.cost_usd.toFixed(4);
      parts.push(part);
    }
    const budget = live.budget;
    let over = false;
    if (budget) {
      const limits = [];
      if (budget.cost_usd !== null) {
        limits.push("$" + budget.spent_usd.toFixed(4) + " of $" + budget.cost_usd.toFixed(4));
        over = over || budget.spent_usd > budget.cost_usd;
      }
      if (budget.tokens !== null) {
        limits.push(budget.spent_tokens.toLocaleString("en-US") + " of " +
                    budget.tokens.toLocaleString("en-US") + " tokens");
        over = over || budget.spent_tokens > budget.tokens;
      }
      parts.push("budget: " + (limits.join(", ") || "$" + budget.spent_usd.toFixed(4) + " spent"));
    }
    const element = document.getElementById("spend");
    element.textContent = parts.join(" · ");
    element.classList.toggle("over", over);
  }

  function apply(live) {
    setStatus(document.getElementById("run-status"), "", live.status);
    text(document, "#run-error", live.error || "");
    text(document, "#updated", "as of " + live.updated_at.slice(0, 19).replace("T", " ") + " UTC");
    spend(live);
    for (const [id, node] of Object.entries(live.nodes)) {
      const box = document.querySelector('g.node[data-node="' + CSS.escape(id) + '"]');
      if (box) {
        setStatus(box, null, node.status);
        text(box, ".node-state", stateLine(node));
        text(box, ".node-figures", figures(node));
      }
      const row = document.querySelector('tr[data-node="' + CSS.escape(id) + '"]');
      if (row) {
        row.dataset.status = node.status;
        setStatus(row.querySelector(".badge"), "", node.status);
        text(row, ".why", node.attention === "budget" ? " stopped by the budget"
                          : node.waiting ? " waiting for " + node.waiting : "");
        text(row, ".attempts", node.attempts ? String(node.attempts) : "");
        text(row, ".duration", seconds(node.duration_seconds));
        text(row, ".tokens", node.tokens ? String(node.tokens) : "");
        text(row, ".cost", node.cost_usd ? "$" + node.cost_usd.toFixed(4) : "");
        text(row, ".node-error", node.error || "");
      }
    }
    body.dataset.ended = String(live.ended);
    body.dataset.polls = String(Number(body.dataset.polls || "0") + 1);
  }

  async function poll() {
    try {
      const answer = await fetch(url, { headers: { Accept: "application/json" } });
      if (answer.ok) apply(await answer.json());
    } catch (error) {
      // The API is away for a moment: try again at the next tick.
    }
    if (body.dataset.ended !== "true") setTimeout(poll, POLL_MS);
  }

  poll();
})();
