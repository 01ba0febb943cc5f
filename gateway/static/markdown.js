// A small Markdown renderer that builds DOM nodes, never an HTML string: whatever the model
// writes reaches the page as text nodes and a fixed set of elements, so no tag, attribute or
// script in it can become markup. Links keep only http(s) and mailto targets; images are shown
// as links, so an answer cannot make the browser fetch anything by itself.
//
// Blocks: paragraphs, ATX headings, fenced code, block quotes, (nested) lists, pipe tables,
// thematic breaks. Inline: code spans, **strong**, *em* / _em_, ~~strike~~, links, bare URLs,
// backslash escapes; a single newline inside a paragraph is a line break, as chat answers mean it.

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?/;
const ITEM = /^( {0,12})([-*+]|\d{1,9}[.)])(\s+|$)(.*)$/;
const TABLE_DIVIDER = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;
const SAFE_URL = /^(https?:\/\/|mailto:)/i;
// Quotes, lists and emphasis nest at most this deep; deeper text is shown as it is written.
const MAX_DEPTH = 16;

function el(doc, tag, className) {
  const node = doc.createElement(tag);
  if (className) node.className = className;
  return node;
}

function isBlank(line) {
  return line.trim() === "";
}

function startsBlock(lines, i) {
  const line = lines[i];
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    ITEM.test(line) ||
    (line.includes("|") && i + 1 < lines.length && TABLE_DIVIDER.test(lines[i + 1]))
  );
}

function splitRow(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  const cells = [];
  let cell = "";
  for (let i = 0; i < row.length; i++) {
    if (row[i] === "\\" && row[i + 1] === "|") {
      cell += "|";
      i++;
    } else if (row[i] === "|") {
      cells.push(cell.trim());
      cell = "";
    } else {
      cell += row[i];
    }
  }
  cells.push(cell.trim());
  return cells;
}

