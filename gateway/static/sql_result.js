// A run_sql tool's output as a table and a bar chart of its first numeric column, both built
// as DOM nodes (text only through textContent) and the chart drawn as plain SVG.
//
// run_sql answers {"columns": [...], "rows": [[...], ...], "row_count": n, "truncated": bool}
// (agent/sql_tools.py); events keep the first 8,000 characters of it, so a longer output does
// not parse and is shown as text by the caller.

const SVG = "http://www.w3.org/2000/svg";
const NUMERIC = /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/;
// Bars drawn at most; the table still lists every row.
const MAX_BARS = 40;
const formatter = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

/** The parsed result of a run_sql output, or null when it is not one (cut, or an error). */
export function parseSqlResult(output) {
  let value;
  try {
    value = JSON.parse(output);
  } catch {
    return null;
  }
  if (!value || !Array.isArray(value.columns) || !Array.isArray(value.rows)) return null;
  const columns = value.columns.map(String);
  const rows = value.rows.map((row) =>
    Array.isArray(row) ? row : columns.map((name) => (row && typeof row === "object" ? row[name] : row)),
  );
  return { columns, rows, truncated: Boolean(value.truncated), note: value.note || "" };
}

function asNumber(value) {
  if (typeof value === "number" && Number.isFinite(value)) return value;
  if (typeof value === "string" && NUMERIC.test(value.trim())) return Number(value);
  return null;
}

function isNumericColumn(rows, index) {
  let seen = false;
  for (const row of rows) {
    const value = row[index];
    if (value === null || value === undefined) continue;
    if (asNumber(value) === null) return false;
    seen = true;
  }
  return seen;
}

/** Index of the first column whose every non-null value is a number (or a numeric string). */
export function firstNumericColumn(result) {
  return result.columns.findIndex((_, i) => isNumericColumn(result.rows, i));
}

function display(value) {
  if (value === null || value === undefined) return "∅";
  const number = asNumber(value);
  if (number !== null) return formatter.format(number);
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The rows as a <table>; numeric columns right-aligned and grouped by the reader's locale. */
export function renderTable(result, doc = document) {
  const numeric = result.columns.map((_, i) => isNumericColumn(result.rows, i));
  const wrap = doc.createElement("div");
  wrap.className = "table-wrap";
  const table = doc.createElement("table");
  table.className = "sql-table";
  const head = table.createTHead().insertRow();
  result.columns.forEach((name, i) => {
    const th = doc.createElement("th");
    th.textContent = name;
    if (numeric[i]) th.className = "num";
    head.appendChild(th);
  });
  const body = table.createTBody();
  for (const row of result.rows) {
    const tr = body.insertRow();
    result.columns.forEach((_, i) => {
      const td = tr.insertCell();
      td.textContent = display(row[i]);
      if (numeric[i]) td.className = "num";
    });
  }
  wrap.appendChild(table);
  return wrap;
}

function svg(doc, tag, attributes, text) {
  const node = doc.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function clip(text, length) {
  return text.length > length ? text.slice(0, length - 1) + "…" : text;
}

/** A horizontal bar chart of the first numeric column, labelled by the first other column;
 * null when no column is numeric. */
export function renderBarChart(result, doc = document) {
  const valueIndex = firstNumericColumn(result);
  if (valueIndex < 0 || result.rows.length === 0) return null;
  const labelIndex = result.columns.findIndex((_, i) => i !== valueIndex && !isNumericColumn(result.rows, i));
  const rows = result.rows.slice(0, MAX_BARS);
  const values = rows.map((row) => asNumber(row[valueIndex]) ?? 0);
  const labels = rows.map((row, n) => (labelIndex >= 0 ? display(row[labelIndex]) : "#" + (n + 1)));

  const shown = rows.map((row) => display(row[valueIndex]));
  const longest = (texts) => Math.max(...texts.map((text) => text.length));
  // Room for the longest label and value at ~7.5 units a character (13px text).
  const barHeight = 22;
  const gap = 8;
  const labelWidth = Math.min(170, Math.max(50, longest(labels.map((l) => clip(l, 22))) * 7.5 + 12));
  const valueWidth = longest(shown) * 7.5 + 14;
  const plotWidth = 240;
  const top = 28;
  const width = labelWidth + plotWidth + valueWidth;
  const height = top + rows.length * (barHeight + gap) + 4;
  const low = Math.min(0, ...values);
  const high = Math.max(0, ...values);
  const span = high - low || 1;
  const x = (v) => labelWidth + ((v - low) / span) * plotWidth;

  const title = result.columns[valueIndex] + (labelIndex >= 0 ? " by " + result.columns[labelIndex] : "");
  const chart = svg(doc, "svg", {
    class: "bar-chart",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": title,
  });
  chart.appendChild(svg(doc, "text", { x: labelWidth, y: 16, class: "chart-title" }, title));
  chart.appendChild(svg(doc, "line", { x1: x(0), x2: x(0), y1: top - 6, y2: height, class: "axis" }));
  rows.forEach((_, n) => {
    const y = top + n * (barHeight + gap);
    const v = values[n];
    const left = Math.min(x(0), x(v));
    const bar = svg(doc, "rect", {
      class: "bar",
      x: left,
      y,
      width: Math.max(Math.abs(x(v) - x(0)), 1),
      height: barHeight,
      rx: 3,
    });
    bar.appendChild(svg(doc, "title", {}, `${labels[n]}: ${display(rows[n][valueIndex])}`));
    chart.appendChild(bar);
    chart.appendChild(
      svg(doc, "text", { x: labelWidth - 10, y: y + barHeight / 2, class: "bar-label" }, clip(labels[n], 22)),
    );
    chart.appendChild(
      svg(doc, "text", { x: Math.max(x(0), x(v)) + 6, y: y + barHeight / 2, class: "bar-value" }, shown[n]),
    );
  });
  return chart;
}
