'use strict';
// Nimbus web console: one page with three views (sign in, the function list
// with the deploy form, one function) talking to the API on this origin.
// No framework and no innerHTML: everything from the server goes in with
// textContent, so function names, results and logs cannot inject markup.
(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = 'nimbus.token', USER_KEY = 'nimbus.user';
  // fn: the open function ({id, meta}); follow: the live log stream;
  // statsTimer: the 15 s refresh; gen: bumped on every navigation, so an
  // answer that arrives after the user moved on is dropped.
  const state = { fn: null, follow: null, statsTimer: null, gen: 0, routed: false };
  // ---------------------------------------------------------------- API --
  const apiError = (status, kind, message) => Object.assign(new Error(message), { status, kind });
  const token = () => sessionStorage.getItem(TOKEN_KEY);
  // fetch() with the bearer token; a 401 on an authenticated call ends the
  // session and shows the sign-in view.
  async function api(path, { method = 'GET', json, body, headers = {}, auth = true, signal } = {}) {
    const h = { ...headers };
    if (auth) h.Authorization = 'Bearer ' + token();
    if (json !== undefined) { h['Content-Type'] = 'application/json'; body = JSON.stringify(json); }
    let res;
    try { res = await fetch(path, { method, headers: h, body, signal, cache: 'no-store' }); } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw apiError(0, 'network', 'Could not reach the server (' + e.message + ').');
    }
    if (auth && res.status === 401) {
      const message = 'Your session has ended: log in again.';
      endSession(message);
      throw apiError(401, 'unauthorized', message);
    }
    return res;
  }
  // The body as JSON (null when empty, {raw} when not JSON).
  async function readJson(res) {
    const text = await res.text();
    try { return text ? JSON.parse(text) : null; } catch { return { raw: text }; }
  }
  // An error (with status and kind) from a non-2xx answer: {"error": {"kind", "message"}}.
  function errorFrom(res, data) {
    const e = (data && data.error) || {};
    const message = e.message || (data && data.raw) || res.statusText || 'Request failed';
    return apiError(res.status, e.kind || 'http_' + res.status, message);
  }
  // A call whose 2xx answer is JSON; other answers throw its error.
  async function apiJson(path, opts) {
    const res = await api(path, opts);
    const data = await readJson(res);
    if (!res.ok) throw errorFrom(res, data);
    return data;
  }

  // ------------------------------------------------------------ helpers --
  // Show a message in a live region; `pre` keeps engine messages verbatim.
  function notice(region, text, kind = 'info', pre = false) {
    region.className = 'notice' + (text ? ' ' + kind : '');
    region.replaceChildren(...(text ? [el(pre ? 'pre' : 'p', '', text)] : []));
  }
  // A client-side validation failure: mark the field, say why, focus it.
  function invalid(field, noticeEl, message) {
    field.setAttribute('aria-invalid', 'true');
    notice(noticeEl, message, 'error');
    field.focus();
    return null;
  }
  // Mark a form busy while its request runs (a second submit is ignored).
  async function whileBusy(form, work) {
    if (form.getAttribute('aria-busy') === 'true') return;
    form.setAttribute('aria-busy', 'true');
    const focused = document.activeElement;
    form.querySelectorAll('button').forEach((b) => { b.disabled = true; });
    try { await work(); } finally {
      form.removeAttribute('aria-busy');
      form.querySelectorAll('button').forEach((b) => { b.disabled = false; });
      // Disabling the button dropped its focus: give it back if nothing took it.
      const lost = document.activeElement === document.body && form.contains(focused);
      if (lost && !form.closest('[hidden]')) focused.focus();
    }
  }
  // A new element with a class and text (never parsed as HTML).
  const el = (tag, className = '', text = '') =>
    Object.assign(document.createElement(tag), { className, textContent: text });
  const bytes = (n) => n < 1024 ? n + ' B' : n < 1048576 ? (n / 1024).toFixed(1) + ' KiB'
    : (n / 1048576).toFixed(1) + ' MiB';
  const when = (iso) => { const d = new Date(iso); return isNaN(d) ? String(iso) : d.toLocaleString(); };
  const micros = (us) => us < 1000 ? us + ' µs' : (us / 1000).toFixed(2) + ' ms';
  const compact = new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 });
  const sleep = (ms, signal) => new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });

  // ------------------------------------------------------------ routing --
  // #/ is the list, #/functions/<id> one function; no token: sign in.
  // `flash` is a message for the next view ([text, kind]).
  function go(hash, flash) {
    state.flash = flash;
    if (location.hash === hash) route(); else location.hash = hash;
  }
  function route() {
    leaveFunction();
    const gen = ++state.gen;
    notice($('global-notice'), ...(state.flash || ['']));
    state.flash = null;
    const signedIn = !!token();
    $('account').hidden = !signedIn;
    $('account-name').textContent = signedIn ? 'Signed in as ' + sessionStorage.getItem(USER_KEY) : '';
    const m = location.hash.match(/^#\/functions\/(\d+)$/);
    const view = !signedIn ? 'auth' : m ? 'function' : 'list';
    for (const v of ['auth', 'list', 'function']) $(v + '-view').hidden = v !== view;
    // Move focus to the new view's heading, except on the first load.
    if (state.routed) $({ auth: 'auth-title', list: 'list-title', function: 'fn-title' }[view]).focus();
    state.routed = true;
    if (view === 'list') loadList(gen);
    if (view === 'function') openFunction(m[1], gen);
  }
  function endSession(message, kind = 'error') {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
    go(location.hash, [message, kind]);
  }

  // --------------------------------------------------------------- auth --
  // The form's username and password, checked as the server would.
  function credentials() {
    const user = $('auth-username'), pass = $('auth-password');
    const username = user.value.trim();
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]{2,31}$/.test(username)) {
      return invalid(user, $('auth-notice'),
        'Usernames are 3-32 letters, digits, _ or -, starting with a letter or digit.');
    }
    const size = new TextEncoder().encode(pass.value).length;
    if (size < 8 || size > 72) return invalid(pass, $('auth-notice'), 'Passwords are 8 to 72 bytes long.');
    return { username, password: pass.value };
  }
  // Log in (the form's submit) or register (its second button).
  function authenticate(ev, registering) {
    ev.preventDefault();
    const body = credentials();
    if (!body) return;
    whileBusy($('auth-form'), async () => {
      try {
        const data = await apiJson(registering ? '/auth/register' : '/auth/login',
          { method: 'POST', json: body, auth: false });
        if (registering) {
          notice($('auth-notice'), 'Account ' + body.username + ' created: you can log in now.', 'success');
          return;
        }
        sessionStorage.setItem(TOKEN_KEY, data.token);
        sessionStorage.setItem(USER_KEY, body.username);
        $('auth-password').value = '';
        notice($('auth-notice'), '');
        route();
      } catch (e) { notice($('auth-notice'), e.message, 'error'); }
    });
  }

  // -------------------------------------------------------------- list --
  async function loadList(gen) {
    notice($('list-notice'), '');
    try {
      const data = await apiJson('/functions');
      if (gen === state.gen) renderList(data.functions || []);
    } catch (e) {
      if (gen === state.gen && e.status !== 401) notice($('list-notice'), e.message, 'error');
    }
  }
  // One card (a button) per function, newest first.
  function renderList(functions) {
    const list = $('function-list');
    list.replaceChildren();
    $('function-empty').hidden = functions.length > 0;
    functions.sort((a, b) => b.id - a.id).forEach((f) => {
      const button = el('button', 'fn-card');
      button.type = 'button';
      button.append(el('span', 'fn-name', f.name || 'Function #' + f.id),
        el('span', 'fn-meta', '#' + f.id + ' · ' + f.runtime + ' · ' + bytes(f.size) +
          ' · created ' + when(f.created)));
      button.addEventListener('click', () => go('#/functions/' + f.id));
      list.append(el('li'));
      list.lastChild.append(button);
    });
  }

  // ------------------------------------------------------------ deploy --
  function deploy(ev) {
    ev.preventDefault();
    const out = $('deploy-notice'), nameField = $('deploy-name'), code = $('deploy-code');
    const name = nameField.value.trim();
    if (name && !/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) {
      return invalid(nameField, out, 'Names are 1-63 lowercase letters, digits or -, starting with a letter or digit.');
    }
    const file = $('deploy-file').files[0];
    if (!file && !code.value.trim()) return invalid(code, out, 'Paste some code or choose a file.');
    const ext = file ? (file.name.match(/\.([A-Za-z]+)$/) || [])[1]?.toLowerCase() : null;
    if (file && !['wasm', 'wat', 'js'].includes(ext)) {
      return invalid($('deploy-file'), out, 'Choose a .wasm, .wat or .js file.');
    }
    whileBusy($('deploy-form'), async () => {
      notice(out, 'Deploying…');
      try {
        let data;
        if (ext === 'wasm') {
          // A binary goes as the raw body; the name rides in the query.
          const query = name ? '?name=' + encodeURIComponent(name) : '';
          data = await apiJson('/functions' + query,
            { method: 'POST', body: file, headers: { 'Content-Type': 'application/wasm' } });
        } else {
          const json = file ? { code: await file.text(), runtime: ext }
            : { code: code.value, runtime: $('deploy-runtime').value };
          if (name) json.name = name;
          data = await apiJson('/functions', { method: 'POST', json });
        }
        $('deploy-form').reset();
        notice(out, '');
        go('#/functions/' + data.id,
          ['Deployed function #' + data.id + (data.name ? ' (' + data.name + ')' : '') + '.', 'success']);
      } catch (e) {
        if (e.status !== 401) notice(out, e.message, 'error', e.status === 422);
      }
    });
  }

  // ---------------------------------------------------------- function --
  async function openFunction(id, gen) {
    state.fn = { id };
    // Clear what the previous function left.
    $('fn-title').textContent = 'Function #' + id;
    for (const n of ['fn-meta', 'log-panel', 'chart-calls', 'chart-latency', 'chart-fuel']) $(n).replaceChildren();
    for (const n of ['fn-notice', 'invoke-notice']) notice($(n), '');
    $('follow-state').textContent = $('stats-notice').textContent = '';
    $('invoke-output').hidden = true;
    $('invoke-input').value = '';
    let meta;
    try { meta = await apiJson('/functions/' + id); } catch (e) {
      if (gen === state.gen && e.status !== 401) notice($('fn-notice'), e.message, 'error');
      return;
    }
    if (gen !== state.gen) return;
    state.fn.meta = meta;
    $('fn-title').textContent = meta.name || 'Function #' + id;
    renderMeta(meta);
    loadLogs(state.fn);
    loadStats();
    state.statsTimer = setInterval(loadStats, 15000);
  }
  // Leaving a function's view stops its log stream and stats refresh.
  function leaveFunction() {
    stopFollow();
    clearInterval(state.statsTimer);
    state.statsTimer = state.fn = null;
  }
  // The function's details as term/value rows.
  function renderMeta(meta) {
    const rows = [['ID', '#' + meta.id],
      ['Runtime', meta.runtime + (meta.world ? ' (' + meta.world + ')' : '')],
      ['Access', meta.access], ['Size', bytes(meta.size)], ['Created', when(meta.created)]];
    const l = meta.limits || {};
    if (l.fuel !== undefined) {
      rows.push(['Limits', compact.format(l.fuel) + ' fuel · ' + bytes(l.memory_bytes || 0) + ' memory · ' +
        (l.timeout_ms || 0) + ' ms']);
    }
    // A named function answers on /fn/<owner>/<name>.
    const url = meta.name && '/fn/' + encodeURIComponent(meta.owner) + '/' + encodeURIComponent(meta.name);
    if (url) rows.push(['URL', location.origin + url]);
    rows.push(['Digest', meta.digest]);
    const dl = $('fn-meta');
    for (const [term, value] of rows) {
      dl.append(el('div'));
      dl.lastChild.append(el('dt', '', term), el('dd', term === 'URL' || term === 'Digest' ? 'mono' : '', value));
    }
  }

  // ------------------------------------------------------------ invoke --
  function invoke(ev) {
    ev.preventDefault();
    const fn = state.fn, field = $('invoke-input'), out = $('invoke-notice');
    let input = null;
    try { if (field.value.trim()) input = JSON.parse(field.value); } catch (e) {
      return invalid(field, out, 'The input is not valid JSON: ' + e.message);
    }
    field.removeAttribute('aria-invalid');
    whileBusy($('invoke-form'), async () => {
      notice(out, 'Running…');
      try {
        const res = await api('/functions/' + fn.id + '/execute', { method: 'POST', json: { input } });
        const data = await readJson(res);
        if (state.fn !== fn) return;
        if (!res.ok) {
          const err = errorFrom(res, data);
          const spent = data && data.error ? data.error.fuel_consumed : undefined;
          const fuel = spent != null ? ' (fuel consumed: ' + spent + ')' : '';
          $('invoke-output').hidden = true;
          notice(out, err.kind + ': ' + err.message + fuel, 'error', true);
          return;
        }
        $('out-result').textContent = JSON.stringify(data.result, null, 2) ?? 'null';
        $('out-fuel').textContent = Number(data.fuel_consumed).toLocaleString('en-US');
        $('out-duration').textContent = micros(data.duration_us);
        $('invoke-output').hidden = false;
        notice(out, 'Invocation succeeded.', 'success');
      } catch (e) {
        if (e.status !== 401 && state.fn === fn) notice(out, e.message, 'error');
      } finally {
        if (state.fn === fn) loadStats();
      }
    });
  }

  // -------------------------------------------------------------- logs --
  function appendLog(entry) {
    const panel = $('log-panel');
    const nearBottom = panel.scrollHeight - panel.scrollTop - panel.clientHeight < 40;
    const time = Object.assign(el('time', '', new Date(entry.time).toLocaleTimeString()), { dateTime: entry.time });
    panel.append(el('li'));
    panel.lastChild.append(time, el('span', 'log-text', entry.text + (entry.truncated ? ' [truncated]' : '')));
    while (panel.children.length > 500) panel.firstElementChild.remove();
    if (nearBottom) panel.scrollTop = panel.scrollHeight;
  }
  // The kept entries, when not following.
  async function loadLogs(fn) {
    try {
      const data = await apiJson('/functions/' + fn.id + '/logs?limit=50');
      if (state.fn !== fn || state.follow) return;
      $('log-panel').replaceChildren();
      (data.logs || []).forEach(appendLog);
      if (!data.logs || !data.logs.length) $('follow-state').textContent = 'No log entries yet.';
    } catch (e) {
      if (state.fn === fn && e.status !== 401) $('follow-state').textContent = e.message;
    }
  }
  // The Follow/Stop toggle and the line beside it.
  function setFollowing(on, message) {
    $('follow').setAttribute('aria-pressed', String(on));
    $('follow').textContent = on ? 'Stop following' : 'Follow logs';
    $('follow-state').textContent = message;
  }
  function startFollow() {
    const f = { id: state.fn.id, ctrl: new AbortController(), lastId: null, delay: 1000 };
    state.follow = f;
    $('log-panel').replaceChildren();
    setFollowing(true, 'Connecting…');
    followLoop(f);
  }
  function stopFollow(message = 'Not following.') {
    if (!state.follow) return;
    state.follow.ctrl.abort();
    state.follow = null;
    setFollowing(false, message);
  }
  // Follow the stream; when it drops, reconnect after a backoff, resuming
  // after the last event seen (Last-Event-ID).
  async function followLoop(f) {
    const live = () => state.follow === f;
    while (live()) {
      let why = '';
      try {
        const headers = f.lastId === null ? {} : { 'Last-Event-ID': f.lastId };
        const res = await api('/functions/' + f.id + '/logs?follow=true&limit=50',
          { headers, signal: f.ctrl.signal });
        if (!res.ok) {
          const err = errorFrom(res, await readJson(res));
          if (res.status !== 429 && res.status < 500) { stopFollow(err.message); return; }
          throw err;
        }
        if (!live()) return;
        $('follow-state').textContent = 'Following: new entries appear below.';
        await readEvents(res.body, f, (ev) => {
          if (ev.event !== 'log' || !live()) return;
          f.delay = 1000;
          try { appendLog(JSON.parse(ev.data)); } catch { /* not an entry: skip it */ }
        });
      } catch (e) {
        if (!live() || e.name === 'AbortError' || e.status === 401) return;
        why = e.message;
      }
      if (!live()) return;
      $('follow-state').textContent = (why ? why + '. S' : 'S') + 'tream dropped, reconnecting in ' + f.delay / 1000 + ' s…';
      await sleep(f.delay, f.ctrl.signal);
      f.delay = Math.min(f.delay * 2, 30000);
    }
  }
  // Parse a text/event-stream body: frames end at a blank line; lines end
  // with \n, \r\n or \r; "field: value"; lines starting with ":" are
  // comments (keepalives); several data lines join with \n.
  async function readEvents(body, f, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let ev = { event: 'message', data: [], id: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      // A trailing \r may be the first half of \r\n: keep it for the next chunk.
      const cut = buffer.endsWith('\r') ? buffer.length - 1 : buffer.length;
      const lines = buffer.slice(0, cut).split(/\r\n|\r|\n/);
      buffer = lines.pop() + buffer.slice(cut);
      for (const line of lines) {
        if (line === '') {
          if (ev.id !== null) f.lastId = ev.id;
          if (ev.data.length) onEvent({ event: ev.event, data: ev.data.join('\n'), id: ev.id });
          ev = { event: 'message', data: [], id: null };
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'data') ev.data.push(val);
        else if (field === 'event') ev.event = val;
        else if (field === 'id' && !val.includes('\0')) ev.id = val;
      }
    }
  }

  // ------------------------------------------------------------- stats --
  // Fetch the per-minute buckets; charts.js (NimbusCharts) draws them.
  async function loadStats() {
    const fn = state.fn;
    if (!fn) return;
    // One request at a time; a refresh asked for meanwhile runs after it.
    if (fn.statsBusy) { fn.statsAgain = true; return; }
    fn.statsBusy = true;
    try {
      const data = await apiJson('/functions/' + fn.id + '/stats');
      if (state.fn !== fn) return;
      $('stats-notice').textContent = '';
      NimbusCharts.render({ calls: $('chart-calls'), latency: $('chart-latency'), fuel: $('chart-fuel') },
        data.buckets || []);
    } catch (e) {
      if (state.fn === fn && e.status !== 401) $('stats-notice').textContent = 'Statistics unavailable: ' + e.message;
    } finally {
      fn.statsBusy = false;
      if (fn.statsAgain && state.fn === fn) { fn.statsAgain = false; loadStats(); }
    }
  }

  // ------------------------------------------------------------- wiring --
  function init() {
    $('auth-form').addEventListener('submit', (e) => authenticate(e, false));
    $('register').addEventListener('click', (e) => authenticate(e, true));
    $('logout').addEventListener('click', () => endSession('You are logged out.', 'info'));
    $('deploy-form').addEventListener('submit', deploy);
    $('invoke-form').addEventListener('submit', invoke);
    $('invoke-input').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); $('invoke-form').requestSubmit(); }
    });
    $('back').addEventListener('click', () => go('#/'));
    $('follow').addEventListener('click', () => (state.follow ? stopFollow() : startFollow()));
    // A file of .wat or .js sets the runtime to match.
    $('deploy-file').addEventListener('change', (e) => {
      const m = (e.target.files[0]?.name || '').match(/\.(wat|js)$/i);
      if (m) $('deploy-runtime').value = m[1].toLowerCase();
    });
    // Editing a field clears its invalid mark.
    document.addEventListener('input', (e) => e.target.removeAttribute?.('aria-invalid'));
    window.addEventListener('hashchange', route);
    route();
  }

  init();
})();