function renderTable(doc, lines, parent) {
  const aligns = splitRow(lines[1]).map((c) =>
    c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : c.startsWith(":") ? "left" : "",
  );
  const wrap = el(doc, "div", "md-table");
  const table = el(doc, "table");
  const head = el(doc, "thead");
  const headRow = el(doc, "tr");
  for (const [i, cell] of splitRow(lines[0]).entries()) {
    const th = el(doc, "th", aligns[i] ? "align-" + aligns[i] : "");
    inline(doc, cell, th);
    headRow.appendChild(th);
  }
  head.appendChild(headRow);
  table.appendChild(head);
  const body = el(doc, "tbody");
  for (const line of lines.slice(2)) {
    const tr = el(doc, "tr");
    for (const [i, cell] of splitRow(line).entries()) {
      const td = el(doc, "td", aligns[i] ? "align-" + aligns[i] : "");
      inline(doc, cell, td);
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  table.appendChild(body);
  wrap.appendChild(table);
  parent.appendChild(wrap);
}

function renderList(doc, lines, start, parent, depth) {
  const first = ITEM.exec(lines[start]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const list = el(doc, ordered ? "ol" : "ul");
  if (ordered && parseInt(first[2], 10) !== 1) list.start = parseInt(first[2], 10);
  let i = start;
  let loose = false;
  const items = [];
  while (i < lines.length) {
    const match = ITEM.exec(lines[i]);
    if (!match || match[1].length !== indent || /\d/.test(match[2]) !== ordered) break;
    const contentIndent = indent + match[2].length + Math.max(1, Math.min(match[3].length, 4));
    const body = [match[4]];
    i++;
    while (i < lines.length) {
      const line = lines[i];
      if (isBlank(line)) {
        // A blank line ends the list unless an indented continuation or another item follows.
        const next = lines[i + 1];
        if (next === undefined) break;
        const nextItem = ITEM.exec(next);
        const continues = next.length - next.trimStart().length >= contentIndent;
        if (!continues && !(nextItem && nextItem[1].length === indent)) break;
        loose = true;
        body.push("");
        i++;
        continue;
      }
      const sub = ITEM.exec(line);
      if (sub && sub[1].length <= indent) break;
      const lead = line.length - line.trimStart().length;
      if (lead < contentIndent && !sub && startsBlock(lines, i)) break;
      body.push(lead >= contentIndent ? line.slice(contentIndent) : line.trimStart());
      i++;
    }
    items.push(body);
  }
  for (const body of items) {
    const li = el(doc, "li");
    while (body.length && isBlank(body[body.length - 1])) body.pop();
    const nested = body.some((line, n) => n > 0 && startsBlock(body, n));
    if (!loose && !nested && !body.some(isBlank)) {
      inline(doc, body.join("\n"), li);
    } else if (!loose) {
      // Tight item with a nested block: its first lines stay bare text, then the blocks.
      const cut = body.findIndex((line, n) => n > 0 && startsBlock(body, n));
      inline(doc, body.slice(0, cut).join("\n"), li);
      blocks(doc, body.slice(cut), li, depth + 1);
    } else {
      blocks(doc, body, li, depth + 1);
    }
    list.appendChild(li);
  }
  parent.appendChild(list);
  return i;
}

function blocks(doc, lines, parent, depth = 0) {
  if (depth > MAX_DEPTH) {
    parent.appendChild(el(doc, "p")).textContent = lines.join("\n");
    return;
  }
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) {
      i++;
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence) {
      const code = [];
      i++;
      // An unclosed fence runs to the end: while an answer streams in, its code shows as code.
      while (i < lines.length && !new RegExp("^ {0,3}" + fence[1][0] + "{" + fence[1].length + ",}\\s*$").test(lines[i])) {
        code.push(lines[i]);
        i++;
      }
      i++;
      const pre = el(doc, "pre");
      const codeEl = el(doc, "code", fence[2] ? "language-" + fence[2].toLowerCase() : "");
      codeEl.textContent = code.join("\n");
      pre.appendChild(codeEl);
      parent.appendChild(pre);
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const h = el(doc, "h" + heading[1].length);
      inline(doc, heading[2] || "", h);
      parent.appendChild(h);
      i++;
      continue;
    }
    if (RULE.test(line)) {
      parent.appendChild(el(doc, "hr"));
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const quoted = [];
      while (i < lines.length && !isBlank(lines[i]) && (QUOTE.test(lines[i]) || !startsBlock(lines, i))) {
        quoted.push(lines[i].replace(QUOTE, ""));
        i++;
      }
      const quote = el(doc, "blockquote");
      blocks(doc, quoted, quote, depth + 1);
      parent.appendChild(quote);
      continue;
    }
    if (ITEM.test(line)) {
      i = renderList(doc, lines, i, parent, depth);
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_DIVIDER.test(lines[i + 1])) {
      const rows = [line, lines[i + 1]];
      i += 2;
      while (i < lines.length && !isBlank(lines[i]) && lines[i].includes("|")) {
        rows.push(lines[i]);
        i++;
      }
      renderTable(doc, rows, parent);
      continue;
    }
    const paragraph = [line.trim()];
    i++;
    while (i < lines.length && !isBlank(lines[i]) && !startsBlock(lines, i)) {
      paragraph.push(lines[i].trim());
      i++;
    }
    const p = el(doc, "p");
    inline(doc, paragraph.join("\n"), p);
    parent.appendChild(p);
  }
}

// Inline spans, tried at a special character; each returns [end index, node] or null.
const LINK = /!?\[((?:[^\[\]\\]|\\.)*)\]\(\s*<?([^\s<>()]*(?:\([^\s<>()]*\)[^\s<>()]*)*)>?(?:\s+"[^"]*")?\s*\)/y;
const BARE_URL = /https?:\/\/[^\s<>"'`]*[^\s<>"'`.,;:!?)\]]/y;
const PUNCTUATION = /[!-\/:-@\[-`{-~]/;

function link(doc, text, href, parent) {
  if (SAFE_URL.test(href)) {
    const a = el(doc, "a");
    a.href = href;
    a.rel = "noopener noreferrer nofollow";
    a.target = "_blank";
    if (text) inline(doc, text, a, true);
    else a.textContent = href;
    parent.appendChild(a);
  } else {
    inline(doc, text, parent, true);
  }
}

function closes(text, close, marker) {
  const doubled = marker.length === 1 && (text[close + 1] === marker || text[close - 1] === marker);
  const wordAfter = marker[0] === "_" && /[\p{L}\p{N}]/u.test(text[close + marker.length] || "");
  return !/\s/.test(text[close - 1]) && !doubled && !wordAfter;
}

// `marker`…`marker` from `i`, with content that neither starts nor ends with a space: the
// closing marker's index, or -1. Whether a marker closes does not depend on where its opener
// is, so `found` (per text and marker) remembers the last answer, and a text full of openers
// that never close is scanned once, not once per opener.
function delimited(text, i, marker, found) {
  const open = i + marker.length;
  if (open >= text.length || /\s/.test(text[open])) return -1;
  const from = open + 1;
  const known = found.get(marker);
  if (known && known.from <= from && (known.close === -1 || known.close >= from)) return known.close;
  let close = text.indexOf(marker, from);
  while (close !== -1 && !closes(text, close, marker)) close = text.indexOf(marker, close + 1);
  found.set(marker, { from, close });
  return close;
}

// `inLink`: inside a link's text, where no further link may start.
function inline(doc, text, parent, inLink = false, depth = 0) {
  if (depth > MAX_DEPTH) {
    parent.appendChild(doc.createTextNode(text));
    return;
  }
  const found = new Map();
  let plain = "";
  const flush = () => {
    if (!plain) return;
    const parts = plain.split("\n");
    parts.forEach((part, n) => {
      if (n > 0) parent.appendChild(el(doc, "br"));
      if (part) parent.appendChild(doc.createTextNode(part));
    });
    plain = "";
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && PUNCTUATION.test(text[i + 1] || "")) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "`") {
      let run = 1;
      while (text[i + run] === "`") run++;
      const fence = "`".repeat(run);
      let close = text.indexOf(fence, i + run);
      while (close !== -1 && text[close + run] === "`") close = text.indexOf(fence, close + run + 1);
      if (close !== -1) {
        flush();
        const code = el(doc, "code");
        let content = text.slice(i + run, close).replace(/\n/g, " ");
        if (content.length > 2 && content.startsWith(" ") && content.endsWith(" ")) content = content.slice(1, -1);
        code.textContent = content;
        parent.appendChild(code);
        i = close + run;
        continue;
      }
      plain += fence;
      i += run;
      continue;
    }
    if (!inLink && (c === "[" || (c === "!" && text[i + 1] === "["))) {
      LINK.lastIndex = i;
      const match = LINK.exec(text);
      if (match) {
        flush();
        link(doc, match[1], match[2], parent);
        i = LINK.lastIndex;
        continue;
      }
    }
    if (!inLink && c === "h" && (i === 0 || !/[\p{L}\p{N}]/u.test(text[i - 1]))) {
      BARE_URL.lastIndex = i;
      const match = BARE_URL.exec(text);
      if (match) {
        flush();
        link(doc, "", match[0], parent);
        i = BARE_URL.lastIndex;
        continue;
      }
    }
    const pair = text.slice(i, i + 2);
    if (pair === "**" || pair === "__" || pair === "~~") {
      const close = delimited(text, i, pair, found);
      if (close !== -1 && (pair !== "__" || i === 0 || !/[\p{L}\p{N}]/u.test(text[i - 1]))) {
        flush();
        const node = el(doc, pair === "~~" ? "del" : "strong");
        inline(doc, text.slice(i + 2, close), node, inLink, depth + 1);
        parent.appendChild(node);
        i = close + 2;
        continue;
      }
    } else if (c === "*" || (c === "_" && (i === 0 || !/[\p{L}\p{N}]/u.test(text[i - 1])))) {
      const close = delimited(text, i, c, found);
      if (close !== -1) {
        flush();
        const node = el(doc, "em");
        inline(doc, text.slice(i + 1, close), node, inLink, depth + 1);
        parent.appendChild(node);
        i = close + 1;
        continue;
      }
    }
    plain += c;
    i++;
  }
  flush();
}

/** The Markdown `source` as a DocumentFragment of plain DOM nodes (see the top of this file). */
export function renderMarkdown(source, doc = document) {
  const fragment = doc.createDocumentFragment();
  blocks(doc, String(source).replace(/\r\n?/g, "\n").replace(/\t/g, "    ").split("\n"), fragment);
  return fragment;
}
