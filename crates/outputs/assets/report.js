// pyrometer HTML report. Reads the JSON in #pyrometer-data and builds the
// page. Every string from the profile reaches the DOM as text (textContent,
// append of strings, setAttribute): never as markup.
(function () {
  'use strict';

  var errors = [];
  window.addEventListener('error', function (e) {
    errors.push(String(e && e.message ? e.message : e));
  });

  var SVGNS = 'http://www.w3.org/2000/svg';
  var STATE_NAMES = ['Python', 'native', 'waiting for GIL', 'idle'];
  var STATE_CLASSES = ['s-py', 's-native', 's-gil', 's-idle'];
  var ROW = 18;

  // ---------------------------------------------------------------- helpers

  function h(tag, props) {
    var e = document.createElement(tag);
    setProps(e, props);
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c !== null && c !== undefined) e.append(c);
    }
    return e;
  }

  function s(tag, props) {
    var e = document.createElementNS(SVGNS, tag);
    setProps(e, props);
    return e;
  }

  function setProps(e, props) {
    if (!props) return;
    Object.keys(props).forEach(function (k) {
      var v = props[k];
      if (v === null || v === undefined || v === false) return;
      if (k === 'text') e.textContent = String(v);
      else if (k === 'class') e.setAttribute('class', v);
      else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    });
  }

  function sum(a) {
    var t = 0;
    for (var i = 0; i < a.length; i++) t += a[i];
    return t;
  }

  function fmtInt(n) {
    return Number(n).toLocaleString('en-US');
  }

  function pct(n, d) {
    if (!d) return '–';
    var p = 100 * n / d;
    if (p === 0) return '0 %';
    if (p < 0.01) return '<0.01 %';
    if (p < 10) return p.toFixed(2) + ' %';
    return p.toFixed(1) + ' %';
  }

  function fmtSecs(x) {
    if (x === null || x === undefined) return '–';
    if (x < 1) return (x * 1000).toFixed(0) + ' ms';
    if (x < 120) return x.toFixed(2) + ' s';
    var m = Math.floor(x / 60);
    return m + ' min ' + (x - 60 * m).toFixed(0) + ' s';
  }

  function fmtRate(x) {
    if (x === null || x === undefined) return '–';
    return (x >= 100 ? x.toFixed(0) : x.toFixed(1)) + ' Hz';
  }

  function splitText(split) {
    var t = sum(split);
    var parts = [];
    split.forEach(function (n, i) {
      if (n) parts.push(STATE_NAMES[i] + ' ' + pct(n, t) + ' (' + fmtInt(n) + ')');
    });
    return parts.length ? parts.join(', ') : 'no samples';
  }

  function splitBar(split, big) {
    var t = sum(split);
    var bar = h('div', { class: big ? 'split big' : 'split', role: 'img' });
    split.forEach(function (n, i) {
      if (!n) return;
      var seg = h('span', { class: 'seg ' + STATE_CLASSES[i] });
      seg.style.width = (100 * n / t) + '%';
      bar.append(seg);
    });
    var text = splitText(split);
    bar.setAttribute('title', text);
    bar.setAttribute('aria-label', text);
    return bar;
  }

  function section(id, title) {
    var sec = h('section', { id: id }, h('h2', { text: title }));
    document.getElementById('main').append(sec);
    document.getElementById('nav').append(h('a', { href: '#' + id, text: title }));
    return sec;
  }

  // Warm colours, stable per function name.
  function hash(str) {
    var x = 2166136261;
    for (var i = 0; i < str.length; i++) {
      x ^= str.charCodeAt(i);
      x = Math.imul(x, 16777619);
    }
    return x >>> 0;
  }

  // ----------------------------------------------------------------- data

  var data = JSON.parse(document.getElementById('pyrometer-data').textContent);
  var meta = data.meta;
  var shown = meta.shown_samples;

  // --------------------------------------------------------------- header

  function renderHeader() {
    var hd = document.getElementById('header');
    hd.append(h('h1', { text: data.title }));
    var dl = h('dl', { class: 'meta' });
    function item(k, v, tip, wide) {
      dl.append(h('div', { class: wide ? 'kv wide' : 'kv', title: tip },
        h('dt', { text: k }), h('dd', { text: v })));
    }
    item('Target', meta.target || '–', null, true);
    item('Python', meta.python_version || 'unknown');
    item('Duration', fmtSecs(meta.duration_s));
    item('Rate', fmtRate(meta.rate_achieved) + ' achieved / ' + fmtRate(meta.rate_requested) + ' requested',
      fmtInt(meta.ticks) + ' ticks, ' + fmtInt(meta.late_ticks) + ' skipped as late');
    item('Samples', fmtInt(meta.samples) + ' thread samples',
      fmtInt(meta.ticks) + ' ticks; one sample per thread per tick');
    item('Errors', fmtInt(meta.errors) + ' (' + pct(meta.errors, meta.ticks) + ' of ticks)',
      'ticks dropped because a read of the target failed or was torn');
    if (meta.late_ticks) item('Late ticks', fmtInt(meta.late_ticks), 'ticks skipped because the sampler was late');
    if (meta.truncated_samples) item('Cut stacks', fmtInt(meta.truncated_samples), 'samples whose stack was deeper than --max-depth');
    hd.append(dl);

    var totals = data.state_totals;
    var all = sum(totals);
    hd.append(h('div', { class: 'note', text: 'Time by thread state (every sample of every thread)' }));
    hd.append(splitBar(totals, true));
    var legend = h('div', { class: 'legend', id: 'state-legend' });
    totals.forEach(function (n, i) {
      var sw = h('span', { class: 'sw ' + STATE_CLASSES[i] });
      legend.append(h('span', { title: fmtInt(n) + ' samples' }, sw, STATE_NAMES[i] + ' ', h('b', { text: pct(n, all) })));
    });
    hd.append(legend);
    var scope = 'The tables and the flame graph count ' + fmtInt(shown) + ' samples';
    if (!meta.include_idle && totals[3]) scope += ' (idle samples left out: record with --idle to include them)';
    if (meta.no_python_samples) scope += '; ' + fmtInt(meta.no_python_samples) + ' of them had no Python frames';
    hd.append(h('p', { class: 'note', text: scope + '. Percentages are of these ' + fmtInt(shown) + ' samples.' }));
  }

  // --------------------------------------------------------------- tables

  function cmp(a, b) {
    if (Array.isArray(a) && Array.isArray(b)) {
      for (var i = 0; i < a.length && i < b.length; i++) {
        var c = cmp(a[i], b[i]);
        if (c) return c;
      }
      return a.length - b.length;
    }
    if (typeof a === 'number' && typeof b === 'number') return a - b;
    a = String(a); b = String(b);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  // columns: { label, title, num, get(row) (null: not sortable; arrays
  // compare element by element), first (1: ascending on the first click;
  // default: numbers descending, text ascending), cell(row, td) }
  function sortableTable(id, columns, rows, sortCol, sortDir) {
    rows.forEach(function (r, i) { r.__i = i; });
    var table = h('table', { class: 'data', id: id });
    var tr = h('tr');
    var ths = columns.map(function (col, ci) {
      var th;
      if (col.get) {
        th = h('th', { scope: 'col', class: col.num ? 'num' : null, 'aria-sort': 'none', 'data-col': ci },
          h('button', { type: 'button', text: col.label, title: col.title || ('Sort by ' + col.label),
            onclick: function () { sortBy(ci); } }));
      } else {
        th = h('th', { scope: 'col', class: 'nosort', title: col.title, text: col.label });
      }
      tr.append(th);
      return th;
    });
    table.append(h('thead', null, tr));
    var tbody = h('tbody');
    table.append(tbody);
    var state = { col: -1, dir: 1 };

    function render() {
      var frag = document.createDocumentFragment();
      rows.forEach(function (row) {
        var r = h('tr');
        columns.forEach(function (col) {
          var td = h('td', { class: col.num ? 'num' : null });
          if (col.get) td.setAttribute('data-v', JSON.stringify(col.get(row)));
          col.cell(row, td);
          r.append(td);
        });
        frag.append(r);
      });
      tbody.replaceChildren(frag);
    }

    function sortBy(ci, dir) {
      var col = columns[ci];
      if (dir === undefined) dir = state.col === ci ? -state.dir : (col.first || (col.num ? -1 : 1));
      state = { col: ci, dir: dir };
      rows.sort(function (a, b) {
        return dir * cmp(col.get(a), col.get(b)) || a.__i - b.__i;
      });
      ths.forEach(function (th, i) {
        if (columns[i].get) th.setAttribute('aria-sort', i === ci ? (dir > 0 ? 'ascending' : 'descending') : 'none');
      });
      table.setAttribute('data-sort', ci + (dir > 0 ? ':asc' : ':desc'));
      render();
    }

    sortBy(sortCol, sortDir);
    return h('div', { class: 'tablebox' }, table);
  }

  function textCell(text, title, cls) {
    return function (row, td) {
      td.textContent = text(row);
      if (title) td.setAttribute('title', title(row));
      if (cls) td.className = (td.className ? td.className + ' ' : '') + cls;
    };
  }

  function pctCell(key, heatMax) {
    return function (row, td) {
      var n = row[key];
      td.textContent = pct(n, shown);
      td.setAttribute('title', fmtInt(n) + ' samples');
      if (heatMax && n > 0) {
        var r = n / heatMax;
        td.style.background = 'rgba(234, 88, 12, ' + (0.06 + 0.6 * r).toFixed(3) + ')';
        if (r > 0.25) td.className += ' hot';
      }
    };
  }

  function splitCell(row, td) {
    td.className = 'splitcell';
    td.append(splitBar(row.split, false));
  }

  function countNote(what, shownRows, total) {
    if (total <= shownRows) return h('p', { class: 'note', text: fmtInt(total) + ' ' + what + '.' });
    return h('p', { class: 'note', text: 'The ' + fmtInt(shownRows) + ' hottest of ' + fmtInt(total) + ' ' + what + '.' });
  }

  function maxOf(rows, key) {
    var m = 0;
    rows.forEach(function (r) { if (r[key] > m) m = r[key]; });
    return m;
  }

  function renderLines() {
    var rows = data.lines.rows;
    var sec = section('lines', 'Hot lines');
    if (!rows.length) { sec.append(h('p', { class: 'empty', text: 'No samples with Python frames.' })); return; }
    sec.append(countNote('lines with samples', rows.length, data.lines.total));
    sec.append(h('p', { class: 'note', text: 'Own: samples whose innermost frame is at the line. Total: samples with the line anywhere on their stack. ' +
      'State split: of the total. Source as read from disk when the report was written.' }));
    var heat = maxOf(rows, 'own');
    sec.append(sortableTable('lines-table', [
      { label: 'File', get: function (r) { return [r.short, r.path, r.line]; },
        cell: textCell(function (r) { return r.short; }, function (r) { return r.path; }, 'file') },
      { label: 'Line', num: true, first: 1, get: function (r) { return r.line; },
        cell: textCell(function (r) { return r.line > 0 ? String(r.line) : '?'; }) },
      { label: 'Source', get: function (r) { return r.src === null ? '' : r.src.trim(); },
        cell: function (r, td) {
          td.className = 'src';
          if (r.src === null) { td.textContent = '—'; td.classList.add('muted'); td.setAttribute('title', 'source not readable at report time'); }
          else { td.textContent = r.src; td.setAttribute('title', r.src); }
        } },
      { label: 'Own %', num: true, get: function (r) { return r.own; }, cell: pctCell('own', heat) },
      { label: 'Total %', num: true, get: function (r) { return r.total; }, cell: pctCell('total', 0) },
      { label: 'State split', title: 'Python / native / waiting for GIL / idle, of the total', cell: splitCell }
    ], rows, 3, -1));
  }

  function renderFunctions() {
    var rows = data.functions.rows;
    var sec = section('functions', 'Functions');
    if (!rows.length) { sec.append(h('p', { class: 'empty', text: 'No samples with Python frames.' })); return; }
    sec.append(countNote('functions with samples', rows.length, data.functions.total));
    var heat = maxOf(rows, 'own');
    sec.append(sortableTable('functions-table', [
      { label: 'Function', get: function (r) { return r.name; },
        cell: textCell(function (r) { return r.name; }, function (r) { return r.name; }, 'name') },
      { label: 'File', get: function (r) { return [r.short, r.path, r.first_line]; },
        cell: textCell(function (r) { return r.short; }, function (r) { return r.path; }, 'file') },
      { label: 'First line', num: true, first: 1, get: function (r) { return r.first_line; },
        cell: textCell(function (r) { return r.first_line > 0 ? String(r.first_line) : '?'; }) },
      { label: 'Own %', num: true, get: function (r) { return r.own; }, cell: pctCell('own', heat) },
      { label: 'Total %', num: true, get: function (r) { return r.total; }, cell: pctCell('total', 0) },
      { label: 'State split', title: 'Python / native / waiting for GIL / idle, of the total', cell: splitCell }
    ], rows, 3, -1));
  }

  function renderThreads() {
    var rows = data.threads.rows;
    var sec = section('threads', 'Threads');
    if (!rows.length) { sec.append(h('p', { class: 'empty', text: 'No threads were sampled.' })); return; }
    sec.append(countNote('threads', rows.length, data.threads.total));
    var all = meta.samples;
    sec.append(sortableTable('threads-table', [
      { label: 'Thread', get: function (r) { return r.label; }, cell: textCell(function (r) { return r.label; }, null, 'name') },
      { label: 'PID', num: true, first: 1, get: function (r) { return r.pid; }, cell: textCell(function (r) { return String(r.pid); }) },
      { label: 'Samples', num: true, get: function (r) { return r.samples; }, cell: textCell(function (r) { return fmtInt(r.samples); }) },
      { label: '% of samples', num: true, get: function (r) { return r.samples; }, cell: textCell(function (r) { return pct(r.samples, all); }) },
      { label: 'State split', title: 'Python / native / waiting for GIL / idle (idle included)', cell: splitCell }
    ], rows, 2, -1));
  }

  function renderProcesses() {
    var rows = data.processes.rows;
    if (rows.length < 2) return;
    var sec = section('processes', 'Processes');
    sec.append(countNote('processes', rows.length, data.processes.total));
    var all = meta.samples;
    sec.append(sortableTable('processes-table', [
      { label: 'PID', num: true, first: 1, get: function (r) { return r.pid; }, cell: textCell(function (r) { return String(r.pid); }) },
      { label: 'Command line', get: function (r) { return r.cmdline; }, cell: textCell(function (r) { return r.cmdline; }, null, 'cmd') },
      { label: 'Threads', num: true, get: function (r) { return r.threads; }, cell: textCell(function (r) { return fmtInt(r.threads); }) },
      { label: 'Samples', num: true, get: function (r) { return r.samples; }, cell: textCell(function (r) { return fmtInt(r.samples); }) },
      { label: '% of samples', num: true, get: function (r) { return r.samples; }, cell: textCell(function (r) { return pct(r.samples, all); }) },
      { label: 'State split', cell: splitCell }
    ], rows, 3, -1));
  }

  // Web endpoints with their request statistics (absent when none). A
  // click on an endpoint shows its own flame graph.
  function renderEndpoints() {
    var rows = data.endpoints || [];
    if (!rows.length) return;
    var sec = section('endpoints', 'Endpoints');
    var total = 0;
    rows.forEach(function (r) { total += r.samples || 0; });
    sec.append(h('p', { class: 'note', text: 'Samples of threads serving a request, by endpoint. Latencies are estimated from the samples ' +
      'that saw each request (first to last, plus one sampling period). Click an endpoint to see its flame graph.' }));
    function nameCell(r, td) {
      td.className = 'name';
      if (r.flame) {
        td.append(h('button', { type: 'button', class: 'link endpoint-link', text: r.name, title: 'Show the flame graph of ' + r.name,
          onclick: function () { showEndpoint(r); } }));
      } else {
        td.textContent = r.name;
        td.setAttribute('title', 'no flame graph of its own: not among the busiest endpoints');
      }
    }
    var cols = [
      { label: 'Endpoint', get: function (r) { return r.name; }, cell: nameCell },
      { label: 'Samples', num: true, get: function (r) { return r.samples || 0; }, cell: textCell(function (r) { return fmtInt(r.samples || 0); }) },
      { label: '% of samples', num: true, get: function (r) { return r.samples || 0; }, cell: textCell(function (r) { return pct(r.samples || 0, total); }) }
    ];
    [['requests', 'Requests'], ['p50_ms', 'p50 ms'], ['p95_ms', 'p95 ms'], ['p99_ms', 'p99 ms'], ['max_ms', 'max ms']].forEach(function (k) {
      if (rows.some(function (r) { return typeof r[k[0]] === 'number'; })) {
        cols.push({ label: k[1], num: true, get: function (r) { return typeof r[k[0]] === 'number' ? r[k[0]] : -1; },
          cell: textCell(function (r) { return typeof r[k[0]] === 'number' ? (k[0] === 'requests' ? fmtInt(r[k[0]]) : r[k[0]].toFixed(1)) : '–'; }) });
      }
    });
    cols.push({ label: 'Categories', title: 'What kind of code the samples were in', cell: function (r, td) {
      td.className = 'cats';
      var n = r.samples || 0;
      (r.categories || []).slice(0, 4).forEach(function (c) {
        td.append(h('span', { class: 'cat', text: c[0] + ' ' + pct(c[1], n) }));
      });
    } });
    if (rows.some(function (r) { return r.split; })) {
      cols.push({ label: 'State split', cell: function (r, td) { if (r.split) splitCell(r, td); } });
    }
    sec.append(sortableTable('endpoints-table', cols, rows.slice(), 1, -1));
  }

  // Sampled allocations (record --memory; absent otherwise).
  function renderMemory() {
    var m = data.memory;
    if (!m) return;
    var sec = section('memory', 'Memory');
    var secs = Math.max(m.duration_s || 0, 1e-9);
    var mb = function (b) { return (b / 1e6).toFixed(1); };
    sec.append(h('p', { class: 'note', text: mb(m.total_bytes) + ' MB allocated (' + (m.total_bytes / 1e6 / secs).toFixed(2) +
      ' MB/s), estimated from one sample per ' + fmtInt(m.mean_bytes) + ' bytes on average; ' +
      pct(m.attributed_bytes, m.total_bytes) + ' attributed to a Python stack.' }));
    function table(id, title, rows) {
      if (!rows || !rows.length) return;
      sec.append(h('h3', { text: title }));
      sec.append(sortableTable(id, [
        { label: 'Site', get: function (r) { return r.label; }, cell: textCell(function (r) { return r.label; }, null, 'name') },
        { label: 'Allocated MB', num: true, get: function (r) { return r.alloc_bytes; }, cell: textCell(function (r) { return mb(r.alloc_bytes); }) },
        { label: '% allocated', num: true, get: function (r) { return r.alloc_bytes; }, cell: textCell(function (r) { return pct(r.alloc_bytes, m.total_bytes); }) },
        { label: 'MB/s', num: true, get: function (r) { return r.alloc_bytes; }, cell: textCell(function (r) { return (r.alloc_bytes / 1e6 / secs).toFixed(2); }) },
        { label: 'Live MB at end', num: true, get: function (r) { return r.live_bytes; }, cell: textCell(function (r) { return mb(r.live_bytes); }) }
      ], rows.slice(), 1, -1));
    }
    sec.append(h('h3', { text: 'Leak candidates' }));
    if (m.leaks && m.leaks.length) {
      sec.append(sortableTable('memory-leaks', [
        { label: 'Site', get: function (r) { return r.label; }, cell: textCell(function (r) { return r.label; }, null, 'name') },
        { label: 'Score', num: true, get: function (r) { return r.score; }, cell: textCell(function (r) { return r.score.toFixed(2); }) },
        { label: 'Live MB (peak)', num: true, get: function (r) { return r.live_bytes; }, cell: textCell(function (r) { return mb(r.live_bytes); }) },
        { label: 'Growth MB/s', num: true, get: function (r) { return r.growth_per_s; }, cell: textCell(function (r) { return (r.growth_per_s / 1e6).toFixed(2); }) }
      ], m.leaks.slice(), 1, -1));
    } else {
      sec.append(h('p', { class: 'note', text: 'None: no site\u2019s live bytes grew steadily through the run.' }));
    }
    table('memory-lines', 'Allocated by line', m.lines);
    table('memory-functions', 'Allocated by function', m.functions);
    table('memory-endpoints', 'Allocated by endpoint', m.endpoints);
    var series = m.series || [];
    if (series.length) {
      sec.append(h('h3', { text: 'Live sampled bytes over time (' + m.bucket_s + ' s buckets)' }));
      var W = 1000, H = 160, max = 1, n = 1;
      series.forEach(function (x) { n = Math.max(n, x.live.length); x.live.forEach(function (v) { max = Math.max(max, v); }); });
      var svg = s('svg', { class: 'timeline', viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', height: H });
      var colors = ['#2f7bd9', '#e8a33d', '#d9443b', '#3aa655', '#8e5bd6', '#c76f2a', '#4aa3b8', '#777777'];
      var legend = h('ul', { class: 'legend' });
      series.forEach(function (x, k) {
        var pts = x.live.map(function (v, i) { return (i * W / Math.max(n - 1, 1)).toFixed(1) + ',' + (H - H * v / max).toFixed(1); }).join(' ');
        var line = s('polyline', { points: pts, fill: 'none', stroke: colors[k % colors.length], 'stroke-width': 2 });
        var t = s('title');
        t.textContent = x.label + ': peak ' + mb(Math.max.apply(null, x.live)) + ' MB';
        line.append(t);
        svg.append(line);
        var li = h('li', { text: x.label });
        li.style.color = colors[k % colors.length];
        legend.append(li);
      });
      sec.append(h('div', { class: 'flamebox' }, svg));
      sec.append(legend);
    }
  }


  function showEndpoint(r) {
    if (!flame) return;
    flame.show(r.flame, r.name);
    var sec = document.getElementById('flame');
    if (sec.scrollIntoView) sec.scrollIntoView();
  }

  // Stacked bars, one per time bucket: `series` is [{ name, cls|fill,
  // counts: [per bucket] }].
  function stackedBars(id, series, width_s, buckets) {
    var W = 1000, H = 110;
    var max = 1;
    for (var b = 0; b < buckets; b++) {
      var t = 0;
      series.forEach(function (se) { t += se.counts[b] || 0; });
      if (t > max) max = t;
    }
    var svg = s('svg', { class: 'timeline', id: id, viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', height: H,
      'data-buckets': buckets, 'data-max': max });
    var bw = W / Math.max(buckets, 1);
    for (b = 0; b < buckets; b++) {
      var y = H;
      var g = s('g');
      var tip = [];
      series.forEach(function (se) {
        var c = se.counts[b] || 0;
        if (!c) return;
        tip.push(se.name + ' ' + fmtInt(c));
        var hgt = H * c / max;
        y -= hgt;
        g.append(s('rect', { x: (b * bw).toFixed(2), y: y.toFixed(2), width: Math.max(bw - 0.5, 0.5).toFixed(2), height: hgt.toFixed(2), fill: se.fill }));
      });
      if (!tip.length) continue;
      var title = s('title');
      title.textContent = fmtSecs(b * width_s) + '–' + fmtSecs((b + 1) * width_s) + ': ' + tip.join(', ');
      g.append(title);
      svg.append(g);
    }
    var legend = h('div', { class: 'legend' });
    series.forEach(function (se) {
      var sw = h('span', { class: 'sw' });
      sw.style.background = se.fill;
      legend.append(h('span', null, sw, se.name));
    });
    return h('div', null, h('div', { class: 'flamebox' }, svg), legend);
  }

  function renderTimeline() {
    var tl = data.timeline;
    if (!tl || !tl.states || !tl.states.length) return;
    var sec = section('timeline', 'Timeline');
    var buckets = tl.states.length;
    var per = tl.width_s === 1 ? 'second' : fmtSecs(tl.width_s);
    sec.append(h('p', { class: 'note', text: 'Samples per ' + per + ' of every thread (idle ones included), by thread state, then by process. ' +
      fmtInt(buckets) + ' buckets of ' + fmtSecs(tl.width_s) + '.' }));
    var fills = ['#2f7bd9', '#e8a33d', '#d9443b', '#b4bcc6'];
    sec.append(stackedBars('timeline-states', STATE_NAMES.map(function (name, k) {
      return { name: name, fill: fills[k], counts: tl.states.map(function (st) { return st[k]; }) };
    }), tl.width_s, buckets));
    var pfills = ['#0f766e', '#7c3aed', '#c2410c', '#2563eb', '#be185d', '#4d7c0f', '#a16207', '#475569', '#9ca3af'];
    sec.append(h('div', { class: 'note', text: 'By process' }));
    sec.append(stackedBars('timeline-processes', tl.processes.map(function (pr, k) {
      var cmd = pr.cmdline.length > 60 ? pr.cmdline.slice(0, 59) + '…' : pr.cmdline;
      return { name: pr.pid === null ? cmd : pr.pid + ' ' + cmd, fill: pfills[k % pfills.length], counts: pr.counts };
    }), tl.width_s, buckets));
  }

  // ----------------------------------------------------------- flame graph

  function Flame(sec, f) {
    var N, p, v, labels, n, depth, x, end, selfV, lower, otherLabel, matched;
    var zoom = 0;
    var scope = null;
    var self = this;

    // Lay out a flame graph's nodes (pre-order: parents first).
    function load(f) {
      N = f.p.length; p = f.p; v = f.v; labels = f.labels; n = f.n;
      depth = new Int32Array(N); x = new Float64Array(N);
      var next = new Float64Array(N);
      end = new Int32Array(N); selfV = new Float64Array(N);
      for (var i = 0; i < N; i++) {
        selfV[i] = v[i];
        end[i] = i + 1;
        if (p[i] >= 0) {
          depth[i] = depth[p[i]] + 1;
          x[i] = next[p[i]];
          next[p[i]] += v[i];
          selfV[p[i]] -= v[i];
        }
        next[i] = x[i];
      }
      for (i = N - 1; i > 0; i--) if (end[i] > end[p[i]]) end[p[i]] = end[i];
      lower = labels.map(function (l) { return l.toLowerCase(); });
      otherLabel = labels.indexOf('[other: frames under the size threshold]');
      matched = new Uint8Array(N);
      zoom = 0;
    }
    load(f);
    var allData = f;

    var input = h('input', { type: 'search', placeholder: 'Search functions and files', 'aria-label': 'Search the flame graph', id: 'flame-search' });
    var reset = h('button', { type: 'button', text: 'Reset zoom', id: 'flame-reset' });
    var allBtn = h('button', { type: 'button', text: 'Show every endpoint', id: 'flame-all', hidden: true });
    var info = h('span', { class: 'muted', id: 'flame-matches' });
    var crumbs = h('div', { class: 'crumbs', id: 'flame-crumbs' });
    sec.append(h('div', { class: 'toolbar' }, input, reset, allBtn, info));
    sec.append(crumbs);
    var svg = s('svg', { class: 'flame', id: 'flame-svg', role: 'img', 'aria-label': 'Flame graph' });
    var box = h('div', { class: 'flamebox' }, svg);
    sec.append(box);
    sec.append(h('p', { class: 'note', text: 'Callers above callees (icicle). Click a frame to zoom in, click an upper frame or Reset zoom to zoom out; Escape resets. ' +
      (f.pruned_nodes ? fmtInt(f.pruned_nodes) + ' frames with fewer than ' + fmtInt(f.threshold) + ' samples (' + pct(f.threshold, shown) +
        ') are merged into [other] nodes.' : 'Every frame is shown.') }));
    var tip = document.getElementById('tooltip');

    function color(i) {
      if (matched[i]) return '#d946ef';
      if (n[i] === otherLabel) return '#c9ced6';
      var l = labels[n[i]];
      if (p[i] < 0) return '#e7c9a3';
      if (l.slice(0, 7) === 'thread ' || l.slice(0, 8) === 'process ') return '#9ec5e8';
      var k = hash(l.replace(/:\d+\)$/, ')'));
      var hue = 8 + k % 42, sat = 78 + (k >> 8) % 17, light = 58 + (k >> 16) % 12;
      return 'hsl(' + hue + ',' + sat + '%,' + light + '%)';
    }

    function fit(label, w) {
      var chars = Math.floor((w - 6) / 6.7);
      if (chars < 3) return '';
      return label.length <= chars ? label : label.slice(0, chars - 1) + '…';
    }

    function draw(frag, i, px, pw, cls) {
      var g = s('g', { class: 'fn' + (cls ? ' ' + cls : ''), 'data-i': i, transform: 'translate(' + px.toFixed(2) + ',' + (depth[i] * ROW) + ')' });
      g.append(s('rect', { width: Math.max(pw, 0.5).toFixed(2), height: ROW - 1, fill: color(i) }));
      var t = fit(labels[n[i]], pw);
      if (t) {
        var te = s('text', { x: 4, y: ROW - 5 });
        te.textContent = t;
        g.append(te);
      }
      frag.append(g);
    }

    this.render = function () {
      var W = box.clientWidth || 1200;
      if (!N) { svg.replaceChildren(); crumbs.textContent = 'No samples with Python frames.'; allBtn.hidden = scope === null; return; }
      svg.setAttribute('width', W);
      var frag = document.createDocumentFragment();
      var deepest = depth[zoom];
      for (var a = zoom; a >= 0; a = p[a]) draw(frag, a, 0, W, a === zoom ? null : 'anc');
      var scale = W / v[zoom], zx = x[zoom];
      var i = zoom + 1;
      while (i < end[zoom]) {
        var pw = v[i] * scale;
        if (pw < 0.4) { i = end[i]; continue; }
        draw(frag, i, (x[i] - zx) * scale, pw, null);
        if (depth[i] > deepest) deepest = depth[i];
        i++;
      }
      var H = (deepest + 1) * ROW;
      svg.setAttribute('height', H);
      svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
      svg.replaceChildren(frag);
      var what = scope === null ? '' : 'Endpoint ' + scope + ': ';
      crumbs.textContent = what + (zoom === 0 ? 'Showing all ' + fmtInt(v[0]) + ' samples' :
        'Zoomed into ' + labels[n[zoom]] + ': ' + fmtInt(v[zoom]) + ' samples (' + pct(v[zoom], shown) + ')');
      sec.setAttribute('data-endpoint', scope === null ? '' : scope);
      svg.setAttribute('data-total', N ? v[0] : 0);
      allBtn.hidden = scope === null;
      svg.setAttribute('data-zoom', zoom);
      svg.setAttribute('data-nodes', svg.childNodes.length);
    };

    // Show another flame graph (an endpoint's), or the whole profile's
    // again (`fd` null).
    this.show = function (fd, name) {
      load(fd || allData);
      scope = fd ? name : null;
      self.search(input.value);
    };
    allBtn.addEventListener('click', function () { self.show(null); });

    this.zoomTo = function (i) {
      zoom = i;
      self.render();
    };

    this.search = function (q) {
      q = q.trim().toLowerCase();
      var total = 0, count = 0, covered = 0;
      for (var i = 0; i < N; i++) {
        matched[i] = q !== '' && lower[n[i]].indexOf(q) >= 0 ? 1 : 0;
        if (matched[i]) {
          count++;
          if (i >= covered) { total += v[i]; covered = end[i]; }
        }
      }
      info.textContent = q === '' ? '' : count + ' frames match: ' + fmtInt(total) + ' samples (' + pct(total, shown) + ')';
      info.setAttribute('data-count', count);
      self.render();
      return count;
    };

    svg.addEventListener('click', function (e) {
      var g = e.target.closest ? e.target.closest('g.fn') : null;
      if (g) self.zoomTo(Number(g.getAttribute('data-i')));
    });
    svg.addEventListener('mousemove', function (e) {
      var g = e.target.closest ? e.target.closest('g.fn') : null;
      if (!g) { tip.hidden = true; return; }
      var i = Number(g.getAttribute('data-i'));
      tip.replaceChildren(
        h('div', { class: 'tl', text: labels[n[i]] }),
        h('div', { class: 'ts', text: fmtInt(v[i]) + ' samples · ' + pct(v[i], shown) + ' of all' +
          (zoom ? ' · ' + pct(v[i], v[zoom]) + ' of zoom' : '') + ' · self ' + fmtInt(selfV[i]) }));
      tip.hidden = false;
      var tw = tip.offsetWidth, th = tip.offsetHeight;
      var left = Math.min(e.clientX + 14, window.innerWidth - tw - 6);
      var top = e.clientY + 16 + th > window.innerHeight ? e.clientY - th - 10 : e.clientY + 16;
      tip.style.left = Math.max(left, 4) + 'px';
      tip.style.top = Math.max(top, 4) + 'px';
    });
    svg.addEventListener('mouseleave', function () { tip.hidden = true; });
    reset.addEventListener('click', function () { self.zoomTo(0); });
    input.addEventListener('input', function () { self.search(input.value); });
    document.addEventListener('keydown', function (e) {
      if (e.key === 'Escape') { self.zoomTo(0); tip.hidden = true; }
    });
    var pending = 0;
    window.addEventListener('resize', function () {
      clearTimeout(pending);
      pending = setTimeout(self.render, 100);
    });
    this.render();
    this.input = input;
    this.svg = svg;
    this.zoom = function () { return zoom; };
  }

  var flame = null;
  function renderFlame() {
    var sec = section('flame', 'Flame graph');
    if (!data.flame.p.length) {
      sec.append(h('p', { class: 'empty', text: 'No samples with Python frames.' }));
      return;
    }
    flame = new Flame(sec, data.flame);
  }

  function renderFooter() {
    var ft = document.getElementById('footer');
    ft.append(h('div', { text: 'Written by ' + data.generator + '. This file is self-contained: it loads nothing from the network.' }));
  }

  // ------------------------------------------------------------- self-test

  // #selftest: exercise the page and write what happened into
  // #selftest-result (for headless browsers that dump the DOM).
  function selftest() {
    var r = { ok: true, checks: {} };
    function check(name, ok, detail) {
      r.checks[name] = detail === undefined ? !!ok : { ok: !!ok, detail: detail };
      if (!ok) r.ok = false;
    }
    function colValues(tableId, col) {
      var out = [];
      document.querySelectorAll('#' + tableId + ' tbody tr').forEach(function (tr) {
        out.push(JSON.parse(tr.children[col].getAttribute('data-v')));
      });
      return out;
    }
    function sorted(vals, dir) {
      for (var i = 1; i < vals.length; i++) if (dir * cmp(vals[i - 1], vals[i]) > 0) return false;
      return true;
    }
    function click(tableId, col) {
      document.querySelector('#' + tableId + ' th[data-col="' + col + '"] button').click();
    }
    var lineRows = document.querySelectorAll('#lines-table tbody tr').length;
    check('line_rows', lineRows > 0 && lineRows === data.lines.rows.length, lineRows);
    check('function_rows', document.querySelectorAll('#functions-table tbody tr').length === data.functions.rows.length && data.functions.rows.length > 0);
    check('thread_rows', document.querySelectorAll('#threads-table tbody tr').length === data.threads.rows.length);
    if (lineRows) {
      check('lines_default_own_desc', sorted(colValues('lines-table', 3), -1) &&
        document.getElementById('lines-table').getAttribute('data-sort') === '3:desc');
      click('lines-table', 4);
      check('lines_total_desc', sorted(colValues('lines-table', 4), -1) &&
        document.getElementById('lines-table').getAttribute('data-sort') === '4:desc');
      click('lines-table', 4);
      check('lines_total_asc', sorted(colValues('lines-table', 4), 1) &&
        document.getElementById('lines-table').getAttribute('data-sort') === '4:asc');
      click('lines-table', 1);
      check('lines_line_asc', sorted(colValues('lines-table', 1), 1) &&
        document.getElementById('lines-table').getAttribute('data-sort') === '1:asc');
      click('lines-table', 0);
      check('lines_file_asc', sorted(colValues('lines-table', 0), 1));
      click('functions-table', 0);
      check('functions_name_asc', sorted(colValues('functions-table', 0), 1) &&
        document.getElementById('functions-table').getAttribute('data-sort') === '0:asc');
      click('functions-table', 3);
      click('lines-table', 3);
    }
    if (flame) {
      var rects = flame.svg.querySelectorAll('g.fn rect').length;
      check('flame_rects', rects > 1, rects);
      var target = flame.svg.querySelector('g.fn[data-i]:not([data-i="0"])');
      if (target) {
        var i = Number(target.getAttribute('data-i'));
        target.dispatchEvent(new MouseEvent('click', { bubbles: true }));
        check('flame_zoom_in', flame.zoom() === i && flame.svg.getAttribute('data-zoom') === String(i));
        document.getElementById('flame-reset').click();
        check('flame_zoom_out', flame.zoom() === 0);
        var g = flame.svg.querySelector('g.fn[data-i]:not([data-i="0"])');
        g.dispatchEvent(new MouseEvent('mousemove', { bubbles: true, clientX: 50, clientY: 50 }));
        var tipEl = document.getElementById('tooltip');
        var tipText = tipEl.textContent;
        check('flame_tooltip', !tipEl.hidden && tipText.indexOf('samples') > 0 &&
          tipText.indexOf(data.flame.labels[data.flame.n[Number(g.getAttribute('data-i'))]]) === 0);
        flame.svg.dispatchEvent(new MouseEvent('mouseleave'));
        check('flame_tooltip_hides', tipEl.hidden);
      } else {
        check('flame_zoom_in', false, 'no frame to click');
      }
      flame.input.value = 'zzz-no-such-frame-zzz';
      flame.input.dispatchEvent(new Event('input'));
      check('flame_search_none', document.getElementById('flame-matches').getAttribute('data-count') === '0');
      var q = new URLSearchParams(location.search).get('q');
      if (q) {
        flame.input.value = q;
        flame.input.dispatchEvent(new Event('input'));
        var hits = Number(document.getElementById('flame-matches').getAttribute('data-count'));
        var pink = 0;
        flame.svg.querySelectorAll('g.fn rect').forEach(function (rc) { if (rc.getAttribute('fill') === '#d946ef') pink++; });
        check('flame_search_hits', hits > 0 && pink > 0, { frames: hits, highlighted: pink });
      }
      flame.input.value = '';
      flame.input.dispatchEvent(new Event('input'));
    }
    var links = document.querySelectorAll('#endpoints-table .endpoint-link');
    if (links.length) {
      var name = links[0].textContent;
      var ep = data.endpoints.filter(function (e) { return e.name === name; })[0];
      links[0].click();
      var fsec = document.getElementById('flame');
      check('endpoint_flame', fsec.getAttribute('data-endpoint') === name &&
        Number(document.getElementById('flame-svg').getAttribute('data-total')) === ep.flame.total, fsec.getAttribute('data-endpoint'));
      document.getElementById('flame-all').click();
      check('endpoint_flame_back', fsec.getAttribute('data-endpoint') === '' &&
        Number(document.getElementById('flame-svg').getAttribute('data-total')) === data.flame.total);
    }
    if (data.timeline.states.length) {
      check('timeline_bars', document.querySelectorAll('#timeline-states g').length > 0 &&
        document.querySelectorAll('#timeline-processes g').length > 0);
    }
    // Text from the profile appears as text; nothing it holds ran.
    var needle = new URLSearchParams(location.search).get('text');
    if (needle) {
      var cells = 0;
      document.querySelectorAll('td, h1, dd, svg text, .crumbs').forEach(function (e) {
        if (e.textContent.indexOf(needle) >= 0) cells++;
      });
      check('hostile_text_cells', cells > 0, cells);
    }
    check('no_pwned', typeof window.__pwned === 'undefined', String(window.__pwned));
    check('no_img', document.getElementsByTagName('img').length === 0);
    check('two_scripts', document.getElementsByTagName('script').length === 2, document.getElementsByTagName('script').length);
    check('no_errors', errors.length === 0, errors.slice(0, 5));
    var out = document.getElementById('selftest-result');
    out.textContent = JSON.stringify(r);
    out.hidden = false;
    document.body.setAttribute('data-selftest', r.ok ? 'pass' : 'fail');
  }

  // ---------------------------------------------------------------- main

  try {
    document.title = data.title;
    renderHeader();
    renderFlame();
    renderLines();
    renderFunctions();
    renderThreads();
    renderProcesses();
    renderEndpoints();
    renderMemory();
    renderTimeline();
    renderFooter();
    document.body.setAttribute('data-ready', '1');
  } catch (e) {
    errors.push(String(e && e.stack ? e.stack : e));
    document.body.setAttribute('data-ready', 'error');
    document.getElementById('main').append(h('pre', { class: 'error', text: 'The report failed to render: ' + String(e) }));
  }
  if (location.hash === '#selftest') {
    try {
      selftest();
    } catch (e) {
      errors.push(String(e && e.stack ? e.stack : e));
      var out = document.getElementById('selftest-result');
      out.textContent = JSON.stringify({ ok: false, exception: String(e) });
      out.hidden = false;
      document.body.setAttribute('data-selftest', 'fail');
    }
  }
})();
