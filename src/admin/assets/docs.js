// Renders /openapi.json (the admin API, OpenAPI 3.1, generated from the handlers) and
// /openapi-proxy.json (the proxy port's routes) as one readable page: operations grouped by
// tag, parameters, request and response schemas. No dependencies.
'use strict';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

// A schema as an indented, JSON-like outline with types; `$ref`s are followed (once per path).
function outline(schema, doc, depth = 0, seen = new Set()) {
  const pad = '  '.repeat(depth);
  if (!schema) return 'any';
  if (schema.$ref) {
    const name = schema.$ref.split('/').pop();
    if (seen.has(name)) return name;
    const target = doc.components?.schemas?.[name];
    return target ? outline(target, doc, depth, new Set([...seen, name])) : name;
  }
  for (const key of ['oneOf', 'anyOf', 'allOf']) {
    if (schema[key]) {
      const parts = schema[key].map((s) => outline(s, doc, depth, seen)).filter((p) => p !== 'null');
      return parts.join(key === 'allOf' ? ' & ' : ' | ') + (schema[key].some((s) => s.type === 'null') ? ' | null' : '');
    }
  }
  const types = [].concat(schema.type || []);
  const nullable = types.includes('null') ? ' | null' : '';
  const type = types.filter((t) => t !== 'null')[0];
  if (type === 'array') return `[${outline(schema.items, doc, depth, seen)}]${nullable}`;
  if (type === 'object' || schema.properties) {
    const props = Object.entries(schema.properties || {});
    if (!props.length) {
      return schema.additionalProperties ? `{ string: ${outline(schema.additionalProperties, doc, depth, seen)} }${nullable}` : `object${nullable}`;
    }
    const required = new Set(schema.required || []);
    const lines = props.map(([k, v]) => {
      const note = v.description ? `  // ${v.description.split('\n')[0]}` : '';
      return `${pad}  ${k}${required.has(k) ? '' : '?'}: ${outline(v, doc, depth + 1, seen)}${note}`;
    });
    return `{\n${lines.join('\n')}\n${pad}}${nullable}`;
  }
  const fmt = schema.format ? ` (${schema.format})` : '';
  const en = schema.enum ? ` = ${schema.enum.map((x) => JSON.stringify(x)).join(' | ')}` : '';
  return `${type || 'any'}${fmt}${en}${nullable}`;
}

function content(c, doc) {
  const box = el('div');
  for (const [mime, media] of Object.entries(c || {})) {
    box.append(el('div', 'count', mime));
    const text = media.example !== undefined ? `${outline(media.schema, doc)}\n\nexample: ${JSON.stringify(media.example, null, 2)}` : outline(media.schema, doc);
    box.append(el('pre', 'schema', text));
  }
  return box;
}

function operation(path, method, op, doc) {
  const d = el('details', 'op');
  const s = el('summary');
  const open = Array.isArray(op.security) && op.security.every((r) => Object.keys(r).length === 0);
  const schemes = (op.security || doc.security || []).flatMap((r) => Object.keys(r));
  const lock = open ? 'open' : schemes.includes('gateway_key') ? 'gateway key' : 'token or session';
  s.append(el('span', `method ${method}`, method.toUpperCase()), el('span', 'path', path), el('span', 'sum', op.summary || op.description || ''), el('span', 'lock', lock));
  d.append(s);
  const body = el('div', 'body');
  if (op.description) body.append(el('p', null, op.description));
  if (op.parameters?.length) {
    body.append(el('h4', null, 'Parameters'));
    const t = el('table');
    const head = el('tr');
    head.append(el('th', null, 'name'), el('th', null, 'in'), el('th', null, 'type'), el('th', null, 'description'));
    t.append(head);
    for (const p of op.parameters) {
      const r = el('tr');
      r.append(el('td', null, p.name + (p.required ? '' : '?')), el('td', null, p.in), el('td', null, outline(p.schema, doc)), el('td', null, p.description || ''));
      t.append(r);
    }
    body.append(t);
  }
  if (op.requestBody) {
    body.append(el('h4', null, 'Request body'), content(op.requestBody.content, doc));
  }
  body.append(el('h4', null, 'Responses'));
  for (const [code, r] of Object.entries(op.responses || {})) {
    const line = el('p');
    line.append(el('span', `pill ${code.startsWith('2') ? 'ok' : 'error'}`, code), document.createTextNode(' ' + (r.description || '')));
    body.append(line);
    if (r.content) body.append(content(r.content, doc));
  }
  d.append(body);
  return d;
}

function render(doc, main) {
  main.append(el('h1', null, `${doc.info.title} ${doc.info.version}`));
  main.append(el('p', 'intro', doc.info.description || ''));
  const byTag = new Map((doc.tags || []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const m of METHODS) {
      if (!item[m]) continue;
      const tag = item[m].tags?.[0] || 'other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([path, m, item[m]]);
    }
  }
  const tagInfo = new Map((doc.tags || []).map((t) => [t.name, t.description]));
  for (const [tag, ops] of byTag) {
    if (!ops.length) continue;
    const h = el('h2', 'tag', tag);
    main.append(h);
    if (tagInfo.get(tag)) main.append(el('p', 'intro', tagInfo.get(tag)));
    for (const [path, m, op] of ops) main.append(operation(path, m, op, doc));
  }
}

document.addEventListener('DOMContentLoaded', async () => {
  const saved = localStorage.getItem('gatehouse-theme');
  const dark = saved ? saved === 'dark' : matchMedia('(prefers-color-scheme: dark)').matches;
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
  const main = document.getElementById('docs');
  main.replaceChildren();
  for (const [url, id] of [['/openapi.json', 'admin-api'], ['/openapi-proxy.json', 'proxy-api']]) {
    const section = el('section');
    section.id = id;
    main.append(section);
    try {
      const rsp = await fetch(url);
      if (!rsp.ok) throw new Error(`HTTP ${rsp.status}`);
      render(await rsp.json(), section);
    } catch (e) {
      section.append(el('p', 'error', `Could not load ${url}: ${e.message}`));
    }
  }
});
