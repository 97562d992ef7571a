// The web page: one HTML document and one script, served by the handler itself (no build step,
// no frontend dependency). It uses only the JSON API: snapshots with filters, folder browsing,
// preview and download of files, folders as tar, the diff of two snapshots, and find by name.
// Everything from the repository is put in the page as text (textContent), never as HTML.

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Stowage</title>
<link rel="icon" href="favicon.ico">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
  header { background: #1d2330; color: #fff; padding: 10px 18px; display: flex; gap: 18px; align-items: center; }
  header h1 { font-size: 17px; margin: 0; font-weight: 600; }
  header a { color: #cfe0ff; text-decoration: none; }
  main { padding: 14px 18px; }
  form { display: flex; gap: 8px; flex-wrap: wrap; margin-bottom: 12px; align-items: center; }
  input, select, button { font: inherit; padding: 4px 8px; border: 1px solid #b9c0cc; border-radius: 4px; background: #fff; }
  button { cursor: pointer; background: #2f6fdf; color: #fff; border-color: #2f6fdf; }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid #e4e7ec; white-space: nowrap; }
  th { background: #eef1f5; font-weight: 600; }
  td.name { white-space: normal; word-break: break-all; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  a { color: #2f6fdf; }
  .crumbs { margin: 6px 0 10px; font-size: 15px; }
  .muted { color: #6b7383; }
  .error { color: #b3261e; font-weight: 600; }
  .tag { display: inline-block; background: #e6eefc; border-radius: 3px; padding: 0 5px; margin-right: 3px; }
  .mod-plus { color: #1a7f37; } .mod-minus { color: #b3261e; } .mod-m { color: #9a6700; }
</style>
</head>
<body>
<header><h1>Stowage</h1><a href="#/">Snapshots</a><a href="#/diff">Diff</a><a href="#/find">Find</a><span id="status" class="muted"></span></header>
<main id="main"></main>
<script src="app.js"></script>
</body>
</html>
`;

export const PAGE_JS = String.raw`'use strict';
(function () {
  var main = document.getElementById('main');
  var statusLine = document.getElementById('status');

  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k === 'class') e.className = attrs[k];
      else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c == null) continue;
      e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  // Node names are Go strings: a byte of invalid UTF-8 is the lone surrogate U+DC00+byte.
  function encName(name) {
    var out = '';
    for (var i = 0; i < name.length; i++) {
      var c = name.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < name.length) { out += encodeURIComponent(name.slice(i, i + 2)); i++; }
      else if (c >= 0xdc00 && c <= 0xdfff) out += '%' + ((c - 0xdc00) & 0xff).toString(16).toUpperCase().padStart(2, '0');
      else out += encodeURIComponent(name[i]);
    }
    return out;
  }
  function encPath(parts) { return parts.map(encName).join('/'); }
  function splitPath(p) { return p.split('/').filter(function (x) { return x !== ''; }); }

  function api(path) {
    statusLine.textContent = 'loading…';
    return fetch('api' + path).then(function (r) {
      return r.json().then(function (body) {
        statusLine.textContent = '';
        if (!r.ok) throw new Error(body && body.error ? body.error.message : r.statusText);
        return body;
      });
    });
  }

  function size(n) {
    if (n == null) return '';
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + u[i];
  }
  function when(t) { return t ? t.replace('T', ' ').replace(/\.\d+/, '').replace(/([+-]\d\d:\d\d|Z)$/, ' $1') : ''; }
  function fail(e) { main.replaceChildren(el('p', { class: 'error', text: String(e.message || e) })); }

  var snapshotsCache = null;
  function snapshots() {
    if (!snapshotsCache) snapshotsCache = api('/snapshots').catch(function (e) { snapshotsCache = null; throw e; });
    return snapshotsCache;
  }

  function viewSnapshots(q) {
    var host = el('input', { name: 'host', placeholder: 'host', value: q.get('host') || '' });
    var tag = el('input', { name: 'tag', placeholder: 'tag (a,b = both)', value: q.get('tag') || '' });
    var path = el('input', { name: 'path', placeholder: 'path', value: q.get('path') || '' });
    var form = el('form', { id: 'filters', onsubmit: function (ev) {
      ev.preventDefault();
      var p = new URLSearchParams();
      if (host.value) p.set('host', host.value);
      if (tag.value) p.set('tag', tag.value);
      if (path.value) p.set('path', path.value);
      location.hash = '#/?' + p.toString();
    } }, host, tag, path, el('button', { type: 'submit', text: 'Filter' }));
    var qs = new URLSearchParams();
    ['host', 'tag', 'path'].forEach(function (k) { if (q.get(k)) qs.set(k, q.get(k)); });
    return api('/snapshots?' + qs.toString()).then(function (list) {
      var rows = list.slice().reverse().map(function (s) {
        return el('tr', { 'data-id': s.id },
          el('td', null, el('a', { href: '#/snap/' + s.short_id + '/', text: s.short_id })),
          el('td', { text: when(s.time) }),
          el('td', { text: s.hostname || '' }),
          el('td', null, el('span', null), (s.tags || []).map(function (t) { return el('span', { class: 'tag', text: t }); }).reduce(function (a, b) { a.appendChild(b); return a; }, el('span'))),
          el('td', { class: 'name', text: (s.paths || []).join(', ') }),
          el('td', { class: 'num', text: s.summary ? size(s.summary.total_bytes_processed) : '' }));
      });
      main.replaceChildren(form, el('table', { id: 'snapshots' },
        el('thead', null, el('tr', null, el('th', { text: 'ID' }), el('th', { text: 'Time' }), el('th', { text: 'Host' }), el('th', { text: 'Tags' }), el('th', { text: 'Paths' }), el('th', { text: 'Size' }))),
        el('tbody', null, rows.length ? null : el('tr', null, el('td', { colspan: '6', class: 'muted', text: 'No snapshot matches.' })))));
      var body = main.querySelector('tbody');
      rows.forEach(function (r) { body.appendChild(r); });
    });
  }

  function viewFolder(id, parts) {
    var base = 'api/snapshots/' + id;
    return api('/snapshots/' + id + '/ls/' + encPath(parts)).then(function (res) {
      var crumbs = el('div', { class: 'crumbs' }, el('a', { href: '#/snap/' + id + '/', text: id }));
      parts.forEach(function (p, i) {
        crumbs.appendChild(document.createTextNode(' / '));
        crumbs.appendChild(el('a', { href: '#/snap/' + id + '/' + encPath(parts.slice(0, i + 1)) + '/', text: p }));
      });
      if (!res.entries) {
        var url = base + '/file/' + encPath(parts);
        main.replaceChildren(crumbs, el('p', null, res.node.type + ', ' + size(res.node.size) + ', modified ' + when(res.node.mtime) + ' — ',
          el('a', { href: url, target: '_blank', text: 'open' }), ' · ', el('a', { href: url + '?download=1', text: 'download' })));
        return;
      }
      var search = el('input', { name: 'name', placeholder: 'find by name, e.g. *.txt' });
      var find = el('form', { id: 'find', onsubmit: function (ev) { ev.preventDefault(); location.hash = '#/find/' + id + '/' + encodeURIComponent(search.value); } },
        search, el('button', { type: 'submit', text: 'Find' }),
        el('a', { id: 'tar', href: base + '/tar/' + encPath(parts), text: 'Download folder (tar)' }),
        el('a', { id: 'zip', href: base + '/zip/' + encPath(parts), text: '(zip)' }));
      var rows = res.entries.map(function (e) {
        var p = parts.concat([e.name]);
        var link = e.type === 'dir' ? el('a', { href: '#/snap/' + id + '/' + encPath(p) + '/', text: e.name + '/' })
          : e.type === 'file' ? el('a', { href: base + '/file/' + encPath(p), target: '_blank', text: e.name })
          : el('span', { text: e.name + (e.linktarget ? ' → ' + e.linktarget : '') });
        var action = e.type === 'file' ? el('a', { href: base + '/file/' + encPath(p) + '?download=1', text: 'download' })
          : e.type === 'dir' ? el('a', { href: base + '/tar/' + encPath(p), text: 'tar' }) : el('span');
        return el('tr', null, el('td', { class: 'name' }, link), el('td', { class: 'num', text: e.type === 'file' ? size(e.size) : '' }),
          el('td', { text: when(e.mtime) }), el('td', { text: e.mode }), el('td', null, action));
      });
      var table = el('table', { id: 'entries' }, el('thead', null, el('tr', null, el('th', { text: 'Name' }), el('th', { text: 'Size' }), el('th', { text: 'Modified' }), el('th', { text: 'Mode' }), el('th'))), el('tbody'));
      rows.forEach(function (r) { table.tBodies[0].appendChild(r); });
      main.replaceChildren(crumbs, find, table);
    });
  }

  function viewDiff(a, b) {
    return snapshots().then(function (list) {
      function pick(name, value) {
        var s = el('select', { name: name });
        list.slice().reverse().forEach(function (x) { s.appendChild(el('option', { value: x.short_id, text: x.short_id + '  ' + when(x.time) + '  ' + (x.hostname || '') })); });
        if (value) s.value = value;
        return s;
      }
      var from = pick('from', a || (list.length > 1 ? list[list.length - 2].short_id : ''));
      var to = pick('to', b);
      var form = el('form', { id: 'diff', onsubmit: function (ev) { ev.preventDefault(); location.hash = '#/diff/' + from.value + '/' + to.value; } },
        'from', from, 'to', to, el('button', { type: 'submit', text: 'Compare' }));
      main.replaceChildren(form);
      if (!a || !b) return;
      return api('/diff?from=' + a + '&to=' + b).then(function (d) {
        var cls = { '+': 'mod-plus', '-': 'mod-minus' };
        var table = el('table', { id: 'changes' }, el('tbody'));
        d.changes.forEach(function (c) {
          table.tBodies[0].appendChild(el('tr', null, el('td', { class: cls[c.modifier] || 'mod-m', text: c.modifier }), el('td', { class: 'name', text: c.path })));
        });
        main.appendChild(el('p', { id: 'diff-summary', text: d.totalChanges + ' changes: ' + d.added.files + ' files added, ' + d.removed.files + ' removed, ' + d.changedFiles + ' changed' + (d.truncated ? ' (list truncated)' : '') }));
        main.appendChild(table);
      });
    });
  }

  function viewFind(id, pattern) {
    var input = el('input', { name: 'name', placeholder: 'name pattern, e.g. *.conf', value: pattern || '' });
    var form = el('form', { id: 'find', onsubmit: function (ev) { ev.preventDefault(); location.hash = '#/find/' + (id || '') + '/' + encodeURIComponent(input.value); } },
      input, el('button', { type: 'submit', text: 'Find' }), el('span', { class: 'muted', text: id ? 'in snapshot ' + id : 'in all snapshots' }));
    main.replaceChildren(form);
    if (!pattern) return;
    return api('/find?name=' + encodeURIComponent(pattern) + (id ? '&snapshot=' + id : '')).then(function (r) {
      var table = el('table', { id: 'hits' }, el('tbody'));
      r.hits.forEach(function (h) {
        var parts = splitPath(h.path);
        var short = h.snapshot.slice(0, 8);
        var href = h.type === 'dir' ? '#/snap/' + short + '/' + encPath(parts) + '/' : '#/snap/' + short + '/' + encPath(parts.slice(0, -1)) + '/';
        table.tBodies[0].appendChild(el('tr', null, el('td', { text: short }), el('td', { class: 'name' }, el('a', { href: href, text: h.path })), el('td', { class: 'num', text: h.type === 'file' ? size(h.size) : h.type })));
      });
      main.appendChild(el('p', { id: 'find-summary', text: r.hits.length + (r.truncated ? '+' : '') + ' found' }));
      main.appendChild(table);
    });
  }

  function route() {
    var h = location.hash.replace(/^#/, '') || '/';
    var q = new URLSearchParams(h.indexOf('?') >= 0 ? h.slice(h.indexOf('?') + 1) : '');
    var path = h.split('?')[0];
    var m;
    var done;
    if ((m = /^\/snap\/([0-9a-f]+|latest)\/(.*)$/.exec(path))) done = viewFolder(m[1], splitPath(m[2]).map(decodeSeg));
    else if ((m = /^\/diff(?:\/([0-9a-f]+)\/([0-9a-f]+))?$/.exec(path))) done = viewDiff(m[1], m[2]);
    else if ((m = /^\/find(?:\/([0-9a-f]*)\/(.*))?$/.exec(path))) done = viewFind(m[1], m[2] ? decodeURIComponent(m[2]) : '');
    else done = viewSnapshots(q);
    Promise.resolve(done).then(function () { document.body.setAttribute('data-ready', h); }, fail);
  }
  // A segment back to a Go string: %XX bytes that are not UTF-8 become U+DC00+byte.
  function decodeSeg(s) {
    try { return decodeURIComponent(s); } catch (e) {
      return s.replace(/%([0-9A-Fa-f]{2})/g, function (_, x) { return String.fromCharCode(0xdc00 + parseInt(x, 16)); });
    }
  }
  window.addEventListener('hashchange', function () { document.body.removeAttribute('data-ready'); route(); });
  route();
})();
`;
