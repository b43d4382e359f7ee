'use strict';
// Nimbus web console: the "Last hour" charts of one function, drawn as
// small SVGs from the per-minute buckets of GET /functions/{id}/stats
// ({start, calls, errors, p50_ms, p99_ms, fuel}, oldest first).
// console.js fetches the buckets and calls NimbusCharts.render; this file
// only draws. No innerHTML: labels and titles go in with textContent.
(() => {
  // ------------------------------------------------------------ helpers --
  // A new HTML element with a class and text (never parsed as HTML).
  const el = (tag, className = '', text = '') =>
    Object.assign(document.createElement(tag), { className, textContent: text });
  const compact = new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 });
  const plural = (n, word) => n + ' ' + word + (n === 1 ? '' : 's');
  // An SVG element with attributes and text, appended to parent.
  function svg(tag, attrs, parent, text) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.append(node);
    return node;
  }
  // A round axis maximum (1, 2 or 5 times a power of ten) above v.
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
  }

  // -------------------------------------------------------------- chart --
  // One small chart: bars or lines per series over the minutes, with a
  // role="img" label summarising it and data-points = the minutes `has` data.
  function drawChart(container, buckets, has, label, series) {
    const W = 320, H = 140, L = 34, R = 6, T = 8, B = 20;
    const pw = W - L - R, ph = H - T - B, n = Math.max(buckets.length, 1), step = pw / n;
    const top = niceMax(Math.max(0, ...series.flatMap(([, key]) => buckets.map((b) => b[key] || 0))));
    const y = (v) => T + ph - (v / top) * ph;
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, class: 'chart',
      'data-points': buckets.filter(has).length });
    svg('title', {}, root, label);
    // Grid lines and axis labels (0, half, top; first and last minute).
    for (const v of [0, top / 2, top]) {
      svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }, root);
      svg('text', { x: L - 4, y: y(v) + 3, class: 'axis', 'text-anchor': 'end' }, root, compact.format(v));
    }
    const hhmm = (b) => b ? new Date(b.start).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
    svg('text', { x: L, y: H - 5, class: 'axis' }, root, hhmm(buckets[0]));
    svg('text', { x: W - R, y: H - 5, class: 'axis', 'text-anchor': 'end' }, root, hhmm(buckets[n - 1]));
    for (const [kind, key, name] of series) {
      const cls = key.replace('_ms', '');
      if (kind === 'bar') {
        buckets.forEach((b, i) => {
          const v = b[key] || 0;
          if (v <= 0) return;
          const bar = svg('rect', { x: L + i * step + 0.5, width: Math.max(step - 1, 1), y: y(v),
            height: Math.max(T + ph - y(v), 1), class: 'bar ' + cls }, root);
          svg('title', {}, bar, hhmm(b) + ': ' + v.toLocaleString('en-US') + ' ' + name.toLowerCase());
        });
      } else {
        // Lines break over minutes without a value; dots mark each value.
        let d = '';
        buckets.forEach((b, i) => {
          const v = b[key], cx = L + (i + 0.5) * step;
          if (v == null) return;
          d += (i > 0 && buckets[i - 1][key] != null ? 'L' : 'M') + cx.toFixed(1) + ' ' + y(v).toFixed(1);
          const dot = svg('circle', { cx, cy: y(v), r: 2.5, class: 'dot ' + cls }, root);
          svg('title', {}, dot, hhmm(b) + ': ' + name + ' ' + +v.toFixed(2) + ' ms');
        });
        if (d) svg('path', { d, class: 'line ' + cls }, root);
      }
    }
    // Legend, as text beside the chart.
    const legend = el('ul', 'legend');
    for (const [, key, name] of series) {
      legend.append(el('li', '', ' ' + name));
      legend.lastChild.prepend(el('span', 'swatch ' + key.replace('_ms', '')));
    }
    container.replaceChildren(root, legend);
  }

  // ------------------------------------------------------------- render --
  // Three charts from the per-minute buckets (series: [kind, key, name]),
  // each replacing the contents of its container: {calls, latency, fuel}.
  function render(containers, buckets) {
    const sum = (k) => buckets.reduce((s, b) => s + (b[k] || 0), 0);
    const max = (k) => Math.max(0, ...buckets.map((b) => b[k] || 0));
    const ms = (v) => +v.toFixed(v < 10 ? 2 : 1) + ' ms';
    const hasLatency = (b) => b.p50_ms != null || b.p99_ms != null;
    const latency = buckets.some(hasLatency)
      ? 'highest p50 ' + ms(max('p50_ms')) + ', highest p99 ' + ms(max('p99_ms')) : 'no calls';
    drawChart(containers.calls, buckets, (b) => b.calls > 0 || b.errors > 0,
      'Calls per minute, last hour: ' + plural(sum('calls'), 'call') + ', ' + plural(sum('errors'), 'error'),
      [['bar', 'calls', 'Calls'], ['bar', 'errors', 'Errors']]);
    drawChart(containers.latency, buckets, hasLatency, 'Latency, last hour: ' + latency,
      [['line', 'p50_ms', 'p50'], ['line', 'p99_ms', 'p99']]);
    drawChart(containers.fuel, buckets, (b) => b.fuel > 0,
      'Fuel per minute, last hour: ' + sum('fuel').toLocaleString('en-US') + ' fuel in all', [['bar', 'fuel', 'Fuel']]);
  }

  // The one global this file defines.
  window.NimbusCharts = Object.freeze({ render });
})();
